"""PostgreSQL: everything vendor-specific about it."""

from .base import Engine


class PostgreSQLEngine(Engine):
    vendor = "postgresql"
    display_name = "PostgreSQL"
    dump_extension = "pgdump"

    # --- identity ---------------------------------------------------------

    # --- backup -----------------------------------------------------------

    # --- restore ----------------------------------------------------------

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
