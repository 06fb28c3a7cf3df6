"""A pg_dump custom-format archive read as data: its table of contents, read before any of it runs.

The table of contents is at the head of the archive (pg_dump writes it before the data,
also to a pipe), so it is read once from the stream and the bytes read are replayed in
front of the rest for the load. The reader follows pg_backup_archiver.c's ReadHead and
ReadToc and refuses every oddity instead of interpreting it; ``pg_restore -l`` is then
asked for its own reading of the same bytes, which must agree entry for entry.

What each entry may hold is checked by pgarchive_entries (check_entries): together the
two decide, before pg_restore has read a byte, whether any of the archive is run.
"""

import re
import subprocess
from dataclasses import dataclass

from ..errors import VerificationFailed
from ..formatting import first_line

MAX_HEAD = 64 << 20  # our TOCs are a few tens of KB
MAX_STRING = 16 << 20
MAX_ENTRIES = 100_000
READ_CHUNK = 1 << 16

# Archive versions pg_restore 12 to 17 write: 1.14 (tableam), 1.15 (compression algorithm
# byte in the header), 1.16 (relkind in each entry). Older archives predate our schema.
K_VERS_1_14 = (1, 14)
K_VERS_1_15 = (1, 15)
K_VERS_1_16 = (1, 16)
ARCH_CUSTOM = 1


class UnsafeArchive(VerificationFailed):
    """The archive holds something other than our tables and rows; nothing of it was run."""


@dataclass
class TocEntry:
    dump_id: int
    had_dumper: int
    tableoid: int
    oid: int
    tag: str
    desc: str
    section: int
    defn: str | None
    drop_stmt: str | None
    copy_stmt: str | None
    namespace: str | None
    tablespace: str | None
    tableam: str | None
    owner: str | None

    def name(self) -> str:
        """How the refusal names it: ``FUNCTION public.evil()``."""
        if self.tag == self.desc:  # ENCODING, STDSTRINGS, SEARCHPATH
            return self.desc
        return f"{self.desc} {self.namespace + '.' if self.namespace else ''}{self.tag}"


class _ArchiveHead:
    """Reads the archive's header and TOC from a stream, keeping every byte read."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.buf = bytearray()
        self.pos = 0
        self.int_size = 4

    def _bad(self, what: str):
        return UnsafeArchive(f"the archive's table of contents cannot be read: {what}; nothing of it was run")

    def bytes(self, n: int) -> bytes:
        while len(self.buf) - self.pos < n:
            if len(self.buf) > MAX_HEAD:
                raise self._bad(f"it is larger than {MAX_HEAD >> 20} MiB")
            chunk = self.stream.read(READ_CHUNK)
            if not chunk:
                raise self._bad("the file ends inside it")
            self.buf += chunk
        data = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return data

    def byte(self) -> int:
        return self.bytes(1)[0]

    def int(self) -> int:
        """ReadInt: a sign byte, then int_size bytes, least significant first."""
        sign = self.byte()
        value = int.from_bytes(self.bytes(self.int_size), "little")
        if sign not in (0, 1) or value >= 1 << 31:
            raise self._bad("an integer out of range")
        return -value if sign else value

    def str(self) -> str | None:
        """ReadStr: a length (-1 for NULL), then the bytes; a NUL would cut pg_restore's copy short."""
        n = self.int()
        if n == -1:
            return None
        if n < 0 or n > MAX_STRING:
            raise self._bad("a string of impossible length")
        data = self.bytes(n)
        if b"\x00" in data:
            raise self._bad("a string holding a NUL byte")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise self._bad("a string that is not UTF-8") from None

    def number(self) -> int:
        """An OID or dump id stored as text (sscanf %u): digits only."""
        text = self.str()
        if text is None or not re.fullmatch(r"[0-9]{1,10}", text) or int(text) >= 1 << 32:
            raise self._bad("an object id that is not a number")
        return int(text)

    def read(self) -> tuple[tuple[int, int], list[TocEntry]]:
        if self.bytes(5) != b"PGDMP":
            raise self._bad("it is not a pg_dump custom-format archive")
        version = (self.byte(), self.byte())
        self.byte()  # revision
        if not K_VERS_1_14 <= version <= K_VERS_1_16:
            raise self._bad(f"archive version {version[0]}.{version[1]} is not one pg_dump 12 to 17 writes")
        self.int_size, off_size, fmt = self.byte(), self.byte(), self.byte()
        if self.int_size != 4 or off_size != 8 or fmt != ARCH_CUSTOM:
            raise self._bad("a header pg_dump does not write")
        if version >= K_VERS_1_15:
            self.byte()  # compression algorithm
        else:
            self.int()  # compression level
        for _ in range(7):  # creation time: sec, min, hour, mday, mon, year, isdst
            self.int()
        for _ in range(3):  # database name, server version, pg_dump version
            self.str()
        count = self.int()
        if not 0 <= count <= MAX_ENTRIES:
            raise self._bad(f"{count} entries")
        return version, [self._entry(version) for _ in range(count)]

    def _entry(self, version) -> TocEntry:
        dump_id = self.int()
        if dump_id <= 0:
            raise self._bad("an entry id out of range")
        had_dumper = self.int()
        tableoid, oid = self.number(), self.number()
        tag, desc = self.str(), self.str()
        section = self.int()
        defn, drop_stmt, copy_stmt = self.str(), self.str(), self.str()
        namespace, tablespace, tableam = self.str(), self.str(), self.str()
        if version >= K_VERS_1_16:
            self.int()  # relkind
        owner = self.str()
        if self.str() != "false":  # WITH OIDS
            raise self._bad("a table WITH OIDS")
        while self.str() is not None:  # dependencies
            pass
        flag = self.byte()  # the custom format's data offset: a flag, then off_size bytes
        if flag not in (1, 2, 3):
            raise self._bad("a data offset flag pg_dump does not write")
        self.bytes(8)
        if tag is None or desc is None or had_dumper not in (0, 1):
            raise self._bad("an entry without a name or kind")
        return TocEntry(
            dump_id,
            had_dumper,
            tableoid,
            oid,
            tag,
            desc,
            section,
            defn,
            drop_stmt,
            copy_stmt,
            namespace,
            tablespace,
            tableam,
            owner,
        )


def read_head(stream) -> tuple[bytes, list[TocEntry]]:
    """The archive's table of contents, and every byte read from ``stream`` to get it."""
    head = _ArchiveHead(stream)
    _version, entries = head.read()
    return bytes(head.buf), entries


def _listed(value: str | None, hyphen: bool) -> str:
    """pg_restore's sanitize_line: what ``-l`` prints for a name."""
    if value is None:
        return "-" if hyphen else ""
    return value.replace("\n", " ").replace("\r", " ")


def cross_check(head: bytes, entries: list[TocEntry], env: dict | None = None) -> None:
    """``pg_restore -l -v`` reads the same bytes and must list exactly the entries read here.

    The reader above is strict, but it is not pg_restore: if the two ever framed the
    table of contents differently, what was checked would not be what runs.
    """
    proc = subprocess.run(["pg_restore", "-l", "-v"], input=head, capture_output=True, env=env)
    if proc.returncode != 0:
        line = first_line(proc.stderr.decode("utf-8", "replace")) or "no message"
        raise UnsafeArchive(f"pg_restore cannot read the archive's table of contents: {line}; nothing of it was run")
    listed = [
        line
        for line in proc.stdout.decode("utf-8", "replace").splitlines()
        if line.strip() and not line.startswith(";")
    ]
    ours = [
        f"{e.dump_id}; {e.tableoid} {e.oid} {e.desc} {_listed(e.namespace, True)} "
        f"{_listed(e.tag, False)} {_listed(e.owner, False)}"
        for e in entries
    ]
    if listed != ours:
        raise UnsafeArchive("pg_restore reads the archive's table of contents differently; nothing of it was run")


class Replay:
    """The bytes already read (the head), then the rest of the stream: the whole archive again."""

    def __init__(self, head: bytes, stream) -> None:
        self.head = memoryview(head)
        self.stream = stream

    def read(self, n: int = -1) -> bytes:
        if self.head:
            size = len(self.head) if n is None or n < 0 else n
            data, self.head = bytes(self.head[:size]), self.head[size:]
            return data
        return self.stream.read(n)

    def readable(self) -> bool:
        return True
