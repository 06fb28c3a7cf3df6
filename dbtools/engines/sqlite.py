"""SQLite: everything vendor-specific about it."""

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
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from urllib.parse import quote, urlencode

import django
from django.apps import apps
from django.conf import settings
from django.db import connections
from django.db.migrations.executor import MigrationExecutor

from ..errors import DatabaseUnreachable, ForeignContent, VerificationFailed
from ..streams import CHUNK, fsync_directory, open_regular, pid_alive, unique_suffix
from . import locking, sqlite_bulk, sqlite_demo, sqlite_salvage
from .base import Engine
from .results import Check, DumpOutcome, SalvageResult, ScratchDatabase, TableComparison, expected_tables_check

logger = logging.getLogger("dbtools.backup")

# A scratch file of load_into_scratch() in the temp directory, and the files SQLite keeps beside it.
SIDE_FILES = "(?:-journal|-wal|-shm)?"
SCRATCH_FILE_RE = re.compile(rf"^\.db_scratch_(\d+)_[0-9a-f]{{8}}\.sqlite3(?:\.as-received)?{SIDE_FILES}$")


class SQLiteEngine(Engine):
    vendor = "sqlite"
    display_name = "SQLite"
    dump_extension = "sqlite3"

    # --- identity ---------------------------------------------------------

    def describe(self) -> str:
        """The database file, for messages (a file has no user, host or password)."""
        return f"{self.display_name} {self.settings_dict['NAME']}"

    def server_version(self) -> str:

        return sqlite3.sqlite_version

    def check_live_database(self) -> str | None:
        """Without connecting: a restore replaces a file that is not a database (a broken disk)
        and creates a missing one, so only a path that can never hold a database file is
        refused; a missing file gets a note (a check must not create it)."""

        name = Path(self.settings_dict["NAME"])
        if name.is_dir() or not name.parent.is_dir():
            why = "is a directory" if name.is_dir() else "is in a directory that does not exist"
            raise DatabaseUnreachable(f"database '{self.alias}' is unreachable ({self.describe()}): {name} {why}")
        if not os.path.lexists(name):
            return f"the live database file {name} does not exist yet; a restore creates it"
        return None

    # --- backup -----------------------------------------------------------

    # A backup is a plain SQLite file made with the online backup API (consistent while
    # the application writes: not a file copy, not iterdump). django-dbbackup's
    # SqliteBackupConnector uses the same API but copies into /tmp and then again into a
    # spooled file; we need the copy in the backup directory, checked and compressed in
    # parallel, so the connector's one method is not reused here.

    def backup_identity(self) -> str:
        """The file's name: the same on a new machine that restores the old one's backups into
        the same place (instance/mcmanager.sqlite3), different for another database file."""
        return Path(self.settings_dict["NAME"]).name

    def plaintext_workdir(self, backup_directory):
        """Beside the live file: the snapshot of an encrypted backup is as plain as the database
        it copies, on the same disk, and never in the backup directory."""
        return Path(self.settings_dict["NAME"]).resolve().parent

    def write_dump(self, out, workdir, *, level: str = "quick", expected_tables=(), check_rows: bool = True):
        """Snapshot the live file into ``workdir``, then check it and stream it into ``out`` at once.

        The quick_check (or integrity_check) runs on one core while zstd compresses and
        the sha256 is taken on the other: sqlite3 and zstandard both release the GIL.
        The uncompressed copy is removed as soon as both are done.
        """

        copy = Path(workdir) / f".db_backup_{unique_suffix()}.sqlite3.partial-copy"
        outcome = DumpOutcome(tool=f"sqlite3 backup API {sqlite3.sqlite_version}")
        try:
            src = sqlite3.connect(self.settings_dict["NAME"], timeout=20)
            try:
                dst = sqlite3.connect(copy)
                try:
                    src.backup(dst)  # pages=-1: one step, one read transaction, a consistent snapshot
                    # A standalone file: rollback journal, so opening it needs no -wal/-shm.
                    dst.execute("PRAGMA journal_mode=DELETE")
                finally:
                    dst.close()
            finally:
                src.close()
            os.chmod(copy, 0o600)

            result: dict = {}

            def check() -> None:
                try:
                    # quick_check here, in parallel with the compression; a "full"
                    # verification runs integrity_check on the restored file afterwards.
                    result["checks"], result["counts"], result["migrations"] = self._check_file(
                        copy, "quick", expected_tables, check_constraints=check_rows
                    )
                except BaseException as exc:  # re-raised in the caller's thread
                    result["error"] = exc

            checker = threading.Thread(target=check, name="sqlite-check")
            checker.start()
            try:
                with open(copy, "rb") as f:
                    while chunk := f.read(CHUNK):
                        out.write(chunk)
            finally:
                checker.join()
            if "error" in result:
                raise result["error"]
            outcome.checks = result["checks"]
            outcome.row_counts = result["counts"]
            outcome.migrations = result["migrations"]
            if not outcome.checks:
                outcome.checks.append(Check("structure", False, "no checks ran"))
            return outcome
        finally:
            for leftover in (copy, Path(f"{copy}-journal"), Path(f"{copy}-wal"), Path(f"{copy}-shm")):
                leftover.unlink(missing_ok=True)

    def _check_file(self, path, level: str, expected_tables=(), check_constraints: bool = False):
        """Header, page count, quick_check (full: integrity_check + foreign_key_check), tables, rows.

        The file is opened read-only, and SQLite then leaves the CHECK constraints out of
        the schema it reads: quick_check checks the structure alone. ``check_constraints``
        (a backup's private copy) also checks every row against its table's CHECKs, as
        ``sqlite3 copy 'PRAGMA quick_check'`` does, but set-based: one scan per table (the
        biggest split in two by rowid) on a second core, beside the structure check. The
        per-row evaluation inside quick_check builds a temporary table for every IN list of
        every row: 4 of its 4.6 s at a million servers. Rows breaking a CHECK are recorded,
        not fatal: the backup holds the data as it is, and a nightly backup must not stop
        over one bad row (validate lists them, with ids).
        """

        checks = []
        with open(path, "rb") as f:
            header = f.read(100)
        if not header.startswith(b"SQLite format 3\x00"):
            return [Check("header", False, "not an SQLite database file")], {}, {}
        checks.append(Check("header", True, "SQLite format 3"))
        uri = _uri(path, mode="ro", immutable="1")
        conn = _connect_inert(uri)
        try:
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            page_count = conn.execute("PRAGMA page_count").fetchone()[0]
            size = os.path.getsize(path)
            checks.append(
                Check(
                    "page_count",
                    page_size * page_count == size,
                    f"{page_count} pages of {page_size} bytes, file {size} bytes",
                )
            )
            pragma = "integrity_check" if level == "full" else "quick_check"
            if check_constraints:
                with ThreadPoolExecutor(max_workers=2, thread_name_prefix="sqlite-check") as pool:
                    structure = pool.submit(_pragma_lines, uri, pragma)
                    scans = [
                        (table, pool.submit(_any_breaking, uri, table, *scan)) for table, scan in _check_scans(conn)
                    ]
                    rows = structure.result()
                    broken, unevaluated = [], []
                    for table, future in scans:
                        try:
                            if future.result():
                                broken.append(table)
                        except sqlite3.Error as exc:
                            unevaluated.append(f"{table} ({exc})")
            else:
                rows = _pragma_lines(uri, pragma, conn)
            checks.append(Check(pragma, rows == ["ok"], "; ".join(rows[:5])))
            if check_constraints:
                detail = "every row meets its table's CHECK constraints"
                if broken:
                    tables = ", ".join(sorted(set(broken)))
                    detail = (
                        f"rows of {tables} break CHECK constraints (kept as they are; manage.py validate lists them)"
                    )
                    logger.warning("backup of %s: %s", self.alias, detail)
                if unevaluated:
                    detail += "; could not evaluate the CHECKs of " + ", ".join(unevaluated)
                checks.append(Check("check_constraints", True, detail))
            if level == "full":
                fk = conn.execute("PRAGMA foreign_key_check").fetchmany(5)
                checks.append(
                    Check(
                        "foreign_key_check",
                        not fk,
                        "no violations" if not fk else "; ".join(f"{t} rowid {r} -> {p}" for t, r, p, _ in fk),
                    )
                )
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
                )
            ]
            checks.append(expected_tables_check(expected_tables, tables))
            counts = {t: conn.execute(f"SELECT COUNT(*) FROM {_quoted(t)}").fetchone()[0] for t in tables}
            migrations: dict[str, list[str]] = {}
            if "django_migrations" in tables:
                for app, name in conn.execute("SELECT app, name FROM django_migrations ORDER BY id"):
                    migrations.setdefault(app, []).append(name)
        except sqlite3.DatabaseError as exc:
            checks.append(Check("structure", False, f"SQLite cannot read it: {exc}"))
            return checks, {}, {}
        finally:
            conn.close()
        return checks, counts, migrations

    def check_dump(self, stream, *, level: str = "quick", manifest=None, workdir=None):
        """Checks of a dump read from ``stream`` (uncompressed): it is loaded into a scratch file."""

        with self.load_into_scratch(stream, workdir=workdir, level=level) as scratch:
            checks = [c for c in scratch.checks if c.name != "tables"]
            if manifest is not None:
                checks.append(expected_tables_check(manifest.row_counts, scratch.row_counts))
            return checks, scratch.row_counts

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
        # Not _connect_inert: the new file's own CHECKs (ours) call JSON_VALID, which this
        # SQLite does not mark innocuous. The backup is attached read-only and immutable
        # after _refuse_foreign_objects, and only read by plain column lists: reading
        # evaluates no CHECK, default or index expression of its schema, and a plain
        # sqlite3 connection knows no application function or collation.
        conn = sqlite3.connect(_uri(path), uri=True, isolation_level=None)
        try:
            conn.execute("PRAGMA foreign_keys = OFF")
            conn.execute("PRAGMA ignore_check_constraints = ON")
            # A scratch: a crash throws it away anyway.
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            conn.execute(f"PRAGMA cache_size = -{COPY_CACHE_KIB}")
            conn.execute("ATTACH DATABASE ? AS src", [_uri(raw, mode="ro", immutable="1")])
            ours = set(_table_names(conn, "main"))
            # The migrations' own CREATE INDEX statements, run again once the rows are in:
            # an index built from sorted rows is several times faster than one kept up row by row.
            indexes = conn.execute(
                "SELECT name, sql FROM main.sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            ).fetchall()
            # No rollback on failure: the journal is off, and the file is thrown away.
            conn.execute("BEGIN")
            for name, _sql in indexes:
                conn.execute(f"DROP INDEX main.{_quoted(name)}")
            for table in _table_names(conn, "src"):
                if table not in ours:
                    raise ForeignContent(
                        f"holds a table {table} that mcmanager's migrations "
                        f"(up to those it applied) do not create: refused, nothing of it was run"
                    )
                columns = _column_names(conn, "src", table)
                extra = [c for c in columns if c not in set(_column_names(conn, "main", table))]
                if extra:
                    raise ForeignContent(
                        f"holds a column {extra[0]} in {table} that mcmanager's migrations "
                        "do not create: refused, nothing of it was run"
                    )
                names = ", ".join(_quoted(c) for c in columns)
                conn.execute(f"DELETE FROM main.{_quoted(table)}")
                conn.execute(f"INSERT INTO main.{_quoted(table)} ({names}) SELECT {names} FROM src.{_quoted(table)}")
            if "sqlite_sequence" in _table_names(conn, "src", internal=True):
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

    def count_rows(self) -> dict[str, int]:
        """COUNT(*) of every table of the live database."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
            tables = [r[0] for r in cursor.fetchall()]
            counts = {}
            for table in tables:
                cursor.execute(f"SELECT COUNT(*) FROM {_quoted(table)}")
                counts[table] = cursor.fetchone()[0]
        return counts

    # --- restore ----------------------------------------------------------

    @staticmethod
    def looks_like_dump(head: bytes) -> bool:
        """Whether the first bytes of an uncompressed dump are an SQLite database's."""
        return head.startswith(b"SQLite format 3\x00")

    scratch_readable_during_swap = True

    def prepare_swap(self, scratch: str) -> None:
        """Give the scratch the live file's page size (a WAL destination accepts only its own)."""

        live = self.settings_dict["NAME"]
        try:
            target = sqlite3.connect(_uri(live, mode="ro"), uri=True)
            try:
                page_size = target.execute("PRAGMA page_size").fetchone()[0]
            finally:
                target.close()
        except sqlite3.DatabaseError:
            return  # not a database (or no file): swap_in() replaces it by a rename
        source = sqlite3.connect(scratch, isolation_level=None)
        try:
            if source.execute("PRAGMA page_size").fetchone()[0] != page_size:
                # The scratch is ours to rewrite.
                source.execute("PRAGMA journal_mode=DELETE")
                source.execute(f"PRAGMA page_size={int(page_size)}")
                source.execute("VACUUM")
                # Back to WAL, as every Django connection would set it: a reader opening the
                # scratch during the swap must not need the exclusive lock to change it.
                source.execute("PRAGMA journal_mode=WAL")
        finally:
            source.close()

    def swap_in(self, scratch: str) -> None:
        """Replace the live database's content with the scratch file's, atomically.

        Through SQLite's online backup API, with the scratch as the source and the live
        database as the destination: all pages are written in one step, inside one write
        transaction of the live file's own pager (its WAL or rollback journal). Open
        connections see the old content until that transaction commits and the new
        content after it; a SIGKILL before the commit leaves the old database, after it the
        new one. Renaming a file instead would leave open connections on the unlinked
        inode and separate the database from its WAL.

        The one exception: a live file that is not a database at all (a broken disk, a
        file overwritten by accident) cannot be a backup destination; no connection can
        use it either, so it is replaced by a rename (atomic on POSIX), its stale WAL and
        shared-memory files removed first so SQLite never replays them into the new file.
        """

        live = self.settings_dict["NAME"]
        timeout = self.settings_dict.get("OPTIONS", {}).get("timeout", 20)
        source = sqlite3.connect(scratch, isolation_level=None)
        try:
            target = sqlite3.connect(live, timeout=timeout, isolation_level=None)
            try:
                page_size = target.execute("PRAGMA page_size").fetchone()[0]
                if source.execute("PRAGMA page_size").fetchone()[0] != page_size:
                    raise RuntimeError("the scratch's page size differs from the live file's (prepare_swap not run)")
                source.backup(target)  # pages=-1: one step, one transaction
                return
            except sqlite3.DatabaseError as exc:
                if "not a database" not in str(exc):
                    raise
            finally:
                target.close()
            self._replace_unusable_file(source, live)
        finally:
            source.close()

    @staticmethod
    def _replace_unusable_file(source, live: str) -> None:

        live_path = Path(live)
        tmp = live_path.with_name(f".{live_path.name}.restore-{unique_suffix()}")
        try:
            copy = sqlite3.connect(tmp, isolation_level=None)
            try:
                source.backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE")  # a standalone file, no -wal beside it
            finally:
                copy.close()
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            for stale in (Path(f"{live}-wal"), Path(f"{live}-shm"), Path(f"{live}-journal")):
                stale.unlink(missing_ok=True)
            os.replace(tmp, live_path)
            fsync_directory(live_path.parent)
        finally:
            tmp.unlink(missing_ok=True)

    def swap_description(self) -> str:
        return "copied into the live file by the SQLite backup API in one write transaction"

    def integrity_after_swap(self) -> list[str]:
        """PRAGMA integrity_check of the live file: every page, every index against its table."""
        return self.integrity_of_scratch(self.settings_dict["NAME"])

    def integrity_of_scratch(self, scratch: str) -> list[str]:
        """PRAGMA integrity_check of the scratch, run while swap_in() copies it: the swap (the
        backup API) makes the live file a page-for-page copy of it, so this is the live
        database's check, done on the other core instead of after the swap."""
        lines = _pragma_lines(_uri(scratch, mode="ro"), "integrity_check")
        return [] if lines == ["ok"] else lines

    def drop_swap_leftovers(self) -> list[str]:
        """Nothing to drop: the SQLite swap writes into the live file and leaves no second database."""
        return []

    def drop_scratch_leftovers(self) -> list[str]:
        """Files of killed runs: restore scratches in the temp directory (each a full copy of a
        database) and the temporary file of an interrupted whole-file replacement beside the
        live file. Only this user's regular files whose process is gone."""

        live = Path(self.settings_dict["NAME"])
        places = (
            (Path(tempfile.gettempdir()), SCRATCH_FILE_RE),
            (live.parent, re.compile(rf"^\.{re.escape(live.name)}\.restore-(\d+)_[0-9a-f]{{8}}{SIDE_FILES}$")),
            # the snapshot of an encrypted backup (plaintext_workdir)
            (live.parent, re.compile(rf"^\.db_backup_(\d+)_[0-9a-f]{{8}}\.sqlite3\.partial-copy{SIDE_FILES}$")),
        )
        removed = []
        for directory, pattern in places:
            try:
                entries = list(os.scandir(directory))
            except OSError:
                continue
            for entry in entries:
                match = pattern.match(entry.name)
                if match is None or pid_alive(int(match.group(1))):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
                        os.unlink(entry.path)
                        removed.append(entry.name)
                except OSError:
                    pass  # gone meanwhile, or not ours to remove
        return removed

    # --- maintenance --------------------------------------------------------

    def maintain(self, *, analyze: bool, vacuum: bool, reindex: bool, dry_run: bool) -> list[str]:
        """PRAGMA optimize and ANALYZE; REINDEX; VACUUM only when enough pages are free; then a
        WAL checkpoint. The steps done (or, with ``dry_run``, that would be done), one line each.

        VACUUM goes through a copy (VACUUM INTO) that restore's swap writes into the live
        file in one transaction: open connections never see a half-vacuumed file, and a
        kill leaves the old file whole. The caller holds the backup lock.
        """

        steps: list[str] = []

        def run(sql: str, why: str = "") -> None:
            steps.append(f"{sql}{why}")
            if not dry_run:
                with self.connection.cursor() as cursor:
                    cursor.execute(sql)

        if analyze:
            run("PRAGMA optimize")
            run("ANALYZE")
        if reindex:
            run("REINDEX")
        if vacuum:
            size = self.database_size()
            threshold = float(getattr(settings, "MCMANAGER_VACUUM_FREE_PERCENT", 10))
            percent = 100 * size["free_pages"] / max(size["page_count"], 1)
            figures = f" ({size['free_pages']} of {size['page_count']} pages free, {percent:.0f}%)"
            if percent < threshold:
                steps.append(f"VACUUM skipped{figures}: below the {threshold:g}% threshold")
            else:
                steps.append(f"VACUUM INTO a copy, swapped in{figures}")
                if not dry_run:
                    self._vacuum_through_copy()
        run("PRAGMA wal_checkpoint(TRUNCATE)")
        return steps

    def _vacuum_through_copy(self) -> None:

        live = Path(self.settings_dict["NAME"])
        copy = live.with_name(f".{live.name}.vacuum-{unique_suffix()}")
        try:
            with self.connection.cursor() as cursor:
                cursor.execute("VACUUM INTO %s", [str(copy)])
            self.prepare_swap(str(copy))
            self.swap_in(str(copy))
        finally:
            copy.unlink(missing_ok=True)

    def maintenance_advice(self) -> list[str]:
        """What maintain would reclaim, when a figure says it pays: free pages over the threshold."""

        size = self.database_size()
        threshold = float(getattr(settings, "MCMANAGER_VACUUM_FREE_PERCENT", 10))
        percent = 100 * size["free_pages"] / max(size["page_count"], 1)
        if size["free_pages"] == 0 or percent < threshold:
            return []
        reclaim = size["free_pages"] * size["page_size"]
        return [
            f"{size['free_pages']} of {size['page_count']} pages free ({percent:.0f}%, {reclaim:,} bytes): "
            "python manage.py maintain --vacuum"
        ]

    # --- monitoring and validation ---------------------------------------

    # Duplicate search: GROUP BY ... HAVING COUNT(*) > 1 is the faster plan here.
    duplicates_by_index_probe = False

    def _pragma(self, cursor, name: str) -> int:
        cursor.execute(f"PRAGMA {name}")
        return int(cursor.fetchone()[0])

    def database_size(self) -> dict:
        """The file and its WAL on disk, and the page accounting SQLite keeps."""

        path = Path(self.settings_dict["NAME"])

        def size(p: Path) -> int:
            try:
                return p.stat().st_size
            except OSError:
                return 0

        with self.connection.cursor() as cursor:
            page_size = self._pragma(cursor, "page_size")
            page_count = self._pragma(cursor, "page_count")
            free_pages = self._pragma(cursor, "freelist_count")
        file_bytes = size(path)
        wal_bytes = size(path.with_name(path.name + "-wal"))
        return {
            "total_bytes": file_bytes + wal_bytes,
            "file_bytes": file_bytes,
            "wal_bytes": wal_bytes,
            "page_size": page_size,
            "page_count": page_count,
            "free_pages": free_pages,
        }

    def table_sizes(self, tables: list[str]) -> dict[str, int] | None:
        """None: SQLite tells per-table sizes only by walking every page (dbstat), too slow to ask often."""
        return None

    def estimated_row_counts(self, tables: list[str]) -> dict[str, int] | None:
        """None: SQLite keeps no estimate; COUNT(*) on an index is what it has."""
        return None

    def server_connections(self) -> int | None:
        """SQLite has no server, so no connection count."""
        return None

    def performance_extras(self) -> dict:
        with self.connection.cursor() as cursor:
            return {"free_pages": self._pragma(cursor, "freelist_count")}

    def indexes_and_constraints(self, table: str) -> tuple[list[list[str]], set[str]]:
        """The column lists of the table's indexes and the names of its indexes and constraints.

        Read from sqlite_master and the index pragmas: Django's SQLite introspection
        trips over CHECK constraints holding an IN (...) list.
        """

        columns: list[list[str]] = []
        names: set[str] = set()
        with self.connection.cursor() as cursor:
            cursor.execute('SELECT name, "unique" FROM pragma_index_list(%s)', [table])
            for index_name, _unique in cursor.fetchall():
                names.add(index_name)
                cursor.execute("SELECT name FROM pragma_index_info(%s) ORDER BY seqno", [index_name])
                # An expression index lists NULL for its expression columns.
                columns.append([row[0] for row in cursor.fetchall() if row[0] is not None])
            cursor.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = %s", [table])
            row = cursor.fetchone()
        if row and row[0]:
            names.update(re.findall(r'CONSTRAINT\s+"([^"]+)"', row[0]))
            if re.search(r'"id"\s+integer\s+NOT NULL PRIMARY KEY', row[0], re.IGNORECASE):
                columns.append(["id"])
        return columns, names

    def integrity_problems(
        self,
        covered_fk_tables: set[str] | frozenset = frozenset(),
        deep: bool = False,
        checks_covered: dict[str, set[str]] | None = None,
    ) -> list[dict]:
        """PRAGMA quick_check (integrity_check when ``deep``) and foreign_key_check.

        quick_check reads every page once (structure, NOT NULL, CHECK); integrity_check
        also proves every index matches its table, which costs several times more (tens
        of seconds at a million rows), so it is asked for with ``validate --deep``.
        Foreign-key failures in ``covered_fk_tables`` are left out: the model rules report
        them with sample ids and a fix, and counting them twice would mislead.

        ``checks_covered`` maps a table to the CHECKs the data rules evaluate (a named
        constraint's name, a column check's SQL). Where that is every CHECK of the table,
        the check runs with ignore_check_constraints: evaluating CHECKs row by row (an IN
        list builds a temporary table per row) is most of quick_check's time, about 4 of
        4.6 s at a million servers, and the data rules have already counted them set-based.
        The other tables' CHECKs are still checked here, table by table.
        """
        pragma = "integrity_check" if deep else "quick_check"
        problems = []
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND sql LIKE '%CHECK%'")
            with_checks = dict(cursor.fetchall())
            unchecked = [
                t for t, sql in with_checks.items() if not _checks_all_covered(sql, (checks_covered or {}).get(t))
            ]
            skip_checks = len(unchecked) < len(with_checks)
            cursor.execute("PRAGMA ignore_check_constraints")
            already_ignored = bool(cursor.fetchone()[0])
            if skip_checks and not already_ignored:
                cursor.execute("PRAGMA ignore_check_constraints = ON")
            try:
                # The check stops after N errors; 11 is enough to show ten and know there are more.
                cursor.execute(f"PRAGMA {pragma}(11)")
                lines = [row[0] for row in cursor.fetchall() if row[0] != "ok"]
            finally:
                if skip_checks and not already_ignored:
                    cursor.execute("PRAGMA ignore_check_constraints = OFF")
            if skip_checks and not already_ignored:
                for table in unchecked:
                    cursor.execute(f"PRAGMA {pragma}({_quoted(table)})")
                    lines += [row[0] for row in cursor.fetchall() if row[0].startswith("CHECK constraint failed")]
            if lines:
                problems.append(
                    {
                        "table": "",
                        "rule": f"sqlite_{pragma}",
                        "count": len(lines),
                        "samples": lines[:10],
                        "message": f"PRAGMA {pragma} reports damage: " + "; ".join(lines[:3]),
                        "fix": "Restore the newest verified backup (manage.py restore --latest); "
                        "if none, export with the sqlite3 shell's .recover into a new file.",
                    }
                )
            # Tables the model rules cover were checked set-based, with ids; the others
            # (tables Django does not know) are small, and foreign_key_check is per table.
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
            others = [name for (name,) in cursor.fetchall() if name not in covered_fk_tables]
            for other in others:
                cursor.execute(
                    'SELECT fk."table", COUNT(*), fk.parent FROM pragma_foreign_key_check(%s) AS fk '
                    'GROUP BY fk."table", fk.parent',
                    [other],
                )
                for table, count, parent in cursor.fetchall():
                    problems.append(
                        {
                            "table": table,
                            "rule": "sqlite_foreign_key_check",
                            "count": int(count),
                            "samples": [],
                            "message": f"{count} rows of {table} point at rows missing from {parent}",
                            "fix": f"Delete those rows or restore the missing {parent} rows "
                            f"(see PRAGMA foreign_key_check('{table}')).",
                        }
                    )
        return problems

    def foreign_schema_objects(self) -> list[dict]:
        """Triggers, views and virtual tables in sqlite_master (our migrations create none)."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT type, name, tbl_name FROM sqlite_master "
                "WHERE type IN ('trigger', 'view') OR (type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%') "
                "ORDER BY type, name"
            )
            rows = cursor.fetchall()
        found = []
        for kind, name, table in rows:
            if kind == "table":
                kind = "virtual table"
            statement = {"trigger": "DROP TRIGGER", "view": "DROP VIEW", "virtual table": "DROP TABLE"}[kind]
            found.append(
                {
                    "kind": kind,
                    "name": name,
                    "table": table if kind == "trigger" else "",
                    "drop": f"{statement} {_quoted(name)}",
                }
            )
        return found

    # --- validation (dbtools.validation) -----------------------------------

    def shared_between_connections(self) -> bool:
        """False for an in-memory database: each connection has its own."""
        return not self.connection.is_in_memory_db()

    # --- backup side (dbtools.backups) -------------------------------------

    def dump_failure(self, exc: Exception, directory) -> str | None:
        """sqlite3's errors of the backup API: a full disk (the copy is written in the backup
        directory, or beside the live file for an encrypted backup), or a copy that failed."""

        if not isinstance(exc, sqlite3.OperationalError):
            return None
        if "full" in str(exc):
            return f"backup directory {directory} is full ({exc}); no backup was written"
        return f"SQLite could not copy the database: {exc}"

    # --- restore side (dbtools.restore) ----------------------------------------

    @classmethod
    def tables_in_file(cls, path) -> set[str] | None:
        """The tables of an SQLite database file, opened read-only and immutable; None for
        anything else (not a regular file, not an SQLite header, unreadable)."""

        try:
            with open_regular(path) as fh:
                if not cls.looks_like_dump(fh.read(16)):
                    return None
            conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
            try:
                return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            finally:
                conn.close()
        except (OSError, sqlite3.Error):
            return None

    # --- demo data (bulk loading) -------------------------------------------
    # See sqlite_bulk.py (the load itself) and sqlite_demo.py (rows computed by SQLite).

    bulk_param_mark = "?"
    demo_rows_in_database = True

    def bulk_load_table(self, table: str):
        return sqlite_bulk.load_table(self.connection, table)

    def bulk_load_session(self):
        return sqlite_bulk.load_session(self.connection)

    def insert_demo_users(self, writer, User, rng, clock, start, total, batch_size, progress) -> None:
        sqlite_demo.insert_users(writer, User, rng, clock, start, total, batch_size, progress)

    def insert_demo_servers(self, writer, Server, rng, clock, start, total, batch_size, progress, owner_ids, free):
        return sqlite_demo.insert_servers(
            writer, Server, rng, clock, start, total, batch_size, progress, owner_ids, free
        )

    # --- databases and tools (benchmarks) -----------------------------------

    def create_database(self, name: str | None = None) -> None:
        """Only the directory: SQLite creates the file on the first connection."""
        Path(name or self.settings_dict["NAME"]).parent.mkdir(parents=True, exist_ok=True)

    def drop_database(self, name: str | None = None) -> None:
        """The file and the journal, WAL and shared-memory files beside it."""
        path = name or self.settings_dict["NAME"]
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    # --- maintenance: salvage ---------------------------------------------------

    def salvage(self, source: Path | None, output: Path, migrate: Callable[[Path], None]) -> SalvageResult:
        """The rowid walk of sqlite_salvage over a copy of the damaged file (see there)."""
        return sqlite_salvage.salvage_file(
            source if source is not None else Path(self.settings_dict["NAME"]), output, migrate
        )

    def compare_salvage(
        self, salvaged: Path, load_backup: Callable[[], AbstractContextManager[ScratchDatabase]]
    ) -> list[TableComparison]:
        """The salvaged file and the backup's scratch file side by side (ATTACH), by id."""
        return sqlite_salvage.compare_with_scratch(salvaged, load_backup)

    # --- lock -------------------------------------------------------------------

    def lock(self, holder: str, private_directory: Callable[[], Path | None]) -> AbstractContextManager[str]:
        """flock on a 0600 file beside the database file's real path (a symlink meets the same
        lock), never opened through a symlink, removed when released; it holds the holder's text."""
        return locking.sqlite_file_lock(self, holder)


_CHECK = re.compile(r'(?:CONSTRAINT\s+"([^"]+)"\s+)?CHECK\s*\(', re.IGNORECASE)


def _check_expressions(table_sql: str) -> list[tuple[str | None, str]]:
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


def _checks_all_covered(table_sql: str, covered: set[str] | None) -> bool:
    """Whether every CHECK in a CREATE TABLE is in ``covered`` (by name, or by its SQL when unnamed)."""
    if not covered:
        return False
    return all((name if name is not None else sql) in covered for name, sql in _check_expressions(table_sql))


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


# The page cache of the connection copying a backup's rows into the rebuilt file (KiB).
COPY_CACHE_KIB = 32 * 1024

# Tables with more rows than this have their CHECK scan split in two by rowid.
SPLIT_CHECK_ROWS = 200_000


def _quoted(table: str) -> str:
    """An SQLite identifier in double quotes, its own double quotes doubled."""
    return '"' + table.replace('"', '""') + '"'


def _uri(path, **params: str) -> str:
    """A ``file:`` URI for ``path`` (characters such as ? and # escaped) with query ``params``."""

    query = f"?{urlencode(params)}" if params else ""
    return f"file:{quote(str(Path(path).absolute()))}{query}"


def _connect_inert(uri: str, **kwargs):
    """A connection on which the file's schema can call nothing but SQLite's innocuous built-ins.

    trusted_schema off: functions in views, triggers, CHECKs, defaults, generated columns
    and index expressions are limited to those SQLite marks innocuous. A plain sqlite3
    connection has no application functions or collations, and extension loading stays
    off (enable_load_extension is never called; writable_schema never set).
    """

    conn = sqlite3.connect(uri, uri=True, **kwargs)
    conn.execute("PRAGMA trusted_schema = OFF")
    return conn


def _table_names(conn, schema: str, internal: bool = False) -> list[str]:
    where = "" if internal else " AND name NOT LIKE 'sqlite_%'"
    return [
        name
        for (name,) in conn.execute(
            f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table'{where} ORDER BY name"
        )
    ]


def _column_names(conn, schema: str, table: str) -> list[str]:
    return [name for (name,) in conn.execute("SELECT name FROM pragma_table_xinfo(?, ?) ORDER BY cid", [table, schema])]


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
        conn = _connect_inert(_uri(path, mode="ro", immutable="1"))
        try:
            found = _schema_findings(conn)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise VerificationFailed(f"SQLite cannot read its schema: {exc}") from exc
    if found:
        raise ForeignContent(f"{found[0]}: refused, nothing of it was run")


def _check_scans(conn) -> list[tuple[str, tuple]]:
    """(table, (condition, rowid range or None)) for every table with CHECKs, biggest first."""
    scans = []
    for table, sql in conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND sql LIKE '%CHECK%'"
    ).fetchall():
        expressions = [expr for _name, expr in _check_expressions(sql)]
        if not expressions:
            continue
        # A CHECK fails where its expression is FALSE; NULL passes, as NOT NULL is NULL.
        condition = " OR ".join(f"NOT ({expr})" for expr in expressions)
        quoted = _quoted(table)
        try:
            lo, hi = conn.execute(f"SELECT MIN(rowid), MAX(rowid) FROM {quoted}").fetchone()
        except Exception:  # WITHOUT ROWID: one scan
            lo = hi = None
        if lo is not None and hi - lo > SPLIT_CHECK_ROWS:
            middle = (lo + hi) // 2
            scans += [(table, (condition, (lo, middle), hi - lo)), (table, (condition, (middle + 1, hi), hi - lo))]
        else:
            scans.append((table, (condition, None, 0 if lo is None else hi - lo)))
    scans.sort(key=lambda item: -item[1][2])
    return [(table, (condition, rows)) for table, (condition, rows, _size) in scans]


def _any_breaking(uri: str, table: str, condition: str, rowids: tuple[int, int] | None) -> bool:
    """Whether a row of ``table`` (within ``rowids``) breaks one of its CHECKs, on a connection of this thread."""
    conn = _connect_inert(uri)
    try:
        quoted = _quoted(table)
        where = f"({condition})" + (f" AND rowid BETWEEN {int(rowids[0])} AND {int(rowids[1])}" if rowids else "")
        return bool(conn.execute(f"SELECT EXISTS (SELECT 1 FROM {quoted} WHERE {where})").fetchone()[0])
    finally:
        conn.close()


def _pragma_lines(uri: str, pragma: str, conn=None) -> list[str]:
    """The lines of PRAGMA quick_check / integrity_check (at most 100), on ``conn`` or a new connection."""
    own = conn is None
    if own:
        conn = _connect_inert(uri)
    try:
        return [r[0] for r in conn.execute(f"PRAGMA {pragma}").fetchmany(100)]
    finally:
        if own:
            conn.close()
