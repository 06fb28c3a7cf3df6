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
  reachability, which database a backup is of, recognising its own dump files;
- backup: dump a consistent snapshot, check a dump's structure, count rows;
- restore: load a dump into a scratch database (also used by ``--verify full`` and
  ``restore --check``), replace the live database atomically with it;
- monitoring and validation: sizes, connections, statistics, the engine's own
  integrity checks, objects in the schema that are not ours;
- maintenance: the per-engine SQL of ``manage.py maintain`` and when it would pay; the
  salvage of a damaged database;
- lock: one backup or restore per database at a time.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from django.db import connections

from ..errors import CouldNotRun, DatabaseUnreachable
from ..formatting import first_line
from .results import Check, DumpOutcome, SalvageResult, ScratchDatabase, TableComparison


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
    def load_into_scratch(self, source, workdir=None, level: str = "full") -> AbstractContextManager[ScratchDatabase]:
        """Load a dump (a path or an uncompressed stream) into a new, uniquely-named scratch
        database, inertly (nothing but our tables, rows, indexes and constraints is created;
        anything else is refused with one line naming it).

        A context manager yielding a ScratchDatabase (its ``name`` is what swap_in takes)
        with its row counts and checks; the scratch is removed on exit if it still exists.
        """

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

    # Duplicate search on an indexed column: True when index probes beat GROUP BY ... HAVING.
    duplicates_by_index_probe = False

    @abstractmethod
    def database_size(self) -> dict:
        """The database's size as the engine accounts it; ``total_bytes`` at least."""

    def table_sizes(self, tables: list[str]) -> dict[str, int] | None:
        """Bytes per table (indexes included); None when the engine cannot tell cheaply."""
        return None

    def estimated_row_counts(self, tables: list[str]) -> dict[str, int] | None:
        """Row counts the engine keeps as statistics (no scan); None when it keeps none."""
        return None

    def server_connections(self) -> int | None:
        """Connections the server has open; None without a server."""
        return None

    def pool_stats(self) -> dict | None:
        """Connection pool statistics when Django pools this engine's connections, else None."""
        return None

    def performance_extras(self) -> dict:
        """Engine-specific figures for the statistics page (cache hit ratio, free pages...)."""
        return {}

    @abstractmethod
    def indexes_and_constraints(self, table: str) -> tuple[list[list[str]], set[str]]:
        """The column lists of the table's indexes and the names of its indexes and constraints."""

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
