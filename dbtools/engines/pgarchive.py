"""A pg_dump custom-format archive read as data: its table of contents, checked before any of it runs.

pg_restore executes, for every entry it restores, the SQL text the archive carries
(``defn``, and ``copyStmt`` for table data) verbatim, through PQexec, which runs every
statement of a string. An archive is therefore accepted only when each entry is of a
kind our backups hold and its SQL has a shape pg_dump writes for mcmanager's own
tables: CREATE TABLE, identity sequences, defaults, constraints, indexes, COPY of rows.
Anything else (a function, trigger, view, rule, extension, role or database change, a
second statement, a call to a function outside a short list of built-ins) refuses the
whole file, before pg_restore has read a byte of it.

The table of contents is at the head of the archive (pg_dump writes it before the data,
also to a pipe), so it is read once from the stream and the bytes read are replayed in
front of the rest for the load. The reader follows pg_backup_archiver.c's ReadHead and
ReadToc and refuses every oddity instead of interpreting it; ``pg_restore -l`` is then
asked for its own reading of the same bytes, which must agree entry for entry.

Why this module is long: the binary reader (ReadHead, ReadToc) and the per-kind checks of
each entry's SQL are one format's rules, read together against pg_backup_archiver.c;
cutting them apart would put the format's description in two places.
"""

import re
import subprocess
from dataclasses import dataclass

from django.apps import apps
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations import AlterModelTable, CreateModel

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


# --- what an entry may hold -------------------------------------------------------

_NAME = r'(?:[a-z_][a-z0-9_]*|"(?:[^"\x00]|"")+")'
_COPY = re.compile(rf"COPY public\.({_NAME}) \(({_NAME}(?:, {_NAME})*)\) FROM stdin;\n")
_SETVAL = re.compile(r"SELECT pg_catalog\.setval\('public\.([a-z_][a-z0-9_]*)', -?[0-9]+, (?:true|false)\);\n")
_FIXED = {
    "SEARCHPATH": re.compile(r"SELECT pg_catalog\.set_config\('search_path', '', false\);\n"),
    "STDSTRINGS": re.compile(r"SET standard_conforming_strings = 'on';\n"),
    "ENCODING": re.compile(r"SET client_encoding = '[A-Za-z0-9_]+';\n"),
}

_LEX = re.compile(
    r"""
     (?P<space>[ \t\r\n]+)
    |(?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<qident>"(?:[^"\x00]|"")+")
    |(?P<string>'(?:[^'\x00]|'')*')
    |(?P<number>[0-9]+(?:\.[0-9]+)?)
    |(?P<op>[-+*/<>=~!@\#%^&|`?]+)
    |(?P<punct>::|[(),;.\[\]])
    """,
    re.X,
)
# Operators our CHECK constraints and indexes use (pg_dump's deparse). A run of
# operator characters holding "--" or "/*" would start a comment: not in this list.
_OPERATORS = {
    "=", "<", ">", "<=", ">=", "<>", "!=", "~", "~~", "~*", "~~*", "!~", "!~~", "!~*", "!~~*", "+", "-", "*",
    "/", "%", "||",
}  # fmt: skip
# Built-in functions the migrations of accounts, servers and dbtools put in constraints
# and indexes (length, lower), and a few harmless neighbours. Unqualified names resolve
# in pg_catalog only: pg_restore runs with search_path = ''.
_FUNCTIONS = {
    "length", "char_length", "character_length", "octet_length", "lower", "upper", "btrim", "abs",
    "coalesce", "nullif", "greatest", "least", "cast",
}  # fmt: skip
# Words followed by "(" that are syntax, not calls.
_SYNTAX = {
    "check", "key", "unique", "any", "all", "in", "and", "or", "not", "when", "then", "else",
    "varying", "numeric", "decimal", "character", "char", "varchar", "timestamp", "time", "interval", "bit",
    "btree", "hash", "gin", "gist", "brin", "identity", "where", "include",
}  # fmt: skip
# Reserved words (never an unquoted column name) that none of our statements holds past
# its head: a query, a second command. The safety rests on the shapes and the call rule;
# this is a second net.
_FORBIDDEN = {
    "select", "from", "grant", "create", "do", "into", "union", "returning", "analyze", "analyse",
    "user", "session_user", "current_user", "current_role", "lateral", "window", "having", "limit",
    "offset", "fetch", "order", "group", "table",
}  # fmt: skip


@dataclass
class _Tok:
    kind: str
    text: str

    @property
    def word(self) -> str | None:
        """The lower-cased word of an unquoted identifier (keywords live here)."""
        return self.text.lower() if self.kind == "ident" else None

    @property
    def name(self) -> str | None:
        """The identifier it names, quoted or not."""
        if self.kind == "ident":
            return self.text.lower()
        if self.kind == "qident":
            return self.text[1:-1].replace('""', '"')
        return None


def _tokens(sql: str) -> list[_Tok]:
    """The statement's tokens, in a subset of PostgreSQL's lexer where both agree exactly."""
    tokens: list[_Tok] = []
    pos = 0
    adjacent = False
    while pos < len(sql):
        m = _LEX.match(sql, pos)
        if m is None:
            raise ValueError(f"a character pg_dump does not write here ({sql[pos]!r})")
        kind, text = m.lastgroup, m.group()
        pos = m.end()
        if kind == "space":
            adjacent = False
            continue
        if adjacent and tokens:
            prev = tokens[-1].kind
            # E'...', U&'...', B'...', 1e5, 0x1F: prefixes that change how PostgreSQL lexes.
            if (kind == "string" and prev in ("ident", "string")) or (prev == "number" and kind in ("ident", "number")):
                raise ValueError(f"{tokens[-1].text}{text} is lexed differently by PostgreSQL")
        if kind == "op" and text not in _OPERATORS:
            raise ValueError(f"operator {text}")
        tokens.append(_Tok(kind, text))
        adjacent = True
    return tokens


class _Statement:
    """One statement's tokens with a cursor, for matching the shapes pg_dump writes."""

    def __init__(self, sql: str | None) -> None:
        tokens = _tokens(sql or "")
        semis = [i for i, t in enumerate(tokens) if t.text == ";"]
        if semis != [len(tokens) - 1]:
            raise ValueError("more than one statement" if len(semis) > 1 else "no statement")
        self.tokens = tokens
        self.i = 0

    def accept(self, *words: str) -> bool:
        """Consume ``words`` (lower-case keywords) if they come next."""
        ahead = self.tokens[self.i : self.i + len(words)]
        if len(ahead) == len(words) and all(t.word == w for t, w in zip(ahead, words, strict=True)):
            self.i += len(words)
            return True
        return False

    def expect(self, *words: str) -> None:
        if not self.accept(*words):
            raise ValueError(f"not the statement pg_dump writes (expected {' '.join(words).upper()})")

    def ident(self) -> str:
        t = self.tokens[self.i]
        if t.name is None:
            raise ValueError(f"{t.text} where a name belongs")
        self.i += 1
        return t.name

    def punct(self, text: str) -> None:
        if self.tokens[self.i].text != text:
            raise ValueError(f"{self.tokens[self.i].text} where {text} belongs")
        self.i += 1

    def our_table(self, tables: set[str]) -> str:
        """``public.<table>`` naming one of our tables."""
        if self.ident() != "public":
            raise ValueError("an object of another schema")
        self.punct(".")
        table = self.ident()
        if table not in tables:
            raise ValueError(f"table public.{table}, not one of mcmanager's")
        return table

    def rest(self, tables: set[str], functions: set[str] = frozenset(), commas: bool = False) -> None:
        """The remaining tokens: no forbidden word, no call outside the built-ins, no second action."""
        tokens = self.tokens
        depth = 0
        for i in range(self.i, len(tokens)):
            t = tokens[i]
            if t.word in _FORBIDDEN:
                raise ValueError(f"{t.text.upper()} in it")
            if t.text == "(":
                depth += 1
            elif t.text == ")":
                depth -= 1
            elif t.text == "," and depth == 0 and not commas:
                raise ValueError("a second action in one statement")
            if i + 1 < len(tokens) and tokens[i + 1].text == "(" and t.name is not None:
                self._check_call(i, tables, functions)

    def _check_call(self, i: int, tables: set[str], functions: set[str]) -> None:
        tokens = self.tokens
        t = tokens[i]
        qualified = i >= 2 and tokens[i - 1].text == "."
        schema = tokens[i - 2].name if qualified else None
        if not qualified and t.word in _SYNTAX:
            return
        # REFERENCES public.<table>(<column>)
        if schema == "public" and t.name in tables and i >= 3 and tokens[i - 3].word == "references":
            return
        if schema in (None, "pg_catalog") and t.kind == "ident" and t.name in (_FUNCTIONS | functions):
            return
        raise ValueError(f"a call of {(schema + '.') if schema else ''}{t.name}()")


def _check_table(entry: TocEntry, tables: set[str]) -> None:
    s = _Statement(entry.defn)
    s.expect("create", "table")
    if s.our_table(tables) != entry.tag:
        raise ValueError("it creates another table than its entry names")
    s.punct("(")
    if [t.text for t in s.tokens[-2:]] != [")", ";"]:
        raise ValueError("options after the column list")
    s.rest(tables, commas=True)
    # The column list's closing parenthesis must be the last one: nothing follows it.
    depth = 0
    for k in range(s.i - 1, len(s.tokens) - 1):
        depth += {"(": 1, ")": -1}.get(s.tokens[k].text, 0)
        if depth == 0 and k != len(s.tokens) - 2:
            raise ValueError("options after the column list")


def _check_sequence(entry: TocEntry, tables: set[str]) -> None:
    s = _Statement(entry.defn)
    if s.accept("create", "sequence"):
        if s.ident() != "public":
            raise ValueError("an object of another schema")
        s.punct(".")
        if s.ident() != entry.tag:
            raise ValueError("it creates another sequence than its entry names")
    else:
        # Django's identity columns: ALTER TABLE ... ADD GENERATED ... AS IDENTITY (SEQUENCE NAME ...)
        s.expect("alter", "table")
        s.accept("only")
        s.our_table(tables)
        s.expect("alter", "column")
        s.ident()
        s.expect("add", "generated")
        if not s.accept("by", "default"):
            s.expect("always")
        s.expect("as", "identity")
    s.rest(tables)


def _check_owned_by(entry: TocEntry, tables: set[str]) -> None:
    s = _Statement(entry.defn)
    s.expect("alter", "sequence")
    if s.ident() != "public":
        raise ValueError("an object of another schema")
    s.punct(".")
    s.ident()
    s.expect("owned", "by")
    s.our_table(tables)
    s.punct(".")
    s.ident()
    s.punct(";")


def _check_default(entry: TocEntry, tables: set[str]) -> None:
    s = _Statement(entry.defn)
    s.expect("alter", "table")
    s.accept("only")
    s.our_table(tables)
    s.expect("alter", "column")
    s.ident()
    s.expect("set", "default")
    s.rest(tables, functions={"nextval"})


def _check_constraint(entry: TocEntry, tables: set[str]) -> None:
    s = _Statement(entry.defn)
    s.expect("alter", "table")
    s.accept("only")
    s.our_table(tables)
    s.expect("add", "constraint")
    s.ident()
    if not (s.accept("primary", "key") or s.accept("unique") or s.accept("check") or s.accept("foreign", "key")):
        raise ValueError("a kind of constraint our models do not make")
    s.rest(tables)


def _check_index(entry: TocEntry, tables: set[str]) -> None:
    s = _Statement(entry.defn)
    s.expect("create")
    s.accept("unique")
    s.expect("index")
    if s.ident() != entry.tag:
        raise ValueError("it creates another index than its entry names")
    s.expect("on")
    s.accept("only")
    s.our_table(tables)
    s.expect("using")
    s.rest(tables)


def _check_data(entry: TocEntry, tables: set[str]) -> None:
    if entry.defn or entry.had_dumper != 1:
        raise ValueError("SQL beside its rows")
    m = _COPY.fullmatch(entry.copy_stmt or "")
    if m is None:
        raise ValueError("not a COPY of rows from the archive")
    table = m.group(1).strip('"')
    if table != entry.tag or table not in tables:
        raise ValueError(f"rows for public.{table}, not one of mcmanager's tables")


def _check_sequence_set(entry: TocEntry, tables: set[str]) -> None:
    if entry.copy_stmt or entry.had_dumper or _SETVAL.fullmatch(entry.defn or "") is None:
        raise ValueError("not the setval() pg_dump writes")


_CHECKS = {
    "TABLE": _check_table,
    "SEQUENCE": _check_sequence,
    "SEQUENCE OWNED BY": _check_owned_by,
    "DEFAULT": _check_default,
    "CONSTRAINT": _check_constraint,
    "FK CONSTRAINT": _check_constraint,
    "CHECK CONSTRAINT": _check_constraint,
    "INDEX": _check_index,
    "TABLE DATA": _check_data,
    "SEQUENCE SET": _check_sequence_set,
}


# pg_dump always writes the database's own CREATE DATABASE and ALTER DATABASE ... SET;
# pg_restore applies them only with --create, which we never pass, and they stay out of
# the -L list.
_NEVER_RESTORED = {"DATABASE", "DATABASE PROPERTIES"}


def check_entries(entries: list[TocEntry], tables: set[str]) -> list[int]:
    """Refuse the archive (UnsafeArchive, one line) unless every entry is one of ours; returns
    the dump ids for ``pg_restore -L``."""
    wanted = []
    if not any(entry.desc == "SEARCHPATH" for entry in entries):
        # Without it pg_restore sets search_path to public, pg_catalog: an unqualified
        # lower() could then name something else than pg_catalog's.
        raise UnsafeArchive("the archive sets no empty search_path, as pg_dump 12 and later do; nothing of it was run")
    for entry in entries:
        fixed = _FIXED.get(entry.desc)
        if fixed is not None:
            # Read by pg_restore itself (ENCODING, STDSTRINGS) or sent verbatim before
            # every entry (SEARCHPATH): only the exact text pg_dump writes.
            if entry.namespace or entry.copy_stmt or fixed.fullmatch(entry.defn or "") is None:
                raise _refusal(entry, "another setting")
            continue
        if entry.desc in _NEVER_RESTORED:
            continue
        check = _CHECKS.get(entry.desc)
        if check is None:
            raise UnsafeArchive(f"the archive holds a {entry.name()}: refused, nothing of it was run")
        if entry.namespace != "public":
            raise UnsafeArchive(f"the archive holds a {entry.name()} of another schema: refused, nothing of it was run")
        if entry.tablespace or entry.tableam not in (None, "", "heap"):
            raise _refusal(entry, "a tablespace or table access method of its own")
        if entry.desc != "TABLE DATA" and entry.copy_stmt:
            raise _refusal(entry, "a COPY statement")
        try:
            check(entry, tables)
        except (ValueError, IndexError) as exc:
            raise _refusal(entry, str(exc) or "not a statement pg_dump writes") from None
        wanted.append(entry.dump_id)
    return wanted


def _refusal(entry: TocEntry, why: str) -> UnsafeArchive:
    return UnsafeArchive(
        f"the archive holds a {entry.name()} whose SQL is not what pg_dump writes for our tables "
        f"({why}): refused, nothing of it was run"
    )


def our_tables() -> set[str]:
    """The tables mcmanager's models have or had: today's models and every CreateModel of the migrations."""

    tables = {model._meta.db_table for model in apps.get_models(include_auto_created=True)}
    tables.add("django_migrations")
    loader = MigrationLoader(None, ignore_no_migrations=True)
    for (app_label, _name), migration in loader.disk_migrations.items():
        for operation in migration.operations:
            if isinstance(operation, CreateModel):
                tables.add(operation.options.get("db_table") or f"{app_label}_{operation.name.lower()}")
            elif isinstance(operation, AlterModelTable) and operation.table:
                tables.add(operation.table)
    return tables


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
