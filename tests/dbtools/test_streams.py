"""The streaming pieces of a backup, on their own: no database needed."""

import hashlib
import io
import os
import subprocess
import sys
import threading

import pytest

from dbtools.streams import (
    COMPRESSION_SUFFIX,
    COMPRESSIONS,
    BackgroundWriter,
    HashingFile,
    HashingReader,
    NotRegularFile,
    compressing_writer,
    decompressing_reader,
    detect_compression,
    open_regular,
    widen_pipe,
)

# Nothing here touches a database: one pass (SQLite's) is enough.
pytestmark = pytest.mark.engines("sqlite")


def test_background_writer_writes_everything_in_order():
    sink = io.BytesIO()
    writer = BackgroundWriter(sink, depth=2)
    chunks = [os.urandom(1000) for _ in range(200)]
    for chunk in chunks:
        writer.write(chunk)
    writer.close()
    assert sink.getvalue() == b"".join(chunks)


class FailingSink:
    def __init__(self, after: int):
        self.after = after
        self.written = 0

    def write(self, data) -> int:
        if self.written >= self.after:
            raise OSError(28, "No space left on device")
        self.written += 1
        return len(data)


def test_background_writer_reports_a_write_error_and_never_blocks_the_producer():
    writer = BackgroundWriter(FailingSink(after=3), depth=1)
    with pytest.raises(OSError, match="No space left"):
        for _ in range(1000):  # the producer learns of the error; it is not left waiting on a full queue
            writer.write(b"x" * 100)
    writer.abandon()


def test_background_writer_close_raises_an_error_of_the_last_chunks():
    writer = BackgroundWriter(FailingSink(after=0), depth=4)
    writer.write(b"only chunk")
    with pytest.raises(OSError, match="No space left"):
        writer.close()
    writer.abandon()  # after close: nothing more to do, nothing raised
    assert not any(t.name == "backup-writer" and t.is_alive() for t in threading.enumerate())


def test_widened_pipe_carries_a_megabyte_per_read():
    producer = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdout.buffer.write(b'x' * (4 << 20))"], stdout=subprocess.PIPE
    )
    widen_pipe(producer.stdout)
    try:
        import fcntl

        if hasattr(fcntl, "F_GETPIPE_SZ"):
            assert fcntl.fcntl(producer.stdout.fileno(), fcntl.F_GETPIPE_SZ) >= 1 << 20
        total = 0
        while chunk := producer.stdout.read1(1 << 20):
            total += len(chunk)
        assert total == 4 << 20
    finally:
        producer.wait()


def test_compressions_are_the_suffixes_known():
    assert COMPRESSIONS == ("zstd", "gzip", "none")
    assert set(COMPRESSIONS) == set(COMPRESSION_SUFFIX)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_compress_then_decompress_gives_the_bytes_back_and_hashes_the_file(compression):
    data = os.urandom(300_000) + b"a" * 300_000
    raw = io.BytesIO()
    sink = HashingFile(raw)
    writer = compressing_writer(sink, compression)
    writer.write(data)
    writer.close()
    stored = raw.getvalue()
    assert sink.size == len(stored) and sink.sha256.hexdigest() == hashlib.sha256(stored).hexdigest()
    assert detect_compression(stored[:8]) == compression
    reader = HashingReader(io.BytesIO(stored))
    assert decompressing_reader(reader, compression).read() == data
    reader.drain()
    assert reader.sha256.hexdigest() == hashlib.sha256(stored).hexdigest()


def test_unknown_compression_is_refused():
    with pytest.raises(ValueError, match="unknown compression"):
        compressing_writer(HashingFile(io.BytesIO()), "lz4")


def test_open_regular_refuses_a_fifo_at_once(tmp_path):
    fifo = tmp_path / "db_backup_20260101_000000.sqlite3.zst"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFile, match="named pipe"):
        open_regular(fifo)
    regular = tmp_path / "file"
    regular.write_bytes(b"abc")
    with open_regular(regular) as f:
        assert f.read() == b"abc"
