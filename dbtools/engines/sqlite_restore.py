"""SQLite restore, the load: a dump written aside untouched, its schema read without trusting it,
and a new scratch file built by our own migrations (a cached template when it can) with only
the dump's rows copied in.

SQLiteRestoreMixin holds these methods of SQLiteEngine (dbtools.engines.sqlite); the swap of
the scratch into the live file is in sqlite_swap.py.
"""

import hashlib
import logging
import os
import re
import secrets
import shutil
import sqlite3
import stat
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import django
from django.apps import apps
from django.conf import settings
from django.db import connections
from django.db.migrations.executor import MigrationExecutor

from ..errors import ForeignContent, VerificationFailed
from ..streams import CHUNK, unique_suffix
from .results import ScratchDatabase
from .sqlite_files import column_names, connect_inert, file_uri, quote_ident, table_names

logger = logging.getLogger("dbtools.backup")

# The page cache of the connection copying a backup's rows into the rebuilt file (KiB).
COPY_CACHE_KIB = 32 * 1024


class SQLiteRestoreMixin:
    """The restore's load of SQLiteEngine; the file checks are SQLiteDumpMixin._check_file."""

    @contextmanager
    def load_into_scratch(self, source, workdir=None, level: str = "quick"):
        """The dump (a path or an uncompressed stream) as a temporary SQLite file; removed on exit.

        Nothing of the file's schema is used: the file is written aside as it came, its
        sqlite_master read through a read-only, immutable connection that trusts no schema
        (a trigger, view, virtual table, generated column or table that is not ours is
        refused with ForeignContent), its structure checked there (quick_check;
        integrity_check and foreign_key_check for ``full``), and then a new file is built
        by our own migrations, up to the ones the backup had applied, and only the rows
        are copied into it. Yields a ScratchDatabase whose ``name`` is that new file.
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
            checks, counts, migrations = self._check_file(raw, level)
            if all(c.ok for c in checks):
                self._rebuild(raw, path, migrations)
            yield ScratchDatabase(name=str(path), row_counts=counts, checks=checks)
        finally:
            for base in (raw, path):
                for leftover in (base, Path(f"{base}-wal"), Path(f"{base}-shm"), Path(f"{base}-journal")):
                    leftover.unlink(missing_ok=True)

    def _rebuild(self, raw: Path, path: Path, migrations: dict[str, list[str]]) -> None:
        """A new file at ``path``: the schema of our migrations (those ``raw`` applied), ``raw``'s rows.

        The rows are copied with CHECK constraints not evaluated (a backup holds its data
        as it is; validate lists the rows that break them) and foreign keys off (the rows
        arrive table by table); every index is built by SQLite from the copied rows.
        """

        applied = [(app, name) for app, names in migrations.items() for name in names]
        try:
            self._migrate_new_file(path, applied)
        except Exception as exc:  # the migrations the file names do not apply in that combination
            first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
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

    def _migrate_new_file(self, path: Path, applied: list[tuple[str, str]]) -> None:
        """Create ``path`` with the schema our migrations make, up to the ``applied`` ones the code has.

        Running the migrations into an empty file is most of a small restore's load (0.3-0.4 s),
        and its result depends only on the code: the file made for a set of migrations is
        kept as a template in a private cache directory (``_schema_template``), keyed by
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
            template = _schema_template(plan)
            if template is not None and template.is_file():
                wrapper.close()
                for side in ("-wal", "-shm", "-journal"):
                    Path(f"{path}{side}").unlink(missing_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
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
            _store_template(path, template)


def _schema_template(plan) -> Path | None:
    """Where the empty file that ``plan``'s migrations make is cached; None without a private cache.

    ``<instance>/cache/sqlite-schema/<key>.sqlite3``; the key is a sha256 of Django's and
    SQLite's versions and, for each migration of the plan in order, its app, name and
    source file's bytes: a migration edited in place gets a new template. The directory
    is created 0700 and must be this user's, like the lock directory; a template is
    written whole under a temporary name and renamed into place.
    """
    directory = Path(settings.INSTANCE_DIR) / "cache" / "sqlite-schema"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for d in (directory.parent, directory):
            st = os.lstat(d)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
                return None
            if st.st_mode & 0o077:
                os.chmod(d, 0o700, follow_symlinks=False)
    except OSError:
        return None
    digest = hashlib.sha256(f"django {django.__version__}; sqlite {sqlite3.sqlite_version}".encode())
    for migration, backwards in plan:
        source = getattr(sys.modules.get(migration.__module__), "__file__", None)
        if backwards or source is None:
            return None
        digest.update(f"\0{migration.app_label}.{migration.name}\0".encode())
        try:
            digest.update(Path(source).read_bytes())
        except OSError:
            return None
    return directory / f"{digest.hexdigest()}.sqlite3"


def _store_template(path: Path, template: Path) -> None:
    """Keep a copy of the freshly migrated ``path`` (closed: its WAL folded in) as ``template``.

    Best effort: a failure costs the next restore its speed only."""
    tmp = template.with_name(f".{template.name}.{unique_suffix()}")
    try:
        if any(Path(f"{path}{side}").exists() for side in ("-wal", "-journal")):
            return  # not a closed, whole file
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, template)
    except OSError as exc:
        logger.info("could not cache the migrated schema in %s: %s", template.parent, exc)
    finally:
        tmp.unlink(missing_ok=True)


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
