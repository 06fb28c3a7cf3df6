"""PostgreSQL's maintenance, monitoring and validation queries: VACUUM/ANALYZE/REINDEX and the
advice to run them, sizes, estimated counts, connections, pool and cache statistics,
invalid indexes and the user objects of the schema.

Methods of PostgreSQLEngine (dbtools.engines.postgresql); they read the live database
through Django's connection (``self.connection``).
"""


class PostgreSQLMonitoringMixin:
    """The maintenance and the monitoring and validation sections of the engine contract."""

    # --- maintenance --------------------------------------------------------

    def maintain(self, *, analyze: bool, vacuum: bool, reindex: bool, dry_run: bool) -> list[str]:
        """VACUUM (ANALYZE) (or ANALYZE alone), REINDEX INDEX CONCURRENTLY of the invalid indexes
        of this schema (a failed CREATE INDEX CONCURRENTLY leaves them). Runs in autocommit:
        neither VACUUM nor a concurrent reindex can run inside a transaction."""
        from psycopg import sql

        steps: list[str] = []
        statements = []
        if vacuum:
            statements.append(sql.SQL("VACUUM (ANALYZE)" if analyze else "VACUUM"))
        elif analyze:
            statements.append(sql.SQL("ANALYZE"))
        with self.connection.cursor() as cursor:
            if reindex:
                cursor.execute(
                    "SELECT n.nspname, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE NOT i.indisvalid AND n.nspname = current_schema() ORDER BY c.relname"
                )
                invalid = cursor.fetchall()
                if not invalid:
                    steps.append("REINDEX skipped: no invalid index")
                statements += [
                    sql.SQL("REINDEX INDEX CONCURRENTLY {}").format(sql.Identifier(schema, name))
                    for schema, name in invalid
                ]
            raw = self.connection.connection
            for statement in statements:
                steps.append(statement.as_string(raw))
                if not dry_run:
                    cursor.execute(statement.as_string(raw))
        return steps

    def maintenance_advice(self) -> list[str]:
        """Dead tuples (over 20% of a table's live rows), statistics older than the data (over
        10% of the rows changed since ANALYZE), invalid indexes: what maintain would fix."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT relname, n_dead_tup, n_mod_since_analyze, n_live_tup FROM pg_stat_user_tables "
                "WHERE schemaname = current_schema() ORDER BY relname"
            )
            tables = cursor.fetchall()
            cursor.execute(
                "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE NOT i.indisvalid AND c.relnamespace = current_schema()::regnamespace"
            )
            invalid = cursor.fetchone()[0]
        dead = [t for t, n_dead, _, live in tables if n_dead > 1000 and n_dead > 0.2 * live]
        stale = [t for t, _, changed, live in tables if changed > 1000 and changed > 0.1 * live]
        advice = []
        if dead:
            advice.append(f"dead rows in {', '.join(dead)}: python manage.py maintain --vacuum")
        if stale:
            advice.append(f"statistics older than the data in {', '.join(stale)}: python manage.py maintain --analyze")
        if invalid:
            advice.append(f"{invalid} invalid indexes: python manage.py maintain --reindex")
        return advice

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

    def integrity_problems(
        self,
        covered_fk_tables: set[str] | frozenset = frozenset(),
        deep: bool = False,
        checks_covered: dict[str, set[str]] | None = None,
    ) -> list[dict]:
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

    def foreign_schema_objects(self) -> list[dict]:
        """User triggers, views, materialized views, rules and routines of the current schema.

        Not the internal triggers of foreign keys, and not the functions of extensions
        (pg_depend 'e'): those come with the extension, not from a person.
        """
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT 'trigger', t.tgname, c.relname, '' FROM pg_trigger t "
                "JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace "
                "UNION ALL SELECT 'view', viewname, '', '' FROM pg_views WHERE schemaname = current_schema() "
                "UNION ALL SELECT 'materialized view', matviewname, '', '' FROM pg_matviews "
                "WHERE schemaname = current_schema() "
                "UNION ALL SELECT 'rule', rulename, tablename, '' FROM pg_rules WHERE schemaname = current_schema() "
                "UNION ALL SELECT CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' "
                "ELSE 'function' END, p.proname, '', p.oid::regprocedure::text FROM pg_proc p "
                "WHERE p.pronamespace = current_schema()::regnamespace AND NOT EXISTS ("
                "SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid "
                "AND d.deptype = 'e') "
                "ORDER BY 1, 2"
            )
            rows = cursor.fetchall()

        def quoted(name: str) -> str:
            return '"' + name.replace('"', '""') + '"'

        found = []
        for kind, name, table, signature in rows:
            if kind in ("trigger", "rule"):
                drop = f"DROP {kind.upper()} {quoted(name)} ON {quoted(table)}"
            elif signature:  # regprocedure's text: quoted as needed, with the argument types
                drop = f"DROP {kind.upper()} {signature}"
            else:
                drop = f"DROP {kind.upper()} {quoted(name)}"
            found.append({"kind": kind, "name": name, "table": table, "drop": drop})
        return found
