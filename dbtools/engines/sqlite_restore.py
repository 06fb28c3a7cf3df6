"""SQLite restore, the load: a dump written aside untouched, its schema read without trusting it,
and either the file itself, when its schema is exactly what our migrations make and
integrity_check proves it, or a new scratch file built by our own migrations (a cached
template when it can) with only the dump's rows copied in.

SQLiteRestoreMixin holds these methods of SQLiteEngine (dbtools.engines.sqlite); the swap of
the scratch into the live file is in sqlite_swap.py.
"""

import logging
import os
import re
import secrets
import shutil
import sqlite3
import tempfile
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path

from django.apps import apps
from django.db import connections
from django.db.migrations.executor import MigrationExecutor

from ..errors import ForeignContent, VerificationFailed
from ..formatting import first_line
from ..streams import CHUNK, unique_suffix
from .results import ScratchDatabase
from .sqlite_files import (
    column_names,
    connect_inert,
    file_uri,
    pragma_lines,
    quote_ident,
    recorded_migrations,
    remove_database_file,
    table_names,
)
from .sqlite_template import schema_template, store_template

logger = logging.getLogger("dbtools.backup")

# The page cache of the connection copying a backup's rows into the rebuilt file (KiB).
COPY_CACHE_KIB = 32 * 1024


class SQLiteRestoreMixin:
    """The restore's load of SQLiteEngine; the file checks are SQLiteDumpMixin._check_file."""

    @contextmanager
    def load_into_scratch(self, source, workdir=None, level: str = "quick", defer_integrity: bool = False):
        """The dump (a path or an uncompressed stream) as a temporary SQLite file; removed on exit.

        Nothing of the file's schema is trusted: the file is written aside as it came, its
        sqlite_master read through a read-only, immutable connection that trusts no schema
        (a trigger, view, virtual table, generated column or table that is not ours is
        refused with ForeignContent), its structure checked there (quick_check;
        integrity_check and foreign_key_check for ``full``), and then a new file is built
        by our own migrations, up to the ones the backup had applied, and only the rows
        are copied into it. Yields a ScratchDatabase whose ``name`` is that new file.

        When the file's schema is exactly the one our migrations make (every backup of
        ours), that rebuild would give the same file with its indexes built anew: the file
        itself is used instead, once integrity_check proves every index agrees with its
        rows. ``defer_integrity``: that check runs on a thread of its own while the
        restore goes on (settle_scratch joins it; nothing may be trusted before).
        """

        directory = Path(workdir or tempfile.gettempdir())
        path = directory / f".db_scratch_{unique_suffix()}.sqlite3"
        raw = path.with_name(path.name + ".as-received")
        try:
            if isinstance(source, str | os.PathLike):
                source = open(source, "rb")  # noqa: SIM115 (closed below)
                close = True
            else:
                close = False
            try:
                fd = os.open(raw, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    while chunk := source.read(CHUNK):
                        f.write(chunk)
            finally:
                if close:
                    source.close()
            _refuse_foreign_objects(raw)
            # The empty file our migrations make (up to those the backup applied) is the
            # rebuild's start; when the file's schema is that very schema, the file itself
            # is used, once integrity_check has proven its indexes agree with its rows.
            as_built = self._migrated_like(raw, path)
            if as_built and defer_integrity and level != "full":
                checks, counts, migrations = self._check_file(raw, level, run_pragma=False)
                pending = None
                if all(c.ok for c in checks):
                    _adopt(raw, path)
                    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-integrity")
                    pending = pool.submit(pragma_lines, file_uri(path, mode="ro"), "integrity_check")
                    pool.shutdown(wait=False)
                try:
                    yield ScratchDatabase(name=str(path), row_counts=counts, checks=checks, pending_integrity=pending)
                finally:
                    if pending is not None:
                        wait([pending])  # its connection closed before the file is removed
                return
            checks, counts, migrations = self._check_file(raw, level, integrity=as_built)
            if as_built and level != "full" and not all(c.ok for c in checks):
                # Vouched for by its manifest, yet an index disagrees with its rows (or worse):
                # as before, the rows go into a new file and every index is built from them,
                # provided the structure holds (quick_check).
                as_built = False
                checks, counts, migrations = self._check_file(raw, level)
            if all(c.ok for c in checks):
                if as_built:
                    _adopt(raw, path)
                else:
                    self._rebuild(raw, path, migrations)
            yield ScratchDatabase(name=str(path), row_counts=counts, checks=checks, integrity_checked=as_built)
        finally:
            remove_database_file(raw)
            remove_database_file(path)

    def settle_scratch(self, scratch: ScratchDatabase, quiesce=None) -> bool:
        """Join the integrity check a deferred load left running (see load_into_scratch).

        Passed: the scratch is proven, as loaded. Failed, with a sound structure
        (quick_check): an index disagrees with its rows, so, as a file that needed it
        always was, the rows are copied into a new file of our schema, its indexes built
        from them, and that file takes the scratch's place; ``quiesce`` is called first,
        to close every connection to the scratch. Returns whether the scratch was rebuilt
        (what was read from it must be read again). Raises VerificationFailed otherwise.
        """
        future, scratch.pending_integrity = scratch.pending_integrity, None
        if future is None:
            return False
        try:
            lines = future.result()
        except sqlite3.DatabaseError as exc:
            raise VerificationFailed(f"integrity_check: {exc}") from exc
        if lines == ["ok"]:
            scratch.integrity_checked = True
            return False
        path = Path(scratch.name)
        quick = pragma_lines(file_uri(path, mode="ro"), "quick_check")
        if quick != ["ok"]:
            raise VerificationFailed(f"integrity_check: {'; '.join(lines[:5])}")
        logger.info("restore: %s: %s; rebuilding its indexes from its rows", path.name, lines[0])
        if quiesce is not None:
            quiesce()
        # Its schema is ours (it was used as it came): a plain connection, which folds any
        # WAL into the file before the rebuild reads it through an immutable one.
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            migrations = recorded_migrations(conn)
        finally:
            conn.close()
        rebuilt = path.with_name(f".db_scratch_{unique_suffix()}.sqlite3")
        try:
            self._rebuild(path, rebuilt, migrations)
            remove_database_file(path)
            os.replace(rebuilt, path)
        finally:
            remove_database_file(rebuilt)
        return True

    def _rebuild(self, raw: Path, path: Path, migrations: dict[str, list[str]]) -> None:
        """A new file at ``path``: the schema of our migrations (those ``raw`` applied), ``raw``'s rows.

        The rows are copied with CHECK constraints not evaluated (a backup holds its data
        as it is; validate lists the rows that break them) and foreign keys off (the rows
        arrive table by table); every index is built by SQLite from the copied rows.
        """

        if not path.exists():  # not made already by _migrated_like()
            applied = [(app, name) for app, names in migrations.items() for name in names]
            try:
                self._migrate_new_file(path, applied)
            except Exception as exc:  # the migrations the file names do not apply in that combination
                remove_database_file(path)
                first = first_line(exc)
                raise VerificationFailed(f"the schema of the migrations it records cannot be built: {first}") from exc
        # Not connect_inert: the new file's own CHECKs (ours) call JSON_VALID, which this
        # SQLite does not mark innocuous. The backup is attached read-only and immutable
        # after _refuse_foreign_objects, and only read by plain column lists: reading
        # evaluates no CHECK, default or index expression of its schema, and a plain
        # sqlite3 connection knows no application function or collation.
        conn = sqlite3.connect(file_uri(path), uri=True, isolation_level=None)
        try:
            conn.execute("PRAGMA foreign_keys = OFF")
            conn.execute("PRAGMA ignore_check_constraints = ON")
            # A scratch: a crash throws it away anyway.
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            conn.execute(f"PRAGMA cache_size = -{COPY_CACHE_KIB}")
            conn.execute("ATTACH DATABASE ? AS src", [file_uri(raw, mode="ro", immutable="1")])
            ours = set(table_names(conn, "main"))
            # The migrations' own CREATE INDEX statements, run again once the rows are in:
            # an index built from sorted rows is several times faster than one kept up row by row.
            indexes = conn.execute(
                "SELECT name, sql FROM main.sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            ).fetchall()
            # No rollback on failure: the journal is off, and the file is thrown away.
            conn.execute("BEGIN")
            for name, _sql in indexes:
                conn.execute(f"DROP INDEX main.{quote_ident(name)}")
            for table in table_names(conn, "src"):
                if table not in ours:
                    raise ForeignContent(
                        f"holds a table {table} that mcmanager's migrations "
                        f"(up to those it applied) do not create: refused, nothing of it was run"
                    )
                columns = column_names(conn, "src", table)
                extra = [c for c in columns if c not in set(column_names(conn, "main", table))]
                if extra:
                    raise ForeignContent(
                        f"holds a column {extra[0]} in {table} that mcmanager's migrations "
                        "do not create: refused, nothing of it was run"
                    )
                names = ", ".join(quote_ident(c) for c in columns)
                conn.execute(f"DELETE FROM main.{quote_ident(table)}")
                conn.execute(
                    f"INSERT INTO main.{quote_ident(table)} ({names}) SELECT {names} FROM src.{quote_ident(table)}"
                )
            if "sqlite_sequence" in table_names(conn, "src", internal=True):
                conn.execute("DELETE FROM main.sqlite_sequence")
                conn.execute(
                    "INSERT INTO main.sqlite_sequence (name, seq) SELECT name, seq FROM src.sqlite_sequence "
                    "WHERE name IN (SELECT name FROM main.sqlite_master WHERE type = 'table')"
                )
            for _name, sql in indexes:
                conn.execute(sql)
            conn.execute("COMMIT")
            conn.execute("DETACH DATABASE src")
        except sqlite3.DatabaseError as exc:
            raise VerificationFailed(f"its rows do not fit mcmanager's schema: {exc}") from exc
        finally:
            conn.close()
        os.chmod(path, 0o600)

    def _migrated_like(self, raw: Path, path: Path) -> bool:
        """Make ``path`` the empty file of our migrations up to those ``raw`` records; whether
        ``raw``'s schema is exactly that file's.

        Read through inert, read-only connections: the type, name, table and SQL text of
        every object of sqlite_master but SQLite's own tables (sequences, statistics), and
        the text encoding. Equal, the file holds nothing but our tables and indexes, as our
        migrations declare them; the rows and indexes in them are integrity_check's to prove.
        Any failure (a file the migrations cannot describe, a cache that cannot be used)
        answers False, and the restore takes the rebuild, which says what is wrong.
        """
        try:
            conn = connect_inert(file_uri(raw, mode="ro", immutable="1"))
            try:
                applied = recorded_migrations(conn)
                theirs = _schema_of(conn)
            finally:
                conn.close()
            self._migrate_new_file(path, [(app, name) for app, names in applied.items() for name in names])
            conn = connect_inert(file_uri(path, mode="ro"))
            try:
                ours = _schema_of(conn)
            finally:
                conn.close()
        except Exception as exc:  # noqa: BLE001 (any reason means: rebuild, which reports it)
            logger.debug("restore: %s is rebuilt (%s)", raw.name, exc)
            remove_database_file(path)
            return False
        return theirs == ours

    def _migrate_new_file(self, path: Path, applied: list[tuple[str, str]]) -> None:
        """Create ``path`` with the schema our migrations make, up to the ``applied`` ones the code has.

        Running the migrations into an empty file is most of a small restore's load (0.3-0.4 s),
        and its result depends only on the code: the file made for a set of migrations is
        kept as a template in a private cache directory (sqlite_template.schema_template), keyed by
        the migrations' own source, Django's and SQLite's versions, and copied next time.
        """

        base = self.connection
        alias = f"__sqlite_rebuild_{os.getpid()}_{secrets.token_hex(3)}"
        # Registered (for this thread) because RunPython operations look their alias up.
        wrapper = base.__class__({**base.settings_dict, "NAME": str(path)}, alias=alias)
        connections[alias] = wrapper
        try:
            executor = MigrationExecutor(wrapper)
            targets = [key for key in applied if key in executor.loader.graph.nodes]
            plan = executor.migration_plan(targets) if targets else []
            template = schema_template(plan)
            if template is not None and template.is_file():
                wrapper.close()
                remove_database_file(path)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with open(template, "rb") as src, os.fdopen(fd, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                return
            if plan:
                executor.migrate(targets, plan=plan)
        finally:
            try:
                wrapper.close()
            finally:
                del connections[alias]
        if template is not None:
            store_template(path, template)


def _schema_of(conn) -> tuple:
    """What must be equal for a file to be used as it came: its text encoding and every
    schema object but SQLite's internal tables, as (type, name, table, SQL), sorted."""
    encoding = conn.execute("PRAGMA encoding").fetchone()[0]
    objects = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master "
        "WHERE NOT (type = 'table' AND (name = 'sqlite_sequence' OR name LIKE 'sqlite\\_stat%' ESCAPE '\\'))"
    ).fetchall()
    return encoding, sorted(objects, key=lambda row: tuple(str(v) for v in row))


def _adopt(raw: Path, path: Path) -> None:
    """Make the file as received the scratch: renamed to ``path`` (the migrated file there
    removed), without the planner statistics it may carry (a rebuilt file has none either)."""
    remove_database_file(path)
    os.replace(raw, path)
    conn = sqlite3.connect(file_uri(path), uri=True, isolation_level=None)
    try:
        for table in table_names(conn, "main", internal=True):
            if re.fullmatch(r"sqlite_stat[1-4]", table):
                conn.execute(f"DELETE FROM {quote_ident(table)}")
        # As every Django connection sets it: then a reader (the integrity check, the
        # validation) and the restore's writes to the scratch never wait for each other.
        conn.execute("PRAGMA journal_mode = WAL")
    finally:
        conn.close()
    os.chmod(path, 0o600)


def our_table(name: str) -> bool:
    """Whether a table name is one Django's models and migrations create here.

    The tables of the installed models, django_migrations, and any table named after an
    installed app's label (a table an older migration made and a later one removed).
    """

    if name == "django_migrations":
        return True
    if name in {m._meta.db_table for m in apps.get_models(include_auto_created=True)}:
        return True
    return any(name.startswith(f"{config.label}_") for config in apps.get_app_configs())


# SQLite's own tables: sequences, ANALYZE statistics.
_INTERNAL = re.compile(r"sqlite_(sequence|stat[1-4])")


def _schema_findings(conn) -> list[str]:
    """What in a file's sqlite_master is not a table or index of ours, each as "holds a ...".

    Read only: nothing in the schema is evaluated (a generated column is found by
    table_xinfo, which reads the declaration, not the values).
    """
    found = []
    for kind, name, table, sql in conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid"):
        head = (sql or "").lstrip()[:40].upper()
        if kind == "trigger":
            found.append(f"holds a trigger {name} on {table}")
        elif kind == "view":
            found.append(f"holds a view {name}")
        elif kind not in ("table", "index"):
            found.append(f"holds a {kind} {name}")
        elif kind == "table" and re.match(r"CREATE\s+VIRTUAL\s+TABLE", head):
            found.append(f"holds a virtual table {name}")
        elif kind == "table" and _INTERNAL.fullmatch(name):
            continue
        elif kind == "index" and name.startswith("sqlite_autoindex_") and our_table(table):
            continue
        elif not our_table(table):
            found.append(
                f"holds a table {table} that is not mcmanager's"
                if kind == "table"
                else f"holds an index {name} on {table}, a table that is not mcmanager's"
            )
        elif kind == "table":
            for column, hidden in conn.execute("SELECT name, hidden FROM pragma_table_xinfo(?)", [name]):
                if hidden:
                    found.append(f"holds a generated column {column} in {name}")
    return found


def _refuse_foreign_objects(path) -> None:
    """Raise ForeignContent naming the first schema object of ``path`` that is not ours."""

    try:
        with open(path, "rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                return  # not a database: the file checks say so
        conn = connect_inert(file_uri(path, mode="ro", immutable="1"))
        try:
            found = _schema_findings(conn)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise VerificationFailed(f"SQLite cannot read its schema: {exc}") from exc
    if found:
        raise ForeignContent(f"{found[0]}: refused, nothing of it was run")
