"""MariaDB backup: the dump (mariadb-dump with row counts of the same snapshot), its
checks, and the live database's row counts. Mixed into ``MySQLEngine``
(``dbtools.engines.mysql``)."""

import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor

from ..errors import BackupFailed, DatabaseUnreachable
from ..streams import CHUNK, pump_tool_output
from .dumpcheck import MariaDBStatementChecker, Refused
from .dumpscan import MariaDBDumpScanner, stderr_first_line
from .mysql_client import dump_tables, quote
from .results import Check, DumpOutcome, expected_tables_check


class MySQLBackupMixin:
    """``MySQLEngine``'s backup side (methods only; uses ``MySQLClientMixin``'s connections
    and ``MySQLRestoreMixin.load_into_scratch`` for a full check)."""

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
                    raise BackupFailed(f"mariadb-dump failed: {stderr_first_line(err)}")
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

    def count_rows(self) -> dict[str, int]:
        """COUNT(*) of every base table of the live database."""
        conn = self._mysqldb_connect()
        try:
            cursor = conn.cursor()
            return self._table_counts(cursor, self._base_tables(cursor))[0]
        finally:
            conn.close()
