"""SQLite: everything vendor-specific about it.

The engine's methods are grouped by seam: the backup in sqlite_dump.py, the restore's load
in sqlite_restore.py and its swap in sqlite_swap.py, monitoring and validation figures in
sqlite_monitoring.py (mixins of SQLiteEngine below), the helpers they share in
sqlite_files.py; salvage, bulk loading and demo rows in sqlite_salvage.py, sqlite_bulk.py
and sqlite_demo.py. Identity, maintenance, the lock and the engine's flags are here.
"""

import os
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from django.conf import settings

from ..errors import DatabaseUnreachable
from ..streams import open_regular, unique_suffix
from . import locking, sqlite_bulk, sqlite_demo, sqlite_salvage
from .base import Engine
from .results import SalvageResult, ScratchDatabase, TableComparison
from .sqlite_dump import SQLiteDumpMixin
from .sqlite_files import remove_database_file
from .sqlite_monitoring import SQLiteMonitoringMixin
from .sqlite_restore import SQLiteRestoreMixin
from .sqlite_swap import SQLiteSwapMixin


class SQLiteEngine(SQLiteDumpMixin, SQLiteRestoreMixin, SQLiteSwapMixin, SQLiteMonitoringMixin, Engine):
    vendor = "sqlite"
    display_name = "SQLite"
    dump_extension = "sqlite3"

    # The restore's scratch can be read while swap_in() copies it (integrity_of_scratch).
    scratch_readable_during_swap = True
    # Duplicate search: GROUP BY ... HAVING COUNT(*) > 1 is the faster plan here.
    duplicates_by_index_probe = False

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

    # --- its own dump files (dbtools.restore) -------------------------------

    @staticmethod
    def looks_like_dump(head: bytes) -> bool:
        """Whether the first bytes of an uncompressed dump are an SQLite database's."""
        return head.startswith(b"SQLite format 3\x00")

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
        remove_database_file(name or self.settings_dict["NAME"])

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
