"""What an entry of a pg_dump archive may hold: each checked before any of the archive runs.

pg_restore executes, for every entry it restores, the SQL text the archive carries
(``defn``, and ``copyStmt`` for table data) verbatim, through PQexec, which runs every
statement of a string. An archive is therefore accepted only when each entry is of a
kind our backups hold and its SQL has a shape pg_dump writes for mcmanager's own
tables: CREATE TABLE, identity sequences, defaults, constraints, indexes, COPY of rows.
Anything else (a function, trigger, view, rule, extension, role or database change, a
second statement, a call to a function outside a short list of built-ins) refuses the
whole file, before pg_restore has read a byte of it.

The entries come from pgarchive's reader of the table of contents (read_head).
"""

import re
from dataclasses import dataclass

from django.apps import apps
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations import AlterModelTable, CreateModel

from .pgarchive import TocEntry, UnsafeArchive

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
