"""PostgreSQL's swap: the scratch database renamed to the live name in one transaction, and
the leftovers (replaced and scratch databases) an interrupted restore leaves behind.

Methods of PostgreSQLEngine (dbtools.engines.postgresql), which provides the connections
they use (``_psycopg_connect``, ``_maintenance_connection``).
"""

import logging
import os
import re
import secrets
import threading
import time

from ..errors import RestoreFailed
from ..streams import pid_alive


class PostgreSQLSwapMixin:
    """The swap half of the restore section of the engine contract."""

    # pg_restore leaves the planner without column statistics (CREATE INDEX has set each
    # table's row and page counts). They are gathered by ANALYZE right after the swap, on a
    # thread beside the drop of the replaced database, instead of before it beside the
    # validation of the scratch: on two cores the two slowed each other (validation 1.9 s
    # against 1.4 s alone at 1,000,000 servers), and the validation plans as well without
    # them (1.8 s either way here). The application's first queries after the swap may
    # run before ANALYZE ends (0.4 s at that size), never after autovacuum's next round.

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

        import psycopg
        from psycopg import sql

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
        # Dropping the replaced database makes the server checkpoint the load's dirty pages
        # (2 s of a 100,000-server restore): on a thread, while the restore validates; the
        # statistics (above) on another.
        dropping = threading.Thread(target=self._drop_replaced, args=(old,), name="drop-replaced")
        dropping.start()
        analyzing = threading.Thread(target=self._analyze_restored, name="analyze-restored")
        analyzing.start()
        self._dropping = [*getattr(self, "_dropping", []), dropping, analyzing]

    def _analyze_restored(self) -> None:
        import psycopg

        try:
            with self._psycopg_connect(autocommit=True) as conn:
                conn.execute("ANALYZE")
        except psycopg.Error as exc:  # autovacuum will gather them
            logging.getLogger("dbtools.restore").warning("ANALYZE after the restore failed: %s", exc)

    def _drop_replaced(self, old: str) -> None:
        import psycopg
        from psycopg import sql

        try:
            with self._maintenance_connection() as conn:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(old)))
        except psycopg.Error as exc:
            logging.getLogger("dbtools.restore").warning("the replaced database %s was left behind: %s", old, exc)

    def swap_description(self) -> str:
        return "the scratch database renamed to the live name in one transaction (ALTER DATABASE ... RENAME)"

    def drop_swap_leftovers(self) -> list[str]:
        """Drop replaced databases an interrupted restore of this database left behind.

        Called with the database lock held: only a restore holding it creates
        ``<live>_old_<pid>_<random>``, so every such database is a leftover.
        """

        from psycopg import sql

        live = self.settings_dict["NAME"]
        pattern = re.compile(rf"^{re.escape(live[:30])}_old_\d+_[0-9a-f]{{6}}$")
        dropped = []
        with self._maintenance_connection() as conn:
            rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [f"{live[:30]}_old_%"])
            names = [r[0] for r in rows]
            for name in names:
                if pattern.match(name):
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                    dropped.append(name)
        return dropped

    def drop_scratch_leftovers(self) -> list[str]:
        """Drop ``<live>_scratch_<pid>_<random>`` databases whose process is gone and that nobody uses.

        Without FORCE: a scratch someone connected to meanwhile stays.
        """

        import psycopg
        from psycopg import sql

        prefix = self.settings_dict["NAME"][:24]
        pattern = re.compile(rf"^{re.escape(prefix)}_scratch_(\d+)_[0-9a-f]{{8}}$")
        dropped = []
        with self._maintenance_connection() as conn:
            rows = conn.execute(
                "SELECT d.datname FROM pg_database d WHERE starts_with(d.datname, %s) "
                "AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)",
                [f"{prefix}_scratch_"],
            ).fetchall()
            for (name,) in rows:
                match = pattern.match(name)
                if match is None or pid_alive(int(match.group(1))):
                    continue
                try:
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
                except psycopg.Error:
                    continue
                dropped.append(name)
        return dropped
