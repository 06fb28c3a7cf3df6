"""MariaDB: everything vendor-specific about it."""

from .base import Engine


class MySQLEngine(Engine):
    vendor = "mysql"
    display_name = "MariaDB"
    dump_extension = "sql"

    # --- identity ---------------------------------------------------------

    # --- backup -----------------------------------------------------------

    # --- restore ----------------------------------------------------------

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
