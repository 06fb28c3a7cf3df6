"""SQLite: everything vendor-specific about it."""

from .base import Engine


class SQLiteEngine(Engine):
    vendor = "sqlite"
    display_name = "SQLite"
    dump_extension = "sqlite3"

    # --- identity ---------------------------------------------------------

    # --- backup -----------------------------------------------------------

    # --- restore ----------------------------------------------------------

    @staticmethod
    def looks_like_dump(head: bytes) -> bool:
        """Whether the first bytes of an uncompressed dump are an SQLite database's."""
        return head.startswith(b"SQLite format 3\x00")

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

    def _pragma(self, cursor, name: str) -> int:
        cursor.execute(f"PRAGMA {name}")
        return int(cursor.fetchone()[0])

    def database_size(self) -> dict:
        """The file and its WAL on disk, and the page accounting SQLite keeps."""
        from pathlib import Path

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
        import re

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

    def integrity_problems(self, covered_fk_tables: set[str] | frozenset = frozenset()) -> list[dict]:
        """PRAGMA integrity_check and foreign_key_check.

        Foreign-key and CHECK failures in ``covered_fk_tables`` are left out: the model
        rules report them with sample ids and a fix, and counting them twice would mislead.
        """
        problems = []
        with self.connection.cursor() as cursor:
            # integrity_check stops after N errors; 11 is enough to show ten and know there are more.
            cursor.execute("PRAGMA integrity_check(11)")
            lines = [row[0] for row in cursor.fetchall() if row[0] != "ok"]
            # CHECK failures in tables the model rules cover are reported there, with ids.
            lines = [
                line
                for line in lines
                if not any(line == f"CHECK constraint failed in {table}" for table in covered_fk_tables)
            ]
            if lines:
                problems.append(
                    {
                        "table": "",
                        "rule": "sqlite_integrity_check",
                        "count": len(lines),
                        "samples": lines[:10],
                        "message": "PRAGMA integrity_check reports damage: " + "; ".join(lines[:3]),
                        "fix": "Restore the newest verified backup (manage.py restore --latest); "
                        "if none, export with the sqlite3 shell's .recover into a new file.",
                    }
                )
            cursor.execute(
                'SELECT fk."table", COUNT(*), fk.parent FROM pragma_foreign_key_check() AS fk '
                'GROUP BY fk."table", fk.parent ORDER BY fk."table"'
            )
            for table, count, parent in cursor.fetchall():
                if table in covered_fk_tables:
                    continue
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
