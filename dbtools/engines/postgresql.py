"""PostgreSQL: everything vendor-specific about it."""

from .base import Engine


class PostgreSQLEngine(Engine):
    vendor = "postgresql"
    display_name = "PostgreSQL"
    dump_extension = "pgdump"

    # --- identity ---------------------------------------------------------

    # --- backup -----------------------------------------------------------

    # --- restore ----------------------------------------------------------

    @staticmethod
    def looks_like_dump(head: bytes) -> bool:
        """Whether the first bytes of an uncompressed dump are a pg_dump custom-format archive's."""
        return head.startswith(b"PGDMP")

    def _maintenance_connection(self):
        """An autocommit psycopg connection to the server's maintenance database (not the live one)."""
        import psycopg

        s = self.settings_dict
        options = s.get("OPTIONS") or {}
        return psycopg.connect(
            host=s.get("HOST") or None,
            port=s.get("PORT") or None,
            user=s.get("USER") or None,
            password=s.get("PASSWORD") or None,
            dbname=options.get("maintenance_db", "postgres"),
            autocommit=True,
            connect_timeout=10,
        )

    def swap_in(self, scratch: str) -> None:
        """Put the scratch database under the live name, atomically.

        Both renames (live -> old, scratch -> live) run in ONE transaction on the
        maintenance database: PostgreSQL's ALTER DATABASE ... RENAME is transactional, so
        the commit switches both names at once and a SIGKILL before it leaves the old
        database in place (the server rolls the open transaction back). A rename needs
        the database to have no other sessions, so the live database's sessions are
        terminated first (the application reconnects to the new one); a session that
        slips in between is terminated and the transaction retried. The old database is
        dropped after the commit; if that step is interrupted, it is left under its
        unique name ``<live>_old_<pid>_<random>`` and nothing else is affected.
        """
        import os
        import secrets
        import time

        import psycopg
        from psycopg import sql

        from ..errors import RestoreFailed

        live = self.settings_dict["NAME"]
        old = f"{live[:30]}_old_{os.getpid()}_{secrets.token_hex(3)}"
        self.connection.close()
        with self._maintenance_connection() as conn:
            owner = conn.execute(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", [live]
            ).fetchone()[0]
            for attempt in range(100):
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname IN (%s, %s) AND pid <> pg_backend_pid()",
                    [live, scratch],
                )
                try:
                    with conn.transaction():
                        conn.execute(
                            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(live), sql.Identifier(old))
                        )
                        conn.execute(
                            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                                sql.Identifier(scratch), sql.Identifier(live)
                            )
                        )
                        conn.execute(
                            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(live), sql.Identifier(owner))
                        )
                    break
                except psycopg.errors.ObjectInUse:
                    # A session connected between the terminate and the rename: again.
                    time.sleep(0.05 * min(attempt + 1, 10))
            else:
                raise RestoreFailed(f"could not swap databases: sessions keep connecting to {live}")
            try:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(old)))
            except psycopg.Error as exc:
                import logging

                logging.getLogger("dbtools.restore").warning("the replaced database %s was left behind: %s", old, exc)

    def swap_description(self) -> str:
        return "the scratch database renamed to the live name in one transaction (ALTER DATABASE ... RENAME)"

    # --- monitoring and validation ---------------------------------------

    def database_size(self) -> dict:
        """What the server reports for the whole database (tables, indexes, TOAST)."""
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_database_size(current_database())")
            total = int(cursor.fetchone()[0])
        return {"total_bytes": total}

    def table_sizes(self, tables: list[str]) -> dict[str, int] | None:
        """Bytes per table including its indexes and TOAST (pg_total_relation_size)."""
        if not tables:
            return {}
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                "WHERE c.relkind IN ('r', 'p') AND c.relnamespace = current_schema()::regnamespace "
                "AND c.relname = ANY(%s)",
                [list(tables)],
            )
            return {name: int(size) for name, size in cursor.fetchall()}

    def estimated_row_counts(self, tables: list[str]) -> dict[str, int] | None:
        """The planner's estimate (pg_class.reltuples): free, unlike COUNT(*) on a million rows."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.relname, c.reltuples::bigint FROM pg_class c "
                "WHERE c.relkind IN ('r', 'p') AND c.relnamespace = current_schema()::regnamespace "
                "AND c.relname = ANY(%s)",
                [list(tables)],
            )
            counts = {name: int(n) for name, n in cursor.fetchall()}
        # reltuples is -1 for a table never vacuumed or analyzed: no estimate then.
        if any(n < 0 for n in counts.values()) or len(counts) != len(tables):
            return None
        return counts

    def server_connections(self) -> int | None:
        """Connections the server has open to this database (pg_stat_activity)."""
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()")
            return int(cursor.fetchone()[0])

    def pool_stats(self) -> dict | None:
        """psycopg pool statistics when Django's PostgreSQL pooling is on, else None."""
        pool = getattr(self.connection, "pool", None)
        if pool is None:
            return None
        return {key: int(value) for key, value in pool.get_stats().items()}

    def performance_extras(self) -> dict:
        """The buffer cache hit ratio of this database since the statistics were reset."""
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT blks_hit, blks_read FROM pg_stat_database WHERE datname = current_database()")
            row = cursor.fetchone()
        hit, read = (int(row[0] or 0), int(row[1] or 0)) if row else (0, 0)
        return {"cache_hit_ratio": round(hit / (hit + read), 4) if hit + read else None}

    def indexes_and_constraints(self, table: str) -> tuple[list[list[str]], set[str]]:
        """The column lists of the table's indexes and the names of its indexes and constraints."""
        with self.connection.cursor() as cursor:
            found = self.connection.introspection.get_constraints(cursor, table)
        indexes = [
            info["columns"]
            for info in found.values()
            if info.get("columns") and (info.get("index") or info.get("unique") or info.get("primary_key"))
        ]
        return indexes, set(found)

    def integrity_problems(self, covered_fk_tables: set[str] | frozenset = frozenset()) -> list[dict]:
        """Invalid indexes (a failed CREATE INDEX CONCURRENTLY leaves one behind) in this schema."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT t.relname, i.relname FROM pg_index x "
                "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
                "WHERE NOT x.indisvalid AND t.relnamespace = current_schema()::regnamespace "
                "ORDER BY t.relname, i.relname"
            )
            rows = cursor.fetchall()
        return [
            {
                "table": table,
                "rule": "postgresql_invalid_index",
                "count": 1,
                "samples": [index],
                "message": f"index {index} on {table} is invalid: PostgreSQL does not use or maintain it",
                "fix": f"REINDEX INDEX {index}; (or drop it and create it again)",
            }
            for table, index in rows
        ]
