"""Scanners for dump formats: what a dump holds, read as it streams by, at C speed.

Vendor-specific knowledge of dump text (PostgreSQL's pg_restore script, mariadb-dump's
SQL); used by the engines' backup sections.
"""

import subprocess
import tempfile

from ..streams import CHUNK, BackgroundWriter, widen_pipe


def stderr_first_line(errfile) -> str:
    """The first meaningful line a tool wrote to stderr (a temp file)."""
    errfile.seek(0)
    for line in errfile.read().decode("utf-8", "replace").splitlines():
        if line.strip():
            return line.strip()
    return "no message"


def run_with_stdin(cmd: list[str], env: dict, source, checker=None) -> tuple[int, str]:
    """Run a loader tool with ``source`` (a binary stream) on its stdin.

    Returns its exit status and the first line of its stderr. A tool that exits early
    (a broken dump) closes the pipe: that is its status to report, not an exception.
    With a ``checker`` (``feed(chunk)`` -> the checked bytes, ``close()`` -> the rest),
    only what it passed is written; when it refuses (raises), the tool is killed before
    its stdin is closed (at end of input a client would run a statement it holds
    unfinished) and the refusal is raised. Any other failure to read kills it too.
    """
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=err, env=env)
        widen_pipe(proc.stdin)
        # The tool's stdin is written from a thread of its own, a few chunks behind: the
        # next chunk is decompressed, hashed and checked while the tool (and the server
        # behind it) works on the last ones, as in a shell pipeline, instead of in turns
        # (a million servers' MariaDB dump: the checker is seconds of CPU).
        writer = BackgroundWriter(proc.stdin)
        try:
            try:
                while chunk := source.read(CHUNK):
                    writer.write(checker.feed(chunk) if checker is not None else chunk)
                if checker is not None:
                    writer.write(checker.close())
                writer.close()
            except BrokenPipeError:
                pass  # the tool stopped on an error of its own: its status says which
        except BaseException:
            proc.kill()  # before its stdin closes: it never sees the end of the input
            raise
        finally:
            writer.abandon()  # what was queued (all of it checked) is written, or fails on the dead pipe
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
            rc = proc.wait()
        return rc, (stderr_first_line(err) if rc != 0 else "")


class CopyCounter:
    """Counts the rows of every ``COPY ... FROM stdin;`` block in a pg_restore SQL script.

    COPY text escapes newlines and backslashes, so a raw newline ends a row and a line
    that is exactly ``\\.`` ends the block; counting is bytes.count, at C speed.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.table: str | None = None
        self.tail = b""

    def feed(self, data: bytes) -> None:
        buf = self.tail + data
        end = buf.rfind(b"\n") + 1
        self.tail = buf[end:]
        pos = 0
        while pos < end:
            if self.table is None:
                i = buf.find(b"COPY ", pos, end)
                if i < 0:
                    return
                eol = buf.find(b"\n", i, end)
                if i > 0 and buf[i - 1] != 0x0A:
                    pos = eol + 1
                    continue
                line = buf[i:eol]
                if line.endswith(b"FROM stdin;"):
                    qualified = line[5:].split(b" (", 1)[0].split(b" ", 1)[0]
                    table = qualified.rsplit(b".", 1)[-1].strip(b'"').decode("utf-8", "replace")
                    self.table = table
                    self.counts[table] = 0
                pos = eol + 1
            else:
                j = pos
                while True:
                    k = buf.find(b"\\.\n", j, end)
                    if k < 0 or k == 0 or buf[k - 1] == 0x0A:
                        break
                    j = k + 1
                if k < 0:
                    self.counts[self.table] += buf.count(b"\n", pos, end)
                    return
                self.counts[self.table] += buf.count(b"\n", pos, k)
                self.table = None
                pos = k + 3


class MariaDBDumpScanner:
    """Watches a mariadb-dump stream: the tables it creates, and the completion trailer.

    ``started`` turns true at the first table: mariadb-dump has begun its consistent
    snapshot transaction before it writes any table.
    """

    MARK = b"CREATE TABLE `"
    TRAILER = b"-- Dump completed"

    def __init__(self) -> None:
        self.tables: list[str] = []
        self.started = False
        self.tail = b""
        self.last = b""

    def feed(self, data: bytes) -> None:
        # A mark cut by the previous chunk's end: only the tail and this chunk's start are
        # joined, not the whole chunk (copying every megabyte twice cost more than the search).
        if len(data) < 4096:
            buf = self.tail + data
            pos = self._scan(buf)
            self.tail = buf[max(pos, len(buf) - 256) :]
        else:
            if self.tail:
                self._scan(self.tail + data[:256], before=len(self.tail))
            pos = self._scan(data)
            self.tail = data[max(pos, len(data) - 256) :]
        self.last = (self.last + data[-512:])[-512:]

    def _scan(self, buf: bytes, before: int | None = None) -> int:
        """Record the tables whose mark starts in ``buf`` (before ``before``, when given);
        returns where the search stopped (after the last whole mark)."""
        pos = 0
        while (i := buf.find(self.MARK, pos)) >= 0 and (before is None or i < before):
            j = buf.find(b"`", i + len(self.MARK))
            while 0 <= j < len(buf) - 1 and buf[j + 1] == 0x60:  # a doubled backtick is part of the name
                j = buf.find(b"`", j + 2)
            if j < 0 or j == len(buf) - 1:
                break  # the name's end is in the next chunk
            self.tables.append(buf[i + len(self.MARK) : j].replace(b"``", b"`").decode("utf-8", "replace"))
            self.started = True
            pos = j + 1
        return pos

    @property
    def completed(self) -> bool:
        return self.TRAILER in self.last
