"""SQLite: everything vendor-specific about it."""

from .base import Engine


class SQLiteEngine(Engine):
    vendor = "sqlite"
    display_name = "SQLite"
    dump_extension = "sqlite3"

    # --- identity ---------------------------------------------------------

    # --- backup -----------------------------------------------------------

    # --- restore ----------------------------------------------------------

    def swap_in(self, scratch: str) -> None:
        """Replace the live database's content with the scratch file's, atomically.

        Through SQLite's online backup API, with the scratch as the source and the live
        database as the destination: all pages are written in one step, inside one write
        transaction of the live file's own pager (its WAL or rollback journal). Open
        connections see the old content until that transaction commits and the new
        content after it; a SIGKILL before the commit leaves the old database, after it the
        new one. Renaming a file instead would leave open connections on the unlinked
        inode and separate the database from its WAL.
        """
        import sqlite3

        live = self.settings_dict["NAME"]
        timeout = self.settings_dict.get("OPTIONS", {}).get("timeout", 20)
        source = sqlite3.connect(scratch, isolation_level=None)
        try:
            target = sqlite3.connect(live, timeout=timeout, isolation_level=None)
            try:
                page_size = target.execute("PRAGMA page_size").fetchone()[0]
                if source.execute("PRAGMA page_size").fetchone()[0] != page_size:
                    # A WAL destination accepts only pages of its own size; the scratch is ours
                    # to rewrite, so give it the live file's page size first.
                    source.execute("PRAGMA journal_mode=DELETE")
                    source.execute(f"PRAGMA page_size={int(page_size)}")
                    source.execute("VACUUM")
                source.backup(target)  # pages=-1: one step, one transaction
            finally:
                target.close()
        finally:
            source.close()

    def swap_description(self) -> str:
        return "copied into the live file by the SQLite backup API in one write transaction"

    # --- monitoring and validation ---------------------------------------
