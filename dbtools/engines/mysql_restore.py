"""MariaDB restore: a dump loaded inertly into a scratch database (the sandboxed client,
every statement whitelisted first), the atomic RENAME TABLE swap, and the leftovers of
interrupted restores. Mixed into ``MySQLEngine`` (``dbtools.engines.mysql``)."""

import logging
import os
import re
import secrets
import threading
from contextlib import contextmanager

from django.db import DatabaseError

from ..errors import VerificationFailed
from ..streams import pid_alive, unique_suffix
from .dumpcheck import MariaDBStatementChecker
from .dumpscan import run_with_stdin
from .mysql_client import dump_tables, quote
from .results import Check, ScratchDatabase


class MySQLRestoreMixin:
    """``MySQLEngine``'s restore side (methods only; uses ``MySQLClientMixin``'s commands
    and connections)."""

    @contextmanager
    def load_into_scratch(self, source, workdir=None, level: str = "full", defer_integrity: bool = False):
        """Load the dump (a path or an uncompressed stream) into a new, uniquely-named database.

        Yields a ScratchDatabase (``name`` is the database name) with its row counts; the
        database is dropped on exit. Loaded inertly: the ``mariadb`` client runs with
        --sandbox (no client command touches the machine) and is sent only statements
        the whitelist of dumpcheck has passed, each before a byte of it is sent.
        """

        name = f"{self.settings_dict['NAME'][:24]}_scratch_{unique_suffix()}"
        cmd, env = self._loader_command(name)
        conn = self._mysqldb_connect()
        # Autocommit: an open transaction would hold metadata locks on the scratch tables
        # while the scratch is in use, and a restore's RENAME TABLE swap would wait on them.
        conn.autocommit(True)
        try:
            cursor = conn.cursor()
            cursor.execute(
                "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
                "WHERE SCHEMA_NAME = DATABASE()"
            )
            charset, collation = cursor.fetchone()
            cursor.execute(f"CREATE DATABASE {quote(name)} CHARACTER SET {charset} COLLATE {collation}")
            try:
                opened = None
                if isinstance(source, str | os.PathLike):
                    source = opened = open(source, "rb")  # noqa: SIM115 (closed below)
                try:
                    rc, message = run_with_stdin(cmd, env, source, MariaDBStatementChecker(dump_tables()))
                    if rc != 0:
                        raise VerificationFailed(f"the dump does not load: {message}")
                finally:
                    if opened is not None:
                        opened.close()
                cursor.execute(f"USE {quote(name)}")
                tables = self._base_tables(cursor)
                # InnoDB recalculates the statistics of tables this load filled only later, on
                # a background thread; queries before that (restore's validation, the
                # application's first ones) would be planned on an empty table's. ANALYZE
                # samples a few pages per index: a tenth of a second at a million servers.
                if tables:
                    cursor.execute("ANALYZE TABLE " + ", ".join(quote(t) for t in tables))
                    cursor.fetchall()
                counts, _ = self._table_counts(cursor, tables)
                yield ScratchDatabase(
                    name=name, row_counts=counts, checks=[Check("restore", True, "loaded into a scratch database")]
                )
            finally:
                cursor.execute(f"DROP DATABASE IF EXISTS {quote(name)}")
        finally:
            conn.close()

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
        in ``<live>_old_<pid>_<random>`` and are dropped afterwards; an interruption before
        that leaves only that database behind.
        """

        live = self.settings_dict["NAME"]
        old = f"{live[:30]}_old_{os.getpid()}_{secrets.token_hex(3)}"

        q = quote

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
            # The scratch holds only our tables (dumpcheck); other tables of the live database
            # are not in backups (write_dump) and stay where they are.
            incoming = base_tables(cursor, scratch)
            ours = dump_tables() | set(incoming)
            moves = [f"{q(live)}.{q(t)} TO {q(old)}.{q(t)}" for t in base_tables(cursor, live) if t in ours]
            moves += [f"{q(scratch)}.{q(t)} TO {q(live)}.{q(t)}" for t in incoming]
            cursor.execute("RENAME TABLE " + ", ".join(moves))
            cursor.execute("SET SESSION lock_wait_timeout = DEFAULT")
        # The replaced tables are dropped on a thread of their own, while the restore validates.
        dropping = threading.Thread(target=self._drop_replaced, args=(old,), name="drop-replaced")
        dropping.start()
        self._dropping = [*getattr(self, "_dropping", []), dropping]

    def _drop_replaced(self, old: str) -> None:
        try:
            conn = self._mysqldb_connect()
            try:
                conn.cursor().execute(f"DROP DATABASE {quote(old)}")
            finally:
                conn.close()
        except Exception as exc:  # the swap is done; a leftover is only clutter
            logging.getLogger("dbtools.restore").warning("the replaced tables were left in %s: %s", old, exc)

    def swap_description(self) -> str:
        return "all tables moved by one atomic RENAME TABLE statement from the scratch database"

    def drop_swap_leftovers(self) -> list[str]:
        """Drop databases of replaced tables an interrupted restore of this database left behind.

        Called with the database lock held: only a restore holding it creates
        ``<live>_old_<pid>_<random>``, so every such database is a leftover.
        """

        live = self.settings_dict["NAME"]
        pattern = re.compile(rf"^{re.escape(live[:30])}_old_\d+_[0-9a-f]{{6}}$")
        dropped = []
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT schema_name FROM information_schema.schemata")
            for (name,) in cursor.fetchall():
                if pattern.match(name):
                    cursor.execute(f"DROP DATABASE IF EXISTS {quote(name)}")
                    dropped.append(name)
        return dropped

    def drop_scratch_leftovers(self) -> list[str]:
        """Drop ``<live>_scratch_<pid>_<random>`` databases whose process is gone and that nobody uses."""

        prefix = self.settings_dict["NAME"][:24]
        pattern = re.compile(rf"^{re.escape(prefix)}_scratch_(\d+)_[0-9a-f]{{8}}$")
        dropped = []
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT s.SCHEMA_NAME FROM information_schema.SCHEMATA s "
                "WHERE LEFT(s.SCHEMA_NAME, CHAR_LENGTH(%s)) = %s "
                "AND NOT EXISTS (SELECT 1 FROM information_schema.PROCESSLIST p WHERE p.DB = s.SCHEMA_NAME)",
                [f"{prefix}_scratch_", f"{prefix}_scratch_"],
            )
            for (name,) in cursor.fetchall():
                match = pattern.match(name)
                if match is None or pid_alive(int(match.group(1))):
                    continue
                try:
                    cursor.execute("DROP DATABASE IF EXISTS `" + name.replace("`", "``") + "`")
                except DatabaseError:
                    continue
                dropped.append(name)
        return dropped
