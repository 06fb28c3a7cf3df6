"""SQLite files opened by path, not through Django: quoted names, ``file:`` URIs, inert
connections, the tables and columns of a schema, PRAGMA checks, the CHECKs of a CREATE TABLE.

Shared by the SQLite engine's modules (sqlite.py and its sqlite_* mixins).
"""

import re
import sqlite3
from pathlib import Path
from urllib.parse import quote, urlencode


def quote_ident(table: str) -> str:
    """An SQLite identifier in double quotes, its own double quotes doubled."""
    return '"' + table.replace('"', '""') + '"'


def file_uri(path, **params: str) -> str:
    """A ``file:`` URI for ``path`` (characters such as ? and # escaped) with query ``params``."""

    query = f"?{urlencode(params)}" if params else ""
    return f"file:{quote(str(Path(path).absolute()))}{query}"


def connect_inert(uri: str, **kwargs):
    """A connection on which the file's schema can call nothing but SQLite's innocuous built-ins.

    trusted_schema off: functions in views, triggers, CHECKs, defaults, generated columns
    and index expressions are limited to those SQLite marks innocuous. A plain sqlite3
    connection has no application functions or collations, and extension loading stays
    off (enable_load_extension is never called; writable_schema never set).
    """

    conn = sqlite3.connect(uri, uri=True, **kwargs)
    conn.execute("PRAGMA trusted_schema = OFF")
    return conn


def remove_database_file(path) -> None:
    """Remove a database file and the journal, WAL and shared-memory files beside it (if any)."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def recorded_migrations(conn) -> dict[str, list[str]]:
    """The migrations a file's django_migrations records as applied, app by app, in order."""
    migrations: dict[str, list[str]] = {}
    for app, name in conn.execute("SELECT app, name FROM django_migrations ORDER BY id"):
        migrations.setdefault(app, []).append(name)
    return migrations


def table_names(conn, schema: str, internal: bool = False) -> list[str]:
    where = "" if internal else " AND name NOT LIKE 'sqlite_%'"
    return [
        name
        for (name,) in conn.execute(
            f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table'{where} ORDER BY name"
        )
    ]


def column_names(conn, schema: str, table: str) -> list[str]:
    return [name for (name,) in conn.execute("SELECT name FROM pragma_table_xinfo(?, ?) ORDER BY cid", [table, schema])]


# The page cache of a connection running integrity_check (KiB). Its index look-ups jump
# around the file: with SQLite's default 2 MiB it took 1.5x as long here (300,000 servers:
# 1.0 s against 0.67 s with 16 MiB or more; 1,000,000: 4.3 s against 3.0 s with 32 MiB,
# 2.8 s with 64 MiB). A fixed size, so the peak memory does not grow with the data.
INTEGRITY_CACHE_KIB = 32 * 1024


def pragma_lines(uri: str, pragma: str, conn=None) -> list[str]:
    """The lines of PRAGMA quick_check / integrity_check (at most 100), on ``conn`` or a new connection."""
    own = conn is None
    if own:
        conn = connect_inert(uri)
    try:
        if pragma.startswith("integrity_check"):
            conn.execute(f"PRAGMA cache_size = -{INTEGRITY_CACHE_KIB}")
        return [r[0] for r in conn.execute(f"PRAGMA {pragma}").fetchmany(100)]
    finally:
        if own:
            conn.close()


_CHECK = re.compile(r'(?:CONSTRAINT\s+"([^"]+)"\s+)?CHECK\s*\(', re.IGNORECASE)


def check_expressions(table_sql: str) -> list[tuple[str | None, str]]:
    """(name, or None for a column's check; its SQL) of every CHECK in a CREATE TABLE statement."""
    found = []
    for match in _CHECK.finditer(table_sql):
        # The parenthesised expression, quotes respected.
        depth, i, quote = 1, match.end(), None
        while i < len(table_sql) and depth:
            ch = table_sql[i]
            if quote:
                if ch == quote:
                    quote = None
            elif ch in "'\"":
                quote = ch
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            i += 1
        found.append((match.group(1), table_sql[match.end() : i - 1].strip()))
    return found
