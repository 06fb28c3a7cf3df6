"""MariaDB maintenance, monitoring and validation: ANALYZE/OPTIMIZE TABLE, sizes and row
estimates from information_schema, connections, indexes and constraints, objects in the
schema that are not ours. Mixed into ``MySQLEngine`` (``dbtools.engines.mysql``)."""

from ..errors import DbtoolsError
from .mysql_client import quote


class MySQLMonitoringMixin:
    """``MySQLEngine``'s maintenance and monitoring queries (methods only)."""

    # --- maintenance --------------------------------------------------------

    def maintain(self, *, analyze: bool, vacuum: bool, reindex: bool, dry_run: bool) -> list[str]:
        """ANALYZE TABLE and OPTIMIZE TABLE (InnoDB: a rebuild, which also rebuilds the indexes,
        so ``reindex`` asks for the same) of every table of this database."""

        quote = self.connection.ops.quote_name
        names = sorted(self.connection.introspection.table_names())
        tables = ", ".join(quote(t) for t in names)
        verbs = (["ANALYZE TABLE"] if analyze else []) + (["OPTIMIZE TABLE"] if vacuum or reindex else [])
        steps: list[str] = []
        with self.connection.cursor() as cursor:
            for verb in verbs:
                steps.append(f"{verb} ({len(names)} tables)")
                if not dry_run:
                    cursor.execute(f"{verb} {tables}")
                    # One row per table: (table, op, msg_type, msg_text); "error" means it failed.
                    failed = [row for row in cursor.fetchall() if row[2] == "error"]
                    if failed:
                        raise DbtoolsError(f"{verb} failed on {failed[0][0]}: {failed[0][3]}")
        return steps

    def maintenance_advice(self) -> list[str]:
        """Tables whose free space is over 20% of their size (and 10 MB): OPTIMIZE TABLE would return it."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() "
                "AND data_free > 10485760 AND data_free > 0.2 * (data_length + index_length) ORDER BY table_name"
            )
            tables = [row[0] for row in cursor.fetchall()]
        return [f"free space in {', '.join(tables)}: python manage.py maintain --vacuum"] if tables else []

    # --- monitoring and validation ---------------------------------------

    def database_size(self) -> dict:
        """Data and index bytes of this schema as information_schema reports them."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables "
                "WHERE table_schema = DATABASE()"
            )
            total = int(cursor.fetchone()[0])
        return {"total_bytes": total}

    def table_sizes(self, tables: list[str]) -> dict[str, int] | None:
        """Data plus index bytes per table (information_schema.tables)."""
        if not tables:
            return {}
        placeholders = ", ".join(["%s"] * len(tables))
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT table_name, data_length + index_length FROM information_schema.tables "
                f"WHERE table_schema = DATABASE() AND table_name IN ({placeholders})",
                list(tables),
            )
            return {name: int(size or 0) for name, size in cursor.fetchall()}

    def estimated_row_counts(self, tables: list[str]) -> dict[str, int] | None:
        """InnoDB's estimate (information_schema.tables.table_rows); COUNT(*) scans the whole index."""
        if not tables:
            return {}
        placeholders = ", ".join(["%s"] * len(tables))
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT table_name, table_rows FROM information_schema.tables "
                f"WHERE table_schema = DATABASE() AND table_name IN ({placeholders})",
                list(tables),
            )
            counts = {name: int(n or 0) for name, n in cursor.fetchall()}
        return counts if len(counts) == len(tables) else None

    def server_connections(self) -> int | None:
        """Client connections the server has open (all databases: MariaDB counts per server)."""
        with self.connection.cursor() as cursor:
            cursor.execute("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
            row = cursor.fetchone()
        return int(row[1]) if row else None

    def performance_extras(self) -> dict:
        return {}

    def integrity_problems(
        self,
        covered_fk_tables: set[str] | frozenset = frozenset(),
        deep: bool = False,
        checks_covered: dict[str, set[str]] | None = None,
    ) -> list[dict]:
        """None cheap enough to run: CHECK TABLE reads every row and locks the table."""
        return []

    def foreign_schema_objects(self) -> list[dict]:
        """Triggers, views, stored functions and procedures, and events of the current database."""
        queries = (
            "SELECT 'trigger', TRIGGER_NAME, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS "
            "WHERE TRIGGER_SCHEMA = DATABASE()",
            "SELECT 'view', TABLE_NAME, '' FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE()",
            "SELECT LOWER(ROUTINE_TYPE), ROUTINE_NAME, '' FROM information_schema.ROUTINES "
            "WHERE ROUTINE_SCHEMA = DATABASE()",
            "SELECT 'event', EVENT_NAME, '' FROM information_schema.EVENTS WHERE EVENT_SCHEMA = DATABASE()",
        )
        found = []
        with self.connection.cursor() as cursor:
            for query in queries:
                cursor.execute(query)
                for kind, name, table in cursor.fetchall():
                    found.append(
                        {"kind": kind, "name": name, "table": table, "drop": f"DROP {kind.upper()} {quote(name)}"}
                    )
        return sorted(found, key=lambda o: (o["kind"], o["name"]))
