"""SQLite backups: the live file snapshotted with the online backup API, checked while it is
compressed (structure, tables, rows, every row against its table's CHECKs), and a dump's checks.

SQLiteDumpMixin holds these methods of SQLiteEngine (dbtools.engines.sqlite); the contract
they fulfil is dbtools.engines.base.Engine.
"""

import logging
import os
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..streams import CHUNK, unique_suffix
from .locking import real_database_file
from .results import Check, DumpOutcome, expected_tables_check
from .sqlite_files import (
    check_expressions,
    connect_inert,
    file_uri,
    pragma_lines,
    quote_ident,
    recorded_migrations,
    remove_database_file,
)

logger = logging.getLogger("dbtools.backup")

# Tables with more rows than this have their CHECK scan split in two by rowid.
SPLIT_CHECK_ROWS = 200_000


class SQLiteDumpMixin:
    """The backup methods of SQLiteEngine; check_dump loads through SQLiteRestoreMixin."""

    # A backup is a plain SQLite file made with the online backup API (consistent while
    # the application writes: not a file copy, not iterdump). django-dbbackup's
    # SqliteBackupConnector uses the same API but copies into /tmp and then again into a
    # spooled file; we need the copy in the backup directory, checked and compressed in
    # parallel, so the connector's one method is not reused here.

    def backup_identity(self) -> str:
        """The file's name: the same on a new machine that restores the old one's backups into
        the same place (instance/mcmanager.sqlite3), different for another database file."""
        return Path(self.settings_dict["NAME"]).name

    def database_identity(self) -> str:
        """The file's real path, as its lock resolves it: two files of one name in two
        directories are two databases; a symlink to the file is the same one."""
        return str(real_database_file(self.settings_dict["NAME"]))

    def source_elsewhere(self, identity: str) -> bool:
        """A file that does not exist here: no database of this machine can be its source."""
        return bool(identity) and not os.path.lexists(identity)

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
            remove_database_file(copy)

    def _check_file(
        self, path, level: str, expected_tables=(), check_constraints: bool = False, integrity=False, run_pragma=True
    ):
        """Header, page count, quick_check (full: integrity_check + foreign_key_check), tables, rows.

        ``integrity``: integrity_check instead of quick_check (which it includes), without
        the foreign_key_check of ``full``: a restore's proof that a file it swaps in as it
        came has every index in agreement with its rows. ``run_pragma`` False: neither
        (the caller runs integrity_check itself, on a thread).

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
        uri = file_uri(path, mode="ro", immutable="1")
        conn = connect_inert(uri)
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
            pragma = "integrity_check" if level == "full" or integrity else "quick_check"
            if check_constraints:
                with ThreadPoolExecutor(max_workers=2, thread_name_prefix="sqlite-check") as pool:
                    structure = pool.submit(pragma_lines, uri, pragma)
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
            elif run_pragma:
                rows = pragma_lines(uri, pragma, conn)
            if run_pragma:
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
            counts = {t: conn.execute(f"SELECT COUNT(*) FROM {quote_ident(t)}").fetchone()[0] for t in tables}
            migrations = recorded_migrations(conn) if "django_migrations" in tables else {}
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

    def count_rows(self) -> dict[str, int]:
        """COUNT(*) of every table of the live database."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
            tables = [r[0] for r in cursor.fetchall()]
            counts = {}
            for table in tables:
                cursor.execute(f"SELECT COUNT(*) FROM {quote_ident(table)}")
                counts[table] = cursor.fetchone()[0]
        return counts

    def dump_failure(self, exc: Exception, directory) -> str | None:
        """sqlite3's errors of the backup API: a full disk (the copy is written in the backup
        directory, or beside the live file for an encrypted backup), or a copy that failed."""

        if not isinstance(exc, sqlite3.OperationalError):
            return None
        if "full" in str(exc):
            return f"backup directory {directory} is full ({exc}); no backup was written"
        return f"SQLite could not copy the database: {exc}"


def _check_scans(conn) -> list[tuple[str, tuple]]:
    """(table, (condition, rowid range or None)) for every table with CHECKs, biggest first."""
    scans = []
    for table, sql in conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND sql LIKE '%CHECK%'"
    ).fetchall():
        expressions = [expr for _name, expr in check_expressions(sql)]
        if not expressions:
            continue
        # A CHECK fails where its expression is FALSE; NULL passes, as NOT NULL is NULL.
        condition = " OR ".join(f"NOT ({expr})" for expr in expressions)
        quoted = quote_ident(table)
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
    conn = connect_inert(uri)
    try:
        quoted = quote_ident(table)
        where = f"({condition})" + (f" AND rowid BETWEEN {int(rowids[0])} AND {int(rowids[1])}" if rowids else "")
        return bool(conn.execute(f"SELECT EXISTS (SELECT 1 FROM {quoted} WHERE {where})").fetchone()[0])
    finally:
        conn.close()
