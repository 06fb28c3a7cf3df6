"""SQLite restore, the swap: the scratch's pages copied into the live file in one write
transaction (the online backup API), its integrity check, and the files of killed runs.

SQLiteSwapMixin holds these methods of SQLiteEngine (dbtools.engines.sqlite); the scratch it
swaps in is built in sqlite_restore.py.
"""

import os
import re
import sqlite3
import stat
import tempfile
from pathlib import Path

from ..streams import fsync_directory, pid_alive, unique_suffix
from .sqlite_files import file_uri, pragma_lines

# A scratch file of load_into_scratch() (sqlite_restore.py) in the temp directory, and the files SQLite keeps beside it.
SIDE_FILES = "(?:-journal|-wal|-shm)?"
SCRATCH_FILE_RE = re.compile(rf"^\.db_scratch_(\d+)_[0-9a-f]{{8}}\.sqlite3(?:\.as-received)?{SIDE_FILES}$")


class SQLiteSwapMixin:
    """The restore's swap of SQLiteEngine and the clean-up of killed runs' files."""

    def prepare_swap(self, scratch: str) -> None:
        """Give the scratch the live file's page size (a WAL destination accepts only its own)."""

        live = self.settings_dict["NAME"]
        try:
            target = sqlite3.connect(file_uri(live, mode="ro"), uri=True)
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
        lines = pragma_lines(file_uri(scratch, mode="ro"), "integrity_check")
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
