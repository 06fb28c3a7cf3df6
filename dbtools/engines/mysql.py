"""MariaDB: everything vendor-specific about it."""

import logging
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from django.apps import apps
from django.db import DatabaseError

from ..errors import BackupFailed, CouldNotRun, DatabaseUnreachable, DbtoolsError, VerificationFailed
from ..formatting import first_line as first_text_line
from ..streams import CHUNK, pid_alive, pump_tool_output, unique_suffix
from . import locking
from .base import Engine
from .dumpcheck import MariaDBStatementChecker, Refused
from .dumpscan import MariaDBDumpScanner, first_line, run_with_stdin
from .results import Check, DumpOutcome, ScratchDatabase, expected_tables_check


def quote(name: str) -> str:
    """A MariaDB identifier in backticks, its own backticks doubled (connection.ops.quote_name
    leaves a name that already starts with one as it is)."""
    return "`" + name.replace("`", "``") + "`"


def dump_tables() -> set[str]:
    """The tables a dump may create and fill: those of the installed models and Django's own."""

    tables = {model._meta.db_table for model in apps.get_models(include_auto_created=True)}
    return tables | {"django_migrations"}


_SANDBOX_CLIENTS: dict[str, bool] = {}


def has_sandbox(binary: str) -> bool:
    """Whether this ``mariadb`` client knows --sandbox (asked once per binary, from its --help)."""

    if binary not in _SANDBOX_CLIENTS:
        try:
            text = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            text = ""
        _SANDBOX_CLIENTS[binary] = "--sandbox" in text
    return _SANDBOX_CLIENTS[binary]


class MySQLEngine(Engine):
    vendor = "mysql"
    display_name = "MariaDB"
    dump_extension = "sql"

    # --- identity ---------------------------------------------------------

    def server_version(self) -> str:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT VERSION()")
            return cursor.fetchone()[0]

    # --- backup -----------------------------------------------------------

    # The dump: `mariadb-dump --single-transaction` of this one database, naming no
    # database (no CREATE DATABASE, no USE) so it loads into any database. django-dbbackup's
    # MysqlDumpConnector is not used: it puts the password on the command line (visible
    # in `ps`), buffers the whole dump in a spooled file, and has no --single-transaction.
    # The password goes through MYSQL_PWD, never argv.

    def _client_command(self, tool: str, database: str | None = None) -> tuple[list[str], dict]:

        s = self.settings_dict
        fallback = tool.replace("mariadb-dump", "mysqldump").replace("mariadb", "mysql")
        binary = shutil.which(tool) or shutil.which(fallback)
        args = [binary or tool]
        host = s.get("HOST") or ""
        if host.startswith("/"):
            args.append(f"--socket={host}")
        elif host:
            args.append(f"--host={host}")
        if s.get("PORT"):
            args.append(f"--port={s['PORT']}")
        if s.get("USER"):
            args.append(f"--user={s['USER']}")
        args += self._tls_arguments()
        env = {k: v for k, v in os.environ.items() if k != "MYSQL_PWD"}
        if s.get("PASSWORD"):
            env["MYSQL_PWD"] = str(s["PASSWORD"])
        return args, env

    def _tls_arguments(self) -> list[str]:
        """The client tools' TLS options from DATABASE_URL's (Django's OPTIONS): ``ssl`` (ca,
        cert, key, capath, cipher) and ``ssl_mode``, so a dump or a load is never less private
        than the application's own connection."""
        options = self.settings_dict.get("OPTIONS") or {}
        args = []
        ssl = options.get("ssl") or {}
        if isinstance(ssl, dict):
            for key, flag in (("ca", "ssl-ca"), ("cert", "ssl-cert"), ("key", "ssl-key"), ("capath", "ssl-capath"),
                              ("cipher", "ssl-cipher")):  # fmt: skip
                if ssl.get(key):
                    args.append(f"--{flag}={ssl[key]}")
        mode = str(options.get("ssl_mode") or "").upper()
        if mode == "DISABLED":
            args.append("--skip-ssl")
        elif mode or args:
            args.append("--ssl")
        if mode in ("VERIFY_CA", "VERIFY_IDENTITY"):
            args.append("--ssl-verify-server-cert")
        return args

    def _mysqldb_connect(self, database: str | None = None):
        import MySQLdb

        s = self.settings_dict
        kwargs = {"user": s.get("USER") or "", "passwd": s.get("PASSWORD") or "", "charset": "utf8mb4"}
        host = s.get("HOST") or ""
        if host.startswith("/"):
            kwargs["unix_socket"] = host
        else:
            kwargs["host"] = host or "localhost"
            if s.get("PORT"):
                kwargs["port"] = int(s["PORT"])
        kwargs["db"] = database or s["NAME"]
        kwargs["connect_timeout"] = 10
        options = s.get("OPTIONS") or {}
        for name in ("ssl", "ssl_mode"):  # TLS as the application's connection has it
            if options.get(name):
                kwargs[name] = options[name]
        return MySQLdb.connect(**kwargs)

    @staticmethod
    def _base_tables(cursor) -> list[str]:
        cursor.execute("SHOW FULL TABLES WHERE Table_type = 'BASE TABLE'")
        return sorted(r[0] for r in cursor.fetchall())

    @classmethod
    def _table_counts(cls, cursor, tables) -> tuple[dict[str, int], dict[str, list[str]]]:
        counts = {}
        for table in tables:
            cursor.execute(f"SELECT COUNT(*) FROM {quote(table)}")
            counts[table] = int(cursor.fetchone()[0])
        migrations: dict[str, list[str]] = {}
        if "django_migrations" in counts:
            cursor.execute("SELECT app, name FROM django_migrations ORDER BY id")
            for app, name in cursor.fetchall():
                migrations.setdefault(app, []).append(name)
        return counts, migrations

    def _counts_on_own_connection(self, tables) -> tuple[dict[str, int], dict[str, list[str]]]:
        conn = self._mysqldb_connect()
        try:
            return self._table_counts(conn.cursor(), tables)
        finally:
            conn.close()

    def write_dump(self, out, workdir, *, level: str = "quick", expected_tables=(), check_rows: bool = True):
        """mariadb-dump of this database into ``out``, with row counts of the very same snapshot.

        mariadb-dump cannot share its snapshot, so the counts are taken under LOCK TABLES
        ... READ, held until mariadb-dump has started its consistent-snapshot transaction
        (its first table in the stream): writers wait for those milliseconds, and the
        manifest's counts are exactly the dump's. The counts run on a second connection
        while mariadb-dump starts (READ locks let every reader in), so neither the dump
        nor the writers wait for both one after the other.
        """

        import MySQLdb

        try:
            conn = self._mysqldb_connect()
        except MySQLdb.Error as exc:
            raise DatabaseUnreachable(f"database '{self.alias}' is unreachable: {exc.args[-1]}") from exc
        outcome = DumpOutcome()
        locked = False
        try:
            cursor = conn.cursor()
            cursor.execute("SET SESSION lock_wait_timeout = 60")
            # Only the tables of our models: a restore refuses any other (dumpcheck), so a
            # backup holding one could never be restored. The others are named in a check.
            allowed = dump_tables()
            present = self._base_tables(cursor)
            tables = [t for t in present if t in allowed]
            foreign = [t for t in present if t not in allowed]
            if tables:
                cursor.execute("LOCK TABLES " + ", ".join(f"{quote(t)} READ" for t in tables))
                locked = True
            counter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backup-counts")
            counted = counter.submit(self._counts_on_own_connection, tables)
            counter.shutdown(wait=False)
            cmd, env = self._client_command("mariadb-dump")
            # Tables only: no triggers, routines or events, which a restore refuses to load.
            # "--" before the name: a database named "-x" is not read as an option.
            cmd += [
                "--single-transaction",
                "--skip-triggers",
                "--no-create-db",
                "--no-tablespaces",
                "--hex-blob",
                "--default-character-set=utf8mb4",
                # No table named dumps them all: with none of ours, none at all.
                *([] if tables else ["--no-create-info", "--no-data"]),
                "--",
                self.settings_dict["NAME"],
                *tables,
            ]
            outcome.tool = subprocess.run([cmd[0], "--version"], capture_output=True, text=True).stdout.strip()
            scanner = MariaDBDumpScanner()
            with tempfile.TemporaryFile() as err:
                dump = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env)

                def consume(chunk: bytes) -> None:
                    nonlocal locked
                    scanner.feed(chunk)
                    if locked and scanner.started and counted.done():
                        cursor.execute("UNLOCK TABLES")
                        locked = False

                try:
                    pump_tool_output(dump.stdout, out, consume)
                except BaseException:
                    dump.kill()  # a full disk or a signal: do not wait on a full pipe
                    raise
                finally:
                    rc = dump.wait()
                if rc != 0:
                    raise BackupFailed(f"mariadb-dump failed: {first_line(err)}")
            outcome.row_counts, outcome.migrations = counted.result()
            outcome.checks.append(
                Check(
                    "dump_completed",
                    scanner.completed,
                    "the dump ends with its completion trailer" if scanner.completed else "the dump is truncated",
                )
            )
            outcome.checks.append(expected_tables_check(expected_tables, scanner.tables))
            # Every table of ours in the database must be in the dump.
            every = expected_tables_check(tables, scanner.tables)
            every.name = "all_tables"
            outcome.checks.append(every)
            if foreign:
                outcome.checks.append(
                    Check("other_tables", True, "not mcmanager's, left out of the backup: " + ", ".join(foreign[:10]))
                )
        finally:
            if locked:
                try:
                    cursor.execute("UNLOCK TABLES")
                except MySQLdb.Error:
                    pass
            conn.close()
        return outcome

    def check_dump(self, stream, *, level: str = "quick", manifest=None, workdir=None):
        """Checks of a dump read from ``stream`` (uncompressed). Returns (checks, row counts or None).

        quick: the dump is complete (trailer), holds only statements a restore would load
        (dumpcheck) and creates the manifest's tables; full: it is loaded into a scratch
        database and its tables counted there.
        """

        if level == "full":
            with self.load_into_scratch(stream) as scratch:
                return scratch.checks, scratch.row_counts
        scanner = MariaDBDumpScanner()
        checker = MariaDBStatementChecker(dump_tables())
        refused = None
        while chunk := stream.read(CHUNK):
            scanner.feed(chunk)
            if refused is None:
                try:
                    checker.feed(chunk)
                except Refused as exc:
                    refused = str(exc)
        if refused is None:
            try:
                checker.close()
            except Refused as exc:
                refused = str(exc)
        checks = [
            Check(
                "dump_completed",
                scanner.completed,
                "the dump ends with its completion trailer" if scanner.completed else "the dump is truncated",
            )
        ]
        checks.append(
            Check(
                "statements", refused is None, refused or f"{checker.statements} statements, all as mariadb-dump writes"
            )
        )
        if manifest is not None:
            checks.append(expected_tables_check(manifest.row_counts, scanner.tables))
        return checks, None

    @contextmanager
    def load_into_scratch(self, source, workdir=None, level: str = "full"):
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

    def _loader_command(self, database: str) -> tuple[list[str], dict]:
        """The ``mariadb`` client that loads a dump into ``database``: --sandbox, always.

        A client without --sandbox (MariaDB before 10.5.25, 10.6.18, 10.11.8, 11.0.6, or
        MySQL's) is refused: the statement whitelist is the first guard, not the only one.
        """

        cmd, env = self._client_command("mariadb")
        if not has_sandbox(cmd[0]):
            raise CouldNotRun(
                f"the mariadb client ({cmd[0]}) has no --sandbox option: a dump is never loaded without it; "
                "install MariaDB's client 10.11.8 or newer"
            )
        # The session's sql_mode as mariadb-dump sets it, whatever the server's global one:
        # with NO_BACKSLASH_ESCAPES or ANSI_QUOTES there, the server would read the dump's
        # strings otherwise than dumpcheck does.
        return [
            *cmd,
            "--sandbox",
            "--batch",
            "--default-character-set=utf8mb4",
            "--init-command=SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'",
            f"--database={database}",
        ], env

    def count_rows(self) -> dict[str, int]:
        """COUNT(*) of every base table of the live database."""
        conn = self._mysqldb_connect()
        try:
            cursor = conn.cursor()
            return self._table_counts(cursor, self._base_tables(cursor))[0]
        finally:
            conn.close()

    # --- restore ----------------------------------------------------------

    @staticmethod
    def looks_like_dump(head: bytes) -> bool:
        """Whether the first bytes of an uncompressed dump are a mariadb-dump/mysqldump SQL script's."""
        text = head.lstrip()[:200]
        return text.startswith((b"-- MariaDB dump", b"-- MySQL dump", b"/*M!999999", b"/*!40"))

    validate_scratch_before_swap = True

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

    def finish_swap(self) -> None:
        for dropping in getattr(self, "_dropping", []):
            dropping.join()
        self._dropping = []

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

    # Duplicate search: GROUP BY ... HAVING COUNT(*) > 1 is the faster plan here.
    duplicates_by_index_probe = False

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

    # --- validation (dbtools.validation) -----------------------------------

    def shared_between_connections(self) -> bool:
        """True: every connection reaches the same database on the server."""
        return True

    # --- restore side (dbtools.restore) ----------------------------------------

    @classmethod
    def tables_in_file(cls, path) -> set[str] | None:
        """None: a MariaDB database lives on its server, never in a file (its dumps are SQL scripts, not databases)."""
        return None

    # --- demo data (bulk loading) -------------------------------------------
    # Rows go in with the base class's executemany: mysqlclient rewrites an INSERT ... VALUES
    # run by executemany into multi-row INSERTs of up to max_allowed_packet, MariaDB's fastest
    # path short of LOAD DATA (which the server may forbid). Sequences are AUTO_INCREMENT
    # counters that follow explicit ids by themselves.

    bulk_param_mark = "%s"
    bulk_timestamp_suffix = ""

    # --- databases and tools (benchmarks) -----------------------------------

    def tool_command(self, tool: str) -> tuple[list[str], dict[str, str]]:
        return self._client_command(tool)

    def _server_statement(self, statement: str) -> None:
        """One statement outside any database, by the ``mariadb`` client (MySQLdb always opens one)."""

        cmd, env = self._client_command("mariadb")
        done = subprocess.run([*cmd, "-e", statement], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            why = first_text_line(done.stderr or done.stdout) or f"exit {done.returncode}"
            raise CouldNotRun(f"{statement}: {why}")

    def create_database(self, name: str | None = None) -> None:
        """With the collation the tests and the settings expect (utf8mb4_general_ci)."""
        database = quote(name or self.settings_dict["NAME"])
        self._server_statement(f"CREATE DATABASE {database} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")

    def drop_database(self, name: str | None = None) -> None:
        self._server_statement(f"DROP DATABASE IF EXISTS {quote(name or self.settings_dict['NAME'])}")

    # --- lock -------------------------------------------------------------------

    def lock(self, holder: str, private_directory: Callable[[], Path | None]) -> AbstractContextManager[str]:
        """GET_LOCK on the database's name as the server reports it (case-folded where it folds);
        the holder's description in a 0600 file in ``private_directory()``, since MariaDB has no
        per-connection label others can read."""
        return locking.mariadb_named_lock(self, holder, private_directory)
