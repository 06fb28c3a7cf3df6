"""SQLite figures and checks for monitoring and validation: the file's size and pages, indexes
and constraints, quick_check / integrity_check and foreign_key_check, foreign schema objects.

SQLiteMonitoringMixin holds these methods of SQLiteEngine (dbtools.engines.sqlite).
"""

import re
from pathlib import Path

from .sqlite_files import check_expressions, quote_ident


class SQLiteMonitoringMixin:
    """The monitoring and validation figures of SQLiteEngine."""

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
                    cursor.execute(f"PRAGMA {pragma}({quote_ident(table)})")
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
                    "drop": f"{statement} {quote_ident(name)}",
                }
            )
        return found

    def shared_between_connections(self) -> bool:
        """False for an in-memory database: each connection has its own."""
        return not self.connection.is_in_memory_db()


def _checks_all_covered(table_sql: str, covered: set[str] | None) -> bool:
    """Whether every CHECK in a CREATE TABLE is in ``covered`` (by name, or by its SQL when unnamed)."""
    if not covered:
        return False
    return all((name if name is not None else sql) in covered for name, sql in check_expressions(table_sql))
