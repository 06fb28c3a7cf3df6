"""The engine contract: every operation the services ask of a database vendor.

Like Django's own ``BaseDatabaseOperations``, ``Engine`` declares each operation once,
with what it must do; ``SQLiteEngine``, ``PostgreSQLEngine`` and ``MySQLEngine`` (MariaDB)
implement them. The abstract methods are what a fourth engine must write; the concrete
ones have a default that is right unless the engine knows better. Services receive an
Engine (``dbtools.engines.get_engine(alias)``) and never branch on the vendor.
The result types (``Check``, ``DumpOutcome``, ``ScratchDatabase``, ...) are in
``dbtools.engines.results``.

Sections (each owned by one feature; edit only yours, append within it):
- identity: vendor, display name, server version, a description without secrets,
  reachability, which database a backup is of (its name and where it lives:
  ``backup_identity``, ``database_identity``, ``is_own``), recognising its own dump files;
- backup: dump a consistent snapshot, check a dump's structure, count rows;
- restore: load a dump into a scratch database (also used by ``--verify full`` and
  ``restore --check``), replace the live database atomically with it;
- monitoring and validation: sizes, connections, statistics, the engine's own
  integrity checks, objects in the schema that are not ours;
- maintenance: the per-engine SQL of ``manage.py maintain`` and when it would pay; the
  salvage of a damaged database;
- lock: one backup or restore per database at a time;
- demo data (bulk loading): many rows with explicit ids, fast (``generate_demo_data``,
  ``import_legacy``);
- databases and tools (benchmarks): the engine's own command-line tools, creating and
  dropping a database (``bench/``);
- restore speed: what a restore may leave running in the background.

Why this module is long: it is the contract, one abstract class whose docstrings are the
documentation of every operation; cut into modules, the contract would be read in pieces.

- monitoring: the statistics of dbstats and the dashboard (sizes, row estimates,
  server connections, pool, engine-specific figures).
"""

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from django.core.management.color import no_style
from django.db import connections, transaction

from ..errors import CouldNotRun, DatabaseUnreachable
from ..formatting import first_line
from .results import Check, DumpOutcome, SalvageResult, ScratchDatabase, TableComparison

# Engine.database_identity's answers by (vendor, HOST, PORT): a server's identity does not change.
_SERVER_IDENTITIES: dict[tuple[str, str, str], str] = {}


class Engine(ABC):
    vendor: str = ""  # Django's connection.vendor: "sqlite", "postgresql", "mysql"
    display_name: str = ""  # "SQLite", "PostgreSQL", "MariaDB"
    dump_extension: str = ""  # extension of an uncompressed dump: "sqlite3", "pgdump", "sql"

    def __init__(self, alias: str) -> None:
        self.alias = alias

    @property
    def connection(self):
        return connections[self.alias]

    @property
    def settings_dict(self) -> dict:
        return self.connection.settings_dict

    # --- identity ---------------------------------------------------------

    def describe(self) -> str:
        """Where the database is, for messages: never the password (a server's user@host:port/name)."""
        s = self.settings_dict
        host = s.get("HOST") or "localhost"
        port = f":{s['PORT']}" if s.get("PORT") else ""
        return f"{self.display_name} {s.get('USER') or ''}@{host}{port}/{s['NAME']}"

    @abstractmethod
    def server_version(self) -> str:
        """The server's (or library's) version, as the manifest records it."""

    def check_connection(self) -> None:
        """DatabaseUnreachable (exit 2), in one line without the password, unless the database answers."""
        try:
            self.connection.ensure_connection()
        except Exception as exc:
            first = first_line(exc)
            password = self.settings_dict.get("PASSWORD")
            if password:
                first = first.replace(str(password), "***")
            raise DatabaseUnreachable(f"database '{self.alias}' is unreachable ({self.describe()}): {first}") from None

    def check_live_database(self) -> str | None:
        """Before a restore or a check: can the live database take a restore? Touches nothing.

        Raises DatabaseUnreachable (exit 2) when it cannot; returns a note for the operator
        when the restore would create it, else None. PostgreSQL and MariaDB: it must
        answer (a missing database is reported by the server, and is created empty
        before a restore).
        """
        self.check_connection()
        return None

    def backup_identity(self) -> str:
        """Which database a backup's manifest says it is of (``database_name``), so health,
        --latest and retention count a backup only for its database, whatever alias or URL
        spelling reached it: the database's name on its server."""
        return str(self.settings_dict["NAME"])

    def database_identity(self) -> str:
        """Where the database lives beyond its name (the manifest's ``database_identity``):
        SQLite the file's real path; a server's own identity (PostgreSQL the cluster's system
        identifier, MariaDB its hostname, port and data directory), asked once per process
        and server. "" when it cannot be told (the server does not answer): then a backup is
        matched by its engine and name alone, as manifests without the field are."""
        key = (self.vendor, self.settings_dict.get("HOST") or "", str(self.settings_dict.get("PORT") or ""))
        if key not in _SERVER_IDENTITIES:
            try:
                identity = self.server_identity()
            except Exception:  # unreachable, no privilege: unknown, and asked again next time
                return ""
            if not identity:
                return ""
            _SERVER_IDENTITIES[key] = identity
        return _SERVER_IDENTITIES[key]

    def server_identity(self) -> str:
        """The server's own identity, the same whatever address reaches it (database_identity)."""
        return ""

    def is_own(self, vendor: str, name: str, identity: str) -> bool:
        """Whether a backup (or journal entry) of ``vendor``'s database ``name`` at ``identity``
        is of this database: engine, name and identity match; an identity missing on either
        side (an older manifest, a server that does not answer) leaves engine and name."""
        if vendor != self.vendor or name != self.backup_identity():
            return False
        own = self.database_identity() if identity else ""
        return not identity or not own or identity == own

    def source_elsewhere(self, identity: str) -> bool:
        """Whether a backup recorded at ``identity`` cannot be of another database of this
        machine (``restore --latest`` on a new machine): its server is not this one. False
        when that cannot be told (no identity recorded, this server's unknown)."""
        own = self.database_identity()
        return bool(identity and own and identity != own)

    @staticmethod
    @abstractmethod
    def looks_like_dump(head: bytes) -> bool:
        """Whether the first bytes of an uncompressed dump are this engine's dump format's."""

    # --- backup -----------------------------------------------------------

    @abstractmethod
    def write_dump(
        self, out, workdir, *, level: str = "quick", expected_tables=(), check_rows: bool = True
    ) -> DumpOutcome:
        """Dump a consistent snapshot of the live database into ``out`` (a binary writer).

        ``workdir`` may hold a temporary file (see plaintext_workdir). The outcome carries
        the snapshot's row counts and applied migrations and the checks run while dumping
        (structure, ``expected_tables`` present; ``check_rows``: every row against its
        table's CHECKs where the engine's copy needs it).
        """

    @abstractmethod
    def check_dump(
        self, stream, *, level: str = "quick", manifest=None, workdir=None
    ) -> tuple[list[Check], dict[str, int] | None]:
        """Check a dump read from ``stream`` (uncompressed). Returns (checks, row counts or None).

        quick: its structure and content without loading it where the engine can;
        full: it is loaded into a scratch database (load_into_scratch) and counted there.
        """

    @abstractmethod
    def count_rows(self) -> dict[str, int]:
        """COUNT(*) of every table of the live database."""

    def plaintext_workdir(self, backup_directory):
        """Where write_dump may put a plain snapshot of the database while an encrypted backup
        is written: never the backup directory. Engines that stream (no snapshot file) ignore it."""
        return backup_directory

    def dump_failure(self, exc: Exception, directory) -> str | None:
        """Why write_dump failed, in one line, when ``exc`` is an error of the engine's own
        driver that the backup side cannot name (it imports no driver); None for any other
        exception, which goes on up as it is. The backup becomes BackupFailed (exit 1)."""
        return None

    def drop_scratch_leftovers(self) -> list[str]:
        """Remove scratch databases (or files) of this database whose creating process is gone.

        A scratch is named ``..._scratch_<pid>_<random>`` by the process that made it; one
        whose pid no longer runs on this machine (and, on a server, that nobody is
        connected to) is the leftover of a killed run. Returns the names removed.
        """
        return []

    # --- restore ----------------------------------------------------------

    @abstractmethod
    def load_into_scratch(
        self, source, workdir=None, level: str = "full", defer_integrity: bool = False
    ) -> AbstractContextManager[ScratchDatabase]:
        """Load a dump (a path or an uncompressed stream) into a new, uniquely-named scratch
        database, inertly (nothing but our tables, rows, indexes and constraints is created;
        anything else is refused with one line naming it).

        A context manager yielding a ScratchDatabase (its ``name`` is what swap_in takes)
        with its row counts and checks; the scratch is removed on exit if it still exists.
        ``defer_integrity``: an engine whose proof of the loaded data is a check of its own
        (SQLite's integrity_check) may leave it running (``pending_integrity``); the caller
        then calls settle_scratch() before it trusts the scratch.
        """

    def settle_scratch(self, scratch: ScratchDatabase, quiesce=None) -> bool:
        """Join what a deferred load left running (default: nothing; the load proved the data).

        Raises VerificationFailed when the scratch cannot be used; returns True when its
        content was rebuilt to be used (``quiesce`` is called first, to close every
        connection to it), so whatever was read from it must be read again."""
        return False

    @classmethod
    def tables_in_file(cls, path) -> set[str] | None:
        """The table names of ``path`` when it is a database file in this engine's own file
        format, read without loading it and without running anything it holds; None when it
        is not one (or cannot be read). Restore asks every engine, whatever the live
        database's, to tell a Flask-era database file from a backup. Engines whose databases
        are not single files always answer None.
        """
        return None

    # Whether the scratch stays readable, unchanged, while swap_in() runs (SQLite: the swap
    # only reads it). Then restore validates the scratch during the swap instead of the
    # live database after it. Not on PostgreSQL and MariaDB, whose swap moves the scratch.
    scratch_readable_during_swap = False

    def prepare_swap(self, scratch: str) -> None:
        """Whatever swap_in() would otherwise do to the scratch itself, done beforehand (default: nothing)."""
        return None

    @abstractmethod
    def swap_in(self, scratch: str) -> None:
        """Replace the live database with the scratch ``scratch``, atomically: an interruption
        at any moment leaves either the old database or the new one, never a mix."""

    @abstractmethod
    def swap_description(self) -> str:
        """How swap_in() replaces the live database, in words, for the restore's report."""

    @abstractmethod
    def drop_swap_leftovers(self) -> list[str]:
        """Remove what an interrupted swap_in() of this database left behind (called with the
        lock held); the names removed."""

    def integrity_after_swap(self) -> list[str]:
        """The engine's full integrity check of the live database, run after a restore's swap.

        The lines reporting damage; none when the database is sound (or the engine has no
        such check beyond what loading the scratch proved).
        """
        return []

    def integrity_of_scratch(self, scratch: str) -> list[str]:
        """The same check, of the scratch while swap_in() copies it: only for engines whose
        swap makes the live database an exact copy of the scratch (scratch_readable_during_swap)."""
        raise NotImplementedError(f"{self.display_name} does not check the scratch during the swap")

    # --- monitoring and validation ---------------------------------------
    # (statistics: dbstats, /health/, the dashboard; validation's engine checks)

    # Duplicate search on an indexed column: True when index probes beat GROUP BY ... HAVING.
    duplicates_by_index_probe = False

    def constraints_built_by_load(self) -> set[tuple[str, str, tuple[str, ...], str]]:
        """The constraints a restore's load has just built from the rows, and so checked, as
        (table, "unique", sorted columns, "") or (table, "foreign_key", (column,), referenced
        table): restore's validation of that scratch does not run the rules they enforce
        (validation.rules.Rule.enforced_by). Asked only of a freshly loaded scratch.
        Default: none. SQLite's rebuild copies rows with checks off and a file used as it came
        carries its indexes; mariadb-dump's script turns unique and foreign key checks off
        while it loads."""
        return set()

    def grouping_in_key_order(self) -> AbstractContextManager:
        """Around the count of duplicates of a unique field's plain columns (validation): what
        makes the engine group the rows in their index's order rather than hash them, where
        that is faster (default: nothing; PostgreSQL turns hash aggregation off)."""
        return nullcontext()

    @abstractmethod
    def database_size(self) -> dict:
        """The database's size as the engine knows it, in integer bytes: at least
        ``total_bytes``; SQLite adds ``file_bytes``, ``wal_bytes`` and its page accounting
        (``page_size``, ``page_count``, ``free_pages``)."""

    def table_sizes(self, tables: list[str]) -> dict[str, int] | None:
        """Bytes per table (with its indexes) for these tables; None when the engine cannot
        tell cheaply (SQLite)."""
        return None

    def estimated_row_counts(self, tables: list[str]) -> dict[str, int] | None:
        """The server's own row estimates per table, free where COUNT(*) is not; None when
        the engine keeps none (or not for every table)."""
        return None

    def server_connections(self) -> int | None:
        """Connections open on the database server; None for an engine without a server."""
        return None

    def pool_stats(self) -> dict | None:
        """Statistics of the connection pool Django uses for this database, as integers;
        None when there is no pool (the default everywhere but PostgreSQL with pooling on)."""
        return None

    def performance_extras(self) -> dict:
        """Engine-specific figures beside the latencies (SQLite ``free_pages``, PostgreSQL
        ``cache_hit_ratio``); {} when the engine has none."""
        return {}

    def indexes_and_constraints(self, table: str) -> tuple[list[list[str]], set[str]]:
        """The column lists of the table's indexes and the names of its indexes and constraints.

        The default asks Django's introspection; SQLite reads its own catalogue instead."""
        with self.connection.cursor() as cursor:
            found = self.connection.introspection.get_constraints(cursor, table)
        indexes = [
            info["columns"]
            for info in found.values()
            if info.get("columns") and (info.get("index") or info.get("unique") or info.get("primary_key"))
        ]
        return indexes, set(found)

    @abstractmethod
    def integrity_problems(
        self,
        covered_fk_tables: set[str] | frozenset = frozenset(),
        deep: bool = False,
        checks_covered: dict[str, set[str]] | None = None,
    ) -> list[dict]:
        """The engine's own integrity checks of the live database, as validation issues (dicts).

        ``deep``: the expensive ones too. Foreign-key failures in ``covered_fk_tables`` and
        CHECK failures in ``checks_covered`` are left out: the model rules report them.
        """

    @abstractmethod
    def foreign_schema_objects(self) -> list[dict]:
        """Triggers, views, functions, procedures (and the like) in the live database.

        mcmanager's migrations create none of them on any engine, so each one found was
        put there by someone else and runs (or answers queries) with the application's
        rights. Each is a dict: ``kind`` ("trigger", "view", ...), ``name``, ``table`` (the
        table it belongs to, or ""), ``drop`` (the statement that removes it, quoted).
        """

    @abstractmethod
    def shared_between_connections(self) -> bool:
        """Whether another connection with the same settings sees this same database.

        Validation runs its queries side by side, each worker thread on its own connection,
        only where this holds. False for a database private to the connection that made it
        (SQLite's in-memory database); True for a file or a server.
        """

    # --- maintenance --------------------------------------------------------

    @abstractmethod
    def maintain(self, *, analyze: bool, vacuum: bool, reindex: bool, dry_run: bool) -> list[str]:
        """Run (or with ``dry_run`` only list) the housekeeping that pays on this engine; one
        line per step. The caller (dbtools.maintenance) holds the backup lock."""

    @abstractmethod
    def maintenance_advice(self) -> list[str]:
        """Lines recommending ``maintain``, only where a figure says it would pay; [] otherwise."""

    def salvage(self, source: Path | None, output: Path, migrate: Callable[[Path], None]) -> SalvageResult:
        """Read every readable row of the damaged database ``source`` (None: the live one's)
        into the new database ``output``, built empty by ``migrate(path)``; the rows a rule
        refuses go to ``output``.set-aside.jsonl. The damaged database is never written.

        Only engines whose database is a file salvage; the others say so (CouldNotRun).
        """
        raise CouldNotRun(f"salvage works on SQLite files; database '{self.alias}' is {self.vendor}")

    def compare_salvage(
        self, salvaged: Path, load_backup: Callable[[], AbstractContextManager[ScratchDatabase]]
    ) -> list[TableComparison]:
        """Rows only in the salvage, only in the backup, and differing, per data table (by id).

        ``load_backup()`` loads the backup (after restore's checks) into a scratch.
        """
        raise CouldNotRun(f"salvage compares SQLite files; database '{self.alias}' is {self.display_name}")

    # --- lock -----------------------------------------------------------------

    @abstractmethod
    def lock(self, holder: str, private_directory: Callable[[], Path | None]) -> AbstractContextManager[str]:
        """This database's backup/restore lock, held for the ``with`` block (yields ``holder``).

        Raises LockHeld at once (never waits), naming the holder, when another process holds
        it. Keyed on the database itself, not on how the settings spell its address; dies
        with its holder. ``holder`` describes this process to others; an engine with no
        per-connection label others can read leaves it in ``private_directory()`` (a 0700
        directory of this user, or None).
        """

    # --- demo data (bulk loading) -------------------------------------------
    # dbtools.demo (``generate_demo_data``) and dbtools.legacy (``import_legacy``) write
    # many rows with explicit ids through dbtools.demo.writer.BulkWriter, which calls these.

    # The DB-API driver's parameter mark in raw SQL ("?" for sqlite3, "%s" for psycopg and mysqlclient).
    bulk_param_mark = "%s"
    # What ends a "YYYY-MM-DD HH:MM:SS" timestamp literal of UTC for the engine's datetime
    # columns ("+00" where they hold a time zone, PostgreSQL's timestamptz).
    bulk_timestamp_suffix = ""
    # Whether insert_demo_users() and insert_demo_servers() compute the rows inside the
    # database (SQLite). Otherwise dbtools.demo builds them in Python and bulk_inserts them.
    demo_rows_in_database = False

    def bulk_insert(self, table: str, columns: list[str], rows: list[tuple]) -> None:
        """Insert ``rows`` (tuples in ``columns``' order, values as the driver binds them) into
        ``table`` the fastest way the engine offers, in the current transaction. By default one
        ``INSERT`` run by the raw DB-API cursor's ``executemany``."""
        qn = self.connection.ops.quote_name
        names = ", ".join(qn(c) for c in columns)
        marks = ", ".join([self.bulk_param_mark] * len(columns))
        self.connection.ensure_connection()
        raw = self.connection.connection.cursor()
        try:
            raw.executemany(f"INSERT INTO {qn(table)} ({names}) VALUES ({marks})", rows)
        finally:
            raw.close()

    @contextmanager
    def bulk_load_table(self, table: str):
        """Around the load of one table's rows (every batch). Nothing by default: the caller
        commits each batch. SQLite: one transaction, secondary indexes rebuilt once at the end."""
        yield

    @contextmanager
    def bulk_load_session(self):
        """Around a whole bulk load. Yields whether the engine stopped enforcing CHECK constraints
        and foreign keys per row: then the caller must check each batch itself (set-based) before
        it commits. By default nothing changes and it yields False. SQLite: True."""
        yield False

    def reset_sequences(self, models) -> None:
        """After rows with explicit ids: the next id the database hands out follows the highest.
        Django knows which engines keep sequences apart from the tables (PostgreSQL); on the
        others there is nothing to do."""
        statements = self.connection.ops.sequence_reset_sql(no_style(), models)
        if statements:
            with transaction.atomic(using=self.alias), self.connection.cursor() as cursor:
                for sql in statements:
                    cursor.execute(sql)

    def insert_demo_users(self, writer, User, rng, clock, start: int, total: int, batch_size: int, progress) -> None:
        """Only where ``demo_rows_in_database``: ``total`` demo users from id ``start``, computed by the
        database from ``rng``'s draws, ``batch_size`` rows at a time, each batch ``writer.verify()``-ed
        inside ``writer.loading(User)``; ``progress("users", done, total)`` after each."""
        raise NotImplementedError

    def insert_demo_servers(
        self, writer, Server, rng, clock, start: int, total: int, batch_size: int, progress, owner_ids, free
    ) -> int:
        """Only where ``demo_rows_in_database``: ``total`` demo servers from id ``start`` owned by
        ``owner_ids``, the Running/Starting ones each on one of the ``free`` ports, as
        insert_demo_users() does it; returns how many are Running or Starting."""
        raise NotImplementedError

    # --- databases and tools (benchmarks) -----------------------------------
    # bench/ times our commands against the engine's own tools and builds its databases
    # with these, so it needs no vendor knowledge of its own.

    def tool_command(self, tool: str) -> tuple[list[str], dict[str, str]]:
        """The argv and environment with which the engine's command-line ``tool`` (``psql``,
        ``pg_dump``, ``mariadb``, ``mariadb-dump``, ``sqlite3``...) reaches this database's server
        as the application does (host, port, user, TLS); the password only in the environment.
        The database itself is not named: the caller gives it as the tool expects."""
        return [tool], dict(os.environ)

    @abstractmethod
    def create_database(self, name: str | None = None) -> None:
        """Create the empty database ``name`` (default: this alias's) on the server. SQLite: the
        file is created by the first connection."""

    @abstractmethod
    def drop_database(self, name: str | None = None) -> None:
        """Drop the database ``name`` (default: this alias's) if it exists, whoever is connected."""

    # --- restore speed (issue 16: restore as fast as the engine's tools) ----

    # Whether restore validates the scratch, while prepare_swap() runs, instead of the live
    # database after the swap: for engines whose swap_in() moves the scratch whole, its
    # content unchanged, under the live name (PostgreSQL, MariaDB). The report is stored
    # as the live database's, as with scratch_readable_during_swap.
    validate_scratch_before_swap = False

    def finish_swap(self) -> None:
        """Wait for what swap_in() left running in the background: dropping the replaced
        database (PostgreSQL, MariaDB), which is off the restore's critical path (it runs
        while the restored database is validated). Called once the restore is done; raises
        nothing (a replaced database left behind is dropped by the next restore's
        drop_swap_leftovers). The default joins the threads swap_in() put in ``_dropping``."""
        for dropping in getattr(self, "_dropping", []):
            dropping.join()
        self._dropping = []
