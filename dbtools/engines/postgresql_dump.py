"""PostgreSQL's dump side: pg_dump with its archive parsed and counted as it is written, the
quick and full checks of an archive, and the inert load of one into a scratch database.

Methods of PostgreSQLEngine (dbtools.engines.postgresql), which provides the connections
they use (``_pg_command``, ``_psycopg_connect``, ``_maintenance_connection``).
"""

import os
import subprocess
import tempfile
import threading
from contextlib import contextmanager

from ..errors import BackupFailed, DatabaseUnreachable, VerificationFailed
from ..formatting import first_line
from ..streams import CHUNK, pump_tool_output, unique_suffix, widen_pipe
from . import pgarchive, pgarchive_entries
from .dumpscan import CopyCounter, run_with_stdin, stderr_first_line
from .pgarchive import UnsafeArchive
from .results import Check, DumpOutcome, ScratchDatabase, compare_row_counts, expected_tables_check


class PostgreSQLDumpMixin:
    """The backup section of the engine contract, and the restore's load into a scratch database."""

    @staticmethod
    def _snapshot_counts(conn) -> tuple[dict[str, int], dict[str, list[str]]]:
        from psycopg import sql

        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
            )
        ]
        counts = {}
        for table in tables:
            counts[table] = conn.execute(sql.SQL("SELECT COUNT(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
        migrations: dict[str, list[str]] = {}
        if "django_migrations" in counts:
            for app, name in conn.execute("SELECT app, name FROM django_migrations ORDER BY id"):
                migrations.setdefault(app, []).append(name)
        return counts, migrations

    def write_dump(self, out, workdir, *, level: str = "quick", expected_tables=(), check_rows: bool = True):
        """pg_dump into ``out`` while pg_restore parses the same bytes and the rows are counted.

        Row counts and migrations are read in a REPEATABLE READ transaction whose snapshot
        pg_dump imports (--snapshot), so the manifest describes exactly what is in the
        archive. pg_restore turns the archive back into SQL as it arrives; counting the
        COPY lines proves that the whole archive parses and holds every row.
        """

        import psycopg

        try:
            snap_conn = self._psycopg_connect()
        except psycopg.Error as exc:
            raise DatabaseUnreachable(f"database '{self.alias}' is unreachable: {first_line(exc)}") from exc
        outcome = DumpOutcome()
        try:
            snap_conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot = snap_conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            dump_cmd, env = self._pg_command("pg_dump")
            dump_cmd += ["--format=custom", "--compress=0", f"--snapshot={snapshot}"]
            parse_cmd = ["pg_restore", "--file=-"]  # no --dbname: the SQL script, to stdout
            outcome.tool = subprocess.run(["pg_dump", "--version"], capture_output=True, text=True).stdout.strip()
            with tempfile.TemporaryFile() as dump_err, tempfile.TemporaryFile() as parse_err:
                dump = subprocess.Popen(dump_cmd, stdout=subprocess.PIPE, stderr=dump_err, env=env)
                parse = subprocess.Popen(
                    parse_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=parse_err, env=env
                )
                counter = CopyCounter()
                result: dict = {}

                def scan() -> None:
                    try:
                        while chunk := parse.stdout.read(CHUNK):
                            counter.feed(chunk)
                    except BaseException as exc:
                        result["scan_error"] = exc

                def count() -> None:
                    try:
                        result["counts"], result["migrations"] = self._snapshot_counts(snap_conn)
                    except BaseException as exc:
                        result["count_error"] = exc

                threads = [threading.Thread(target=scan), threading.Thread(target=count)]
                for t in threads:
                    t.start()
                for pipe in (parse.stdin, parse.stdout):
                    widen_pipe(pipe)
                parse_alive = True

                def tee(chunk: bytes) -> None:
                    nonlocal parse_alive
                    if parse_alive:
                        try:
                            parse.stdin.write(chunk)
                        except BrokenPipeError:
                            parse_alive = False  # its exit status says why

                try:
                    pump_tool_output(dump.stdout, out, tee)
                except BaseException:
                    # A full disk or a signal: stop the tools instead of waiting on full pipes.
                    dump.kill()
                    parse.kill()
                    raise
                finally:
                    if parse_alive:
                        try:
                            parse.stdin.close()
                        except BrokenPipeError:
                            pass
                    dump_rc = dump.wait()
                    parse_rc = parse.wait()
                    for t in threads:
                        t.join()
                if dump_rc != 0:
                    raise BackupFailed(f"pg_dump failed: {stderr_first_line(dump_err)}")
                if "count_error" in result:
                    raise BackupFailed(f"could not count rows in the snapshot: {result['count_error']}")
                outcome.row_counts = result["counts"]
                outcome.migrations = result["migrations"]
                parse_ok = parse_rc == 0 and "scan_error" not in result
                outcome.checks.append(
                    Check(
                        "archive_parses",
                        parse_ok,
                        "pg_restore read the whole archive"
                        if parse_ok
                        else f"pg_restore failed: {stderr_first_line(parse_err) or result.get('scan_error')}",
                    )
                )
                outcome.checks.append(expected_tables_check(expected_tables, counter.counts))
                outcome.checks.append(compare_row_counts(outcome.row_counts, counter.counts))
        finally:
            snap_conn.close()
        return outcome

    @staticmethod
    def inert_archive(stream):
        """Read and check the archive's table of contents before any of it is used.

        Returns the whole archive again (the head read, then the rest of ``stream``) and the
        ``pg_restore --use-list`` text naming the entries to restore. Raises UnsafeArchive
        (one line naming what was found) when an entry is not one of our tables, sequences,
        constraints, indexes or rows, or its SQL is not a shape pg_dump writes for them.
        """

        head, entries = pgarchive.read_head(stream)
        pgarchive.cross_check(head, entries)
        wanted = pgarchive_entries.check_entries(entries, pgarchive_entries.our_tables())
        return pgarchive.Replay(head, stream), "".join(f"{dump_id};\n" for dump_id in wanted)

    def check_dump(self, stream, *, level: str = "quick", manifest=None, workdir=None):
        """Checks of an archive read from ``stream`` (uncompressed). Returns (checks, row counts).

        quick: the table of contents holds only our kinds of entries (inert_archive), then
        pg_restore parses the whole archive into SQL text (nothing runs) and its COPY rows
        are counted; full: the archive is restored into a scratch database (inertly, see
        load_into_scratch) and its tables counted there.
        """

        if level == "full":
            with self.load_into_scratch(stream) as scratch:
                return scratch.checks, scratch.row_counts
        try:
            stream, listing = self.inert_archive(stream)
        except UnsafeArchive as exc:
            return [Check("contents", False, str(exc))], {}
        contents = Check(
            "contents",
            True,
            f"{listing.count(chr(10))} entries, each a table, sequence, constraint, index or rows of mcmanager's",
        )
        with tempfile.TemporaryFile() as err:
            parse = subprocess.Popen(
                ["pg_restore", "--file=-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
            )
            counter = CopyCounter()

            def scan() -> None:
                while chunk := parse.stdout.read(CHUNK):
                    counter.feed(chunk)

            scanner = threading.Thread(target=scan)
            scanner.start()
            try:
                while chunk := stream.read(CHUNK):
                    parse.stdin.write(chunk)
            except BrokenPipeError:
                pass
            finally:
                try:
                    parse.stdin.close()
                except BrokenPipeError:
                    pass
                rc = parse.wait()
                scanner.join()
            ok = rc == 0
            check = Check(
                "archive_parses",
                ok,
                "pg_restore read the whole archive" if ok else f"pg_restore failed: {stderr_first_line(err)}",
            )
        return [contents, check], counter.counts if ok else {}

    @contextmanager
    def load_into_scratch(self, source, workdir=None, level: str = "full", defer_integrity: bool = False):
        """Restore the archive (a path or an uncompressed stream) into a new, uniquely-named database.

        Inert: the table of contents is checked first (inert_archive; a refused archive
        creates no scratch database), then pg_restore restores only the accepted entries
        (--use-list), with no owners, privileges, comments, security labels, publications,
        subscriptions, tablespaces or access methods. Yields a ScratchDatabase (``name`` is
        the database name) with its row counts; the database is dropped on exit (if it
        still exists: a restore may have renamed it).
        """

        from psycopg import sql

        opened = None
        if isinstance(source, str | os.PathLike):
            source = opened = open(source, "rb")  # noqa: SIM115 (closed below)
        try:
            archive, listing = self.inert_archive(source)
            name = f"{self.settings_dict['NAME'][:24]}_scratch_{unique_suffix()}"
            with self._maintenance_connection() as conn:
                # template0: nothing in the scratch but what the archive brings, whatever
                # an administrator added to template1 (functions, event triggers).
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
            try:
                with tempfile.NamedTemporaryFile("w", prefix="mcmanager-", suffix=".list") as use_list:
                    use_list.write(listing)
                    use_list.flush()
                    cmd, env = self._pg_command("pg_restore", dbname=name)
                    cmd += [
                        f"--use-list={use_list.name}",
                        "--no-owner",
                        "--no-privileges",
                        "--no-comments",
                        "--no-security-labels",
                        "--no-publications",
                        "--no-subscriptions",
                        "--no-tablespaces",
                        "--no-table-access-method",
                        "--exit-on-error",
                        "--single-transaction",
                    ]
                    rc, message = run_with_stdin(cmd, env, archive)
                if rc != 0:
                    raise VerificationFailed(f"the archive does not restore: {message}")
                with self._psycopg_connect(name) as conn:
                    counts, _ = self._snapshot_counts(conn)
                yield ScratchDatabase(
                    name=name,
                    row_counts=counts,
                    checks=[
                        Check("contents", True, "only tables, sequences, constraints, indexes and rows of ours"),
                        Check("restore", True, "pg_restore into a scratch database"),
                    ],
                )
            finally:
                with self._maintenance_connection() as conn:
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        finally:
            if opened is not None:
                opened.close()

    def count_rows(self) -> dict[str, int]:
        """COUNT(*) of every table of the live database (current schema)."""
        with self._psycopg_connect() as conn:
            return self._snapshot_counts(conn)[0]
