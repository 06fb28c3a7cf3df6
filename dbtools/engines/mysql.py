"""MariaDB: everything vendor-specific about it.

``MySQLEngine`` is assembled from mixins along its seams: ``mysql_client`` (client
commands, own connections, quoting), ``mysql_backup`` (the dump and its checks),
``mysql_restore`` (scratch load, atomic swap, leftovers), ``mysql_monitoring``
(maintenance, sizes, statistics, schema objects). What is left here: identity, the
engine's flags, databases for the benchmarks, and the lock.
"""

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from . import locking
from .base import Engine
from .mysql_backup import MySQLBackupMixin
from .mysql_client import MySQLClientMixin, quote
from .mysql_monitoring import MySQLMonitoringMixin
from .mysql_restore import MySQLRestoreMixin


class MySQLEngine(MySQLBackupMixin, MySQLRestoreMixin, MySQLMonitoringMixin, MySQLClientMixin, Engine):
    vendor = "mysql"
    display_name = "MariaDB"
    dump_extension = "sql"

    # --- identity ---------------------------------------------------------

    def server_version(self) -> str:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT VERSION()")
            return cursor.fetchone()[0]

    def server_identity(self) -> str:
        """The server as it names itself: hostname, port and data directory (the same
        through every address that reaches it)."""
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT @@hostname, @@port, @@datadir")
            host, port, datadir = cursor.fetchone()
        return f"{host}:{port}:{datadir}"

    # --- restore (mysql_restore) ---------------------------------------------

    validate_scratch_before_swap = True

    # --- monitoring and validation (mysql_monitoring) ------------------------

    # Duplicate search: GROUP BY ... HAVING COUNT(*) > 1 is the faster plan here.
    duplicates_by_index_probe = False

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
