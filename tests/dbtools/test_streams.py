"""The streaming pieces of a backup, on their own: no database needed."""

import io
import os
import subprocess
import sys
import threading

import pytest

from dbtools.engines.dumpscan import MariaDBDumpScanner
from dbtools.streams import BackgroundWriter, widen_pipe

# Nothing here touches a database: one pass (SQLite's) is enough.
pytestmark = pytest.mark.engines("sqlite")


def mariadb_dump_text(tables: list[str], rows: int = 2000) -> bytes:
    parts = [b"-- MariaDB dump 10.19\n"]
    for name in tables:
        parts.append(f"DROP TABLE IF EXISTS `{name}`;\nCREATE TABLE `{name}` (\n  `id` int NOT NULL\n);\n".encode())
        values = ",".join(f"({i})" for i in range(rows))
        parts.append(f"INSERT INTO `{name}` VALUES {values};\n".encode())
    parts.append(b"-- Dump completed on 2026-11-26  2:00:00\n")
    return b"".join(parts)


TABLES = ["accounts_user", "servers_server", "a" * 64, "dbtools_operationlog"]


@pytest.mark.parametrize("size", [1, 7, 255, 256, 4095, 4096, 5000, 65536, 1 << 20])
def test_mariadb_scanner_finds_every_table_however_the_stream_is_cut(size):
    text = mariadb_dump_text(TABLES)
    scanner = MariaDBDumpScanner()
    for start in range(0, len(text), size):
        scanner.feed(text[start : start + size])
    assert scanner.tables == TABLES
    assert scanner.started and scanner.completed


def test_mariadb_scanner_with_chunks_of_changing_sizes_at_every_mark():
    text = mariadb_dump_text(TABLES, rows=3000)
    marks = [i for i in range(len(text)) if text.startswith(b"CREATE TABLE `", i)]
    for mark in marks:
        for offset in range(0, 20):
            cut = mark + offset
            scanner = MariaDBDumpScanner()
            scanner.feed(text[:cut])
            scanner.feed(text[cut : cut + 3])
            scanner.feed(text[cut + 3 :])
            assert scanner.tables == TABLES, (mark, offset)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 1 << 20])
def test_mariadb_scanner_reads_doubled_backticks_in_a_name(size):
    tables = ["we`ird", "a``b", "plain"]
    text = mariadb_dump_text([t.replace("`", "``") for t in tables], rows=10)
    scanner = MariaDBDumpScanner()
    for start in range(0, len(text), size):
        scanner.feed(text[start : start + size])
    assert scanner.tables == tables


def test_mariadb_scanner_sees_a_truncated_dump():
    text = mariadb_dump_text(TABLES)
    scanner = MariaDBDumpScanner()
    scanner.feed(text[: len(text) - 100])
    assert not scanner.completed


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
