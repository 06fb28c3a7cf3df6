"""Reading a Flask-era mcServerManager database, never writing it: SQLite, PostgreSQL, MariaDB.

The old application may still be running against its database while an operator looks
at it with ``import_legacy --dry-run``, so a source is only ever read: a SQLite file is
opened read-only and immutable (no journal, no lock, no -wal/-shm file created), a
server database in a read-only transaction (PostgreSQL: REPEATABLE READ, READ ONLY;
MariaDB: a consistent snapshot, READ ONLY), whose plain SELECTs take no lock that
would stop the old application's writes.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from ..errors import CouldNotRun, DatabaseUnreachable
from ..formatting import first_line

SQLITE_MAGIC = b"SQLite format 3\x00"
URL_SCHEMES = {
    "postgres": "postgresql",
    "postgresql": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
}
FETCH_ROWS = 50_000


class LegacySource:
    """One source database: its tables, their columns, their rows in id order."""

    kind = ""

    def describe(self) -> str:
        raise NotImplementedError

    def tables(self) -> set[str]:
        raise NotImplementedError

    def columns(self, table: str) -> list[str]:
        raise NotImplementedError

    def rows(self, table: str, columns: list[str], order_by: str | None = "id") -> Iterator[tuple]:
        """The table's rows, the given columns in that order, ordered by ``order_by``."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SQLiteSource(LegacySource):
    kind = "sqlite"

    def __init__(self, path: Path):
        self.path = path
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            raise CouldNotRun(f"cannot read {path}: {exc.strerror}") from None
        if not stat.S_ISREG(mode):
            raise CouldNotRun(f"{path} is not a regular file")
        try:
            with open(path, "rb") as fh:
                head = fh.read(len(SQLITE_MAGIC))
        except OSError as exc:
            raise CouldNotRun(f"cannot read {path}: {exc.strerror}") from None
        if head != SQLITE_MAGIC:
            raise CouldNotRun(f"{path} is not a SQLite database (and not a postgres:// or mysql:// URL)")
        # Immutable means SQLite reads the main file alone: changes still in a write-ahead
        # log would be missed, and a hot journal means the file is mid-transaction.
        for suffix, what in (("-wal", "a write-ahead log"), ("-journal", "a rollback journal")):
            side = Path(f"{path}{suffix}")
            if side.exists() and side.stat().st_size > 0:
                raise CouldNotRun(
                    f"{path} has {what} ({side.name}) with changes not yet in the file: "
                    "stop the old application (it folds them in when it closes), then import"
                )
        # immutable=1: SQLite takes no lock and writes nothing, not even a -shm file.
        uri = f"file:{quote(str(path.resolve()))}?mode=ro&immutable=1"
        try:
            self.conn = sqlite3.connect(uri, uri=True)
            self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            raise CouldNotRun(f"{path} cannot be read as SQLite: {first_line(exc)}") from None

    def describe(self) -> str:
        return f"SQLite file {self.path}"

    @staticmethod
    def _q(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def tables(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def columns(self, table: str) -> list[str]:
        return [r[1] for r in self.conn.execute(f"PRAGMA table_info({self._q(table)})")]

    def rows(self, table: str, columns: list[str], order_by: str | None = "id") -> Iterator[tuple]:
        cols = ", ".join(self._q(c) for c in columns)
        order = f" ORDER BY {self._q(order_by)}" if order_by else ""
        cursor = self.conn.execute(f"SELECT {cols} FROM {self._q(table)}{order}")
        while batch := cursor.fetchmany(FETCH_ROWS):
            yield from batch

    def close(self) -> None:
        self.conn.close()


class PostgreSQLSource(LegacySource):
    kind = "postgresql"

    def __init__(self, url: str):
        import psycopg

        self.url = url
        try:
            self.conn = psycopg.connect(url, connect_timeout=10)
            # One snapshot for every table, and no way to write through it.
            self.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            self.conn.read_only = True
            self.schema = self.conn.execute("SELECT current_schema()").fetchone()[0]
        except psycopg.Error as exc:
            raise DatabaseUnreachable(f"cannot read {self.describe()}: {first_line(exc)}") from None

    def describe(self) -> str:
        return f"PostgreSQL database {_safe_url(self.url)}"

    def tables(self) -> set[str]:
        rows = self.conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [self.schema]
        ).fetchall()
        return {r[0] for r in rows}

    def columns(self, table: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
            "ORDER BY ordinal_position",
            [self.schema, table],
        ).fetchall()
        return [r[0] for r in rows]

    def rows(self, table: str, columns: list[str], order_by: str | None = "id") -> Iterator[tuple]:
        from psycopg import sql

        query = sql.SQL("SELECT {} FROM {}.{}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in columns),
            sql.Identifier(self.schema),
            sql.Identifier(table),
        )
        if order_by:
            query += sql.SQL(" ORDER BY {}").format(sql.Identifier(order_by))
        # A server-side cursor: a million rows never sit in the client's memory twice.
        with self.conn.cursor(name=f"legacy_{table}") as cursor:
            cursor.itersize = FETCH_ROWS
            cursor.execute(query)
            yield from cursor

    def close(self) -> None:
        try:
            self.conn.rollback()
        finally:
            self.conn.close()


class MySQLSource(LegacySource):
    kind = "mysql"

    def __init__(self, url: str):
        self.url = url
        parts = urlsplit(url)
        try:
            import MySQLdb
        except ImportError:
            raise CouldNotRun(
                "reading a MariaDB database needs mysqlclient (pip install -r requirements-mysql.txt)"
            ) from None
        self._error = MySQLdb.Error
        try:
            self.conn = MySQLdb.connect(
                host=parts.hostname or "127.0.0.1",
                user=unquote(parts.username or ""),
                passwd=unquote(parts.password or ""),
                db=unquote(parts.path.lstrip("/")),
                port=parts.port or 3306,
                charset="utf8mb4",
                connect_timeout=10,
            )
            cursor = self.conn.cursor()
            cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            cursor.close()
        except MySQLdb.Error as exc:
            raise DatabaseUnreachable(f"cannot read {self.describe()}: {first_line(exc)}") from None

    def describe(self) -> str:
        return f"MariaDB database {_safe_url(self.url)}"

    def _query(self, statement: str, params=()) -> list[tuple]:
        cursor = self.conn.cursor()
        try:
            cursor.execute(statement, params)
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def tables(self) -> set[str]:
        return {
            r[0]
            for r in self._query("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()")
        }

    def columns(self, table: str) -> list[str]:
        rows = self._query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = %s "
            "ORDER BY ordinal_position",
            [table],
        )
        return [r[0] for r in rows]

    @staticmethod
    def _q(name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def rows(self, table: str, columns: list[str], order_by: str | None = "id") -> Iterator[tuple]:
        import MySQLdb.cursors

        cols = ", ".join(self._q(c) for c in columns)
        order = f" ORDER BY {self._q(order_by)}" if order_by else ""
        # An unbuffered cursor streams the rows instead of holding the whole table.
        cursor = self.conn.cursor(MySQLdb.cursors.SSCursor)
        try:
            cursor.execute(f"SELECT {cols} FROM {self._q(table)}{order}")
            while batch := cursor.fetchmany(FETCH_ROWS):
                yield from batch
        finally:
            cursor.close()

    def close(self) -> None:
        try:
            self.conn.rollback()
        finally:
            self.conn.close()


def _safe_url(url: str) -> str:
    """The URL without its password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{parts.path}"


def open_legacy_source(source: str) -> LegacySource:
    """A SQLite file path or a postgres:// / mysql:// URL, opened for reading only."""
    scheme = source.split("://", 1)[0].lower() if "://" in source else ""
    if scheme == "sqlite":
        # DATABASE_URL's convention (dj-database-url): sqlite:///relative.db, sqlite:////absolute.db.
        return SQLiteSource(Path(unquote(urlsplit(source).path[1:])))
    if scheme == "file":
        return SQLiteSource(Path(unquote(urlsplit(source).path)))
    if scheme:
        vendor = URL_SCHEMES.get(scheme)
        if vendor is None:
            raise CouldNotRun(f"unsupported source URL scheme {scheme}://: use a SQLite file, postgres:// or mysql://")
        return PostgreSQLSource(source) if vendor == "postgresql" else MySQLSource(source)
    return SQLiteSource(Path(source))


# --- writing a source (benchmarks and tests) ---------------------------------------


def write_sqlite_source(path: Path, script: str, rows: dict[str, Iterable[tuple]]) -> None:
    """A new SQLite file at ``path`` as the Flask-era application could have left it: ``script``
    (its schema and any fixed rows), then each table's ``rows`` (tuples in column order), in one
    commit. For benchmarks that need a source to import; import_legacy itself only reads."""
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.executescript(script)
        for table, data in rows.items():
            data = iter(data)
            first = next(data, None)
            if first is None:
                continue
            marks = ", ".join("?" * len(first))
            conn.executemany(f"INSERT INTO {SQLiteSource._q(table)} VALUES ({marks})", chain([first], data))
        conn.commit()
    finally:
        conn.close()
