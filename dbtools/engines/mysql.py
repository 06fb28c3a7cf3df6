"""MariaDB: everything vendor-specific about it."""

from .base import Engine


class MySQLEngine(Engine):
    vendor = "mysql"
    display_name = "MariaDB"
    dump_extension = "sql"

    # --- identity ---------------------------------------------------------

    # --- backup -----------------------------------------------------------

    # --- restore ----------------------------------------------------------

    @staticmethod
    def looks_like_dump(head: bytes) -> bool:
        """Whether the first bytes of an uncompressed dump are a mariadb-dump/mysqldump SQL script's."""
        text = head.lstrip()[:200]
        return text.startswith((b"-- MariaDB dump", b"-- MySQL dump", b"/*M!999999", b"/*!40"))

    def swap_in(self, scratch: str) -> None:
        """Move the scratch database's tables under the live name, atomically.

        MariaDB commits every DDL statement on its own, so the swap is ONE statement:
        ``RENAME TABLE live.a TO old.a, ..., scratch.a TO live.a, ...``, which MariaDB
        (10.6+, atomic DDL) applies entirely or not at all, even if the client or the
        server dies meanwhile. Foreign keys follow their tables. The replaced tables wait
        in ``mcm_old_<pid>_<random>`` and are dropped afterwards; an interruption before
        that leaves only that database behind.
        """
        import os
        import secrets

        live = self.settings_dict["NAME"]
        old = f"mcm_old_{os.getpid()}_{secrets.token_hex(3)}"

        def q(name: str) -> str:
            return "`" + name.replace("`", "``") + "`"

        def base_tables(cursor, schema: str) -> list[str]:
            cursor.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                "AND table_type = 'BASE TABLE' ORDER BY table_name",
                [schema],
            )
            return [row[0] for row in cursor.fetchall()]

        with self.connection.cursor() as cursor:
            # A session in the middle of a transaction on a live table holds its metadata
            # lock; wait for it, but not for a year (the server's default).
            cursor.execute("SET SESSION lock_wait_timeout = 60")
            cursor.execute(
                "SELECT default_character_set_name, default_collation_name FROM information_schema.schemata "
                "WHERE schema_name = %s",
                [live],
            )
            charset, collation = cursor.fetchone()
            cursor.execute(f"CREATE DATABASE {q(old)} CHARACTER SET {charset} COLLATE {collation}")
            moves = [f"{q(live)}.{q(t)} TO {q(old)}.{q(t)}" for t in base_tables(cursor, live)]
            moves += [f"{q(scratch)}.{q(t)} TO {q(live)}.{q(t)}" for t in base_tables(cursor, scratch)]
            cursor.execute("RENAME TABLE " + ", ".join(moves))
            try:
                cursor.execute(f"DROP DATABASE {q(old)}")
            except Exception as exc:  # the swap is done; a leftover is only clutter
                import logging

                logging.getLogger("dbtools.restore").warning("the replaced tables were left in %s: %s", old, exc)

    def swap_description(self) -> str:
        return "all tables moved by one atomic RENAME TABLE statement from the scratch database"

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
        """None cheap enough to run: CHECK TABLE reads every row and locks the table."""
        return []
