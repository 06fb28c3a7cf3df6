"""Streaming pieces of a backup: compress while hashing, decompress while hashing, pipes,
regular files only.

Vendor-neutral; the engines and dbtools.backups share them (the engines' result types are
in dbtools.engines.results). Every byte of a backup is
read or written once: the sha256 is taken from the compressed bytes as they go to (or
come from) the file, never in a second pass.
"""

import fcntl
import gzip
import hashlib
import os
import queue
import secrets
import stat
import threading
from typing import BinaryIO

import zstandard

CHUNK = 1 << 20

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"

COMPRESSION_SUFFIX = {"zstd": ".zst", "gzip": ".gz", "none": ""}
# The compressions a backup may use (settings, the backup command, manifests).
COMPRESSIONS = tuple(COMPRESSION_SUFFIX)


class HashingFile:
    """A write-only file that hashes and counts what is written (the compressed bytes)."""

    def __init__(self, fileobj: BinaryIO) -> None:
        self.fileobj = fileobj
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.sha256.update(data)
        self.fileobj.write(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self.fileobj.flush()

    def writable(self) -> bool:
        return True


class HashingReader:
    """A read-only stream that hashes and counts what is read from the file."""

    def __init__(self, fileobj: BinaryIO) -> None:
        self.fileobj = fileobj
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.fileobj.read(n)
        self.sha256.update(data)
        self.size += len(data)
        return data

    def readinto(self, buffer) -> int:
        n = self.fileobj.readinto(buffer)
        if n:
            self.sha256.update(memoryview(buffer)[:n])
            self.size += n
        return n

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        """Read to the end, so the hash covers the whole file (trailing bytes included)."""
        while self.read(CHUNK):
            pass


def compressing_writer(sink: HashingFile, compression: str):
    """A writable stream that compresses into ``sink``; ``close()`` finishes the frame."""
    if compression == "zstd":
        # Level 1, in the calling thread (zstandard releases the GIL): on the 2-core machines
        # this runs on, the other core is busy with quick_check (SQLite) or the dump tool
        # and the server. Measured on an 80 MB SQLite file: level 1 0.5 s, level 3 2-3.6 s
        # (single or multi-threaded) for a file only 4% smaller; zstd workers only
        # competed with the checks for the second core.
        compressor = zstandard.ZstdCompressor(level=1, threads=0)
        return compressor.stream_writer(sink, closefd=False)
    if compression == "gzip":
        return gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=6, mtime=0)
    if compression == "none":
        return _PlainWriter(sink)
    raise ValueError(f"unknown compression {compression!r}")


class _PlainWriter:
    def __init__(self, sink) -> None:
        self.sink = sink

    def write(self, data) -> int:
        return self.sink.write(data)

    def flush(self) -> None:
        self.sink.flush()

    def close(self) -> None:
        self.sink.flush()


def detect_compression(head: bytes) -> str:
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    return "none"


def decompressing_reader(raw: BinaryIO, compression: str) -> BinaryIO:
    """A readable stream of the uncompressed dump over ``raw`` (which may hash as it is read)."""
    if compression == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(raw, read_size=CHUNK, closefd=False)
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    return raw


def private_directory(directory):
    """``directory`` (a Path) created 0700 with its parents, this user's and not a symlink,
    its mode narrowed to 0700 if wider; None when it cannot be had."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(directory)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            return None
        if st.st_mode & 0o077:
            os.chmod(directory, 0o700, follow_symlinks=False)
    except OSError:
        return None
    return directory


def fsync_directory(path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def widen_pipe(pipe) -> None:
    """Let the pipe hold up to a chunk (Linux; 64 KiB by default), so each read brings a
    megabyte instead of a few kilobytes: a tenth of the system calls and Python round trips."""
    setter = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setter is None:
        return
    try:
        fcntl.fcntl(pipe.fileno(), setter, CHUNK)
    except OSError:
        pass  # over /proc/sys/fs/pipe-max-size for this user: the default size works, slower


class BackgroundWriter:
    """Writes to ``target`` from a thread of its own, at most ``depth`` chunks behind.

    A dump tool writing into a pipe stalls whenever the reader stops to compress and
    write: with the compression here, reading the pipe and compressing overlap
    (zstandard, hashlib and file writes release the GIL), as they do in a shell
    pipeline. ``close()`` waits for the last chunk and raises what writing raised;
    ``write()`` raises it as soon as it is known.
    """

    def __init__(self, target, depth: int = 8) -> None:
        self.target = target
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="backup-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self.target.write(chunk)
                except BaseException as exc:  # kept for the producer; keep draining so it never blocks
                    self._error = exc

    def write(self, data) -> int:
        if self._error is not None:
            raise self._error
        self._queue.put(data)
        return len(data)

    def abandon(self) -> None:
        """Stop the thread after what is queued; nothing is raised (the caller is failing already)."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()

    def close(self) -> None:
        self.abandon()
        if self._error is not None:
            raise self._error


def pump_tool_output(pipe, out, consume) -> None:
    """Copy a dump tool's stdout ``pipe`` into ``out`` while ``consume(chunk)`` sees every chunk.

    The pipe is widened and ``out`` (compression, hashing, the file) is written on a
    BackgroundWriter, so the tool never waits on the compression. Raises what reading,
    consuming or writing raised, once the writer has stopped; the caller stops its tools.
    """
    widen_pipe(pipe)
    writer = BackgroundWriter(out)
    try:
        while chunk := pipe.read1(CHUNK):
            writer.write(chunk)
            consume(chunk)
        writer.close()
    except BaseException:
        writer.abandon()
        raise


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (the owner of a leftover named with it)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process, or no pid at all: leave its files alone
    return True


def unique_suffix() -> str:
    return f"{os.getpid()}_{secrets.token_hex(4)}"


_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotRegularFile(OSError):
    """A path that names something other than a regular file (a FIFO, a device, a directory)."""

    def __init__(self, path, mode: int) -> None:
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        super().__init__(f"{kind}, not a regular file")
        self.path = str(path)
        self.kind = kind

    def __str__(self) -> str:
        return f"{self.path} is {self.kind}, not a regular file"


def open_regular(path, mode: str = "rb"):
    """Open ``path`` for reading, only if it is a regular file; NotRegularFile at once otherwise.

    A named pipe named like a backup would block ``open()`` until a writer comes (forever,
    holding the database lock), and a device or a directory is no backup either. The path
    is checked before it is opened (no device is ever opened) and opened with O_NONBLOCK
    (a FIFO swapped in meanwhile cannot block), then checked again on the descriptor.
    """
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(path, st.st_mode)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(path, st.st_mode)
        os.set_blocking(fd, True)
        return os.fdopen(fd, mode, encoding="utf-8" if "b" not in mode else None)
    except BaseException:
        os.close(fd)
        raise
