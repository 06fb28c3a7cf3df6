"""PostgreSQL: everything vendor-specific about it."""

import logging
import os
import re
import secrets
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from ..errors import BackupFailed, DatabaseUnreachable, RestoreFailed, VerificationFailed
from ..streams import CHUNK, pid_alive, pump_tool_output, unique_suffix, widen_pipe
from . import locking, pgarchive
from .base import Engine
from .dumpscan import CopyCounter, first_line, run_with_stdin
from .pgarchive import UnsafeArchive
from .results import Check, DumpOutcome, ScratchDatabase, compare_row_counts, expected_tables_check

# libpq's connection options that DATABASE_URL's query may carry, with the environment
# variable each command line tool reads it from (django-dbbackup maps only six of them).
LIBPQ_ENV = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslpassword": "PGSSLPASSWORD",
    "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR",
    "sslsni": "PGSSLSNI",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "channel_binding": "PGCHANNELBINDING",
    "gssencmode": "PGGSSENCMODE",
    "requirepeer": "PGREQUIREPEER",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "passfile": "PGPASSFILE",
    "service": "PGSERVICE",
}


class PostgreSQLEngine(Engine):
    vendor = "postgresql"
    display_name = "PostgreSQL"
    dump_extension = "pgdump"

    # --- identity ---------------------------------------------------------

    def server_version(self) -> str:
        with self.connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            return cursor.fetchone()[0]

    # --- backup -----------------------------------------------------------

    # The dump: `pg_dump --format=custom --compress=0`, streamed through zstd by the caller
    # (pg_dump's own gzip is most of its time). The libpq options of OPTIONS (sslmode,
    # sslrootcert, passfile, service...) go to the tools as their environment variables
    # (LIBPQ_ENV) and to our psycopg connections as keywords; the connection itself is
    # one libpq connection string built by psycopg (make_conninfo quotes every value), in
    # one argv item: django-dbbackup pastes the name into a URL and the command line is
    # split on spaces, so a database named "a b" broke and one named "-x" read as an option.
    # Its create_dump() is not used because it buffers the whole dump in a spooled temp
    # file and cannot share a snapshot, and we stream, check and count while dumping.

    def _libpq_options(self) -> dict[str, str]:
        """The libpq connection options of DATABASE_URL's query (``?sslmode=require&sslrootcert=...``),
        as Django passes them to psycopg: TLS above all. Every connection of ours and every
        tool we start gets the same ones, so a backup is never less private than the app."""
        options = self.settings_dict.get("OPTIONS") or {}
        return {name: str(options[name]) for name in LIBPQ_ENV if options.get(name) not in (None, "")}

    def _pg_command(self, tool: str, dbname: str | None = None) -> tuple[list[str], dict]:
        """``tool`` with the connection arguments; the password only in the environment (PGPASSWORD),
        the libpq options (TLS) in their environment variables (PGSSLMODE, PGSSLROOTCERT, ...)."""
        from psycopg.conninfo import make_conninfo

        s = self.settings_dict
        conninfo = make_conninfo(
            dbname=dbname if dbname is not None else s["NAME"],
            host=s.get("HOST") or None,
            port=str(s["PORT"]) if s.get("PORT") else None,
            user=s.get("USER") or None,
        )
        env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
        env.update({LIBPQ_ENV[name]: value for name, value in self._libpq_options().items()})
        args = [tool, f"--dbname={conninfo}"]
        if s.get("PASSWORD"):
            env["PGPASSWORD"] = str(s["PASSWORD"])
        elif s.get("PASSWORD") is None:
            args.append("--no-password")
        return args, env

    def _psycopg_connect(self, dbname: str | None = None, **kwargs):
        import psycopg

        s = self.settings_dict
        return psycopg.connect(
            host=s.get("HOST") or None,
            port=s.get("PORT") or None,
            user=s.get("USER") or None,
            password=s.get("PASSWORD") or None,
            dbname=dbname or s["NAME"],
            connect_timeout=10,
            **{**self._libpq_options(), **kwargs},
        )

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
            raise DatabaseUnreachable(
                f"database '{self.alias}' is unreachable: {str(exc).strip().splitlines()[0]}"
            ) from exc
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
                    raise BackupFailed(f"pg_dump failed: {first_line(dump_err)}")
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
                        else f"pg_restore failed: {first_line(parse_err) or result.get('scan_error')}",
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
        wanted = pgarchive.check_entries(entries, pgarchive.our_tables())
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
                "pg_restore read the whole archive" if ok else f"pg_restore failed: {first_line(err)}",
            )
        return [contents, check], counter.counts if ok else {}

    @contextmanager
    def load_into_scratch(self, source, workdir=None, level: str = "full"):
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

    # --- restore ----------------------------------------------------------

    @staticmethod
    def looks_like_dump(head: bytes) -> bool:
        """Whether the first bytes of an uncompressed dump are a pg_dump custom-format archive's."""
        return head.startswith(b"PGDMP")

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
            **self._libpq_options(),
        )

    validate_scratch_before_swap = True

    def prepare_swap(self, scratch: str) -> None:
        """ANALYZE the scratch: pg_restore leaves the planner without statistics; gather them
        before the application's first query, not after autovacuum gets round to it (restore
        validates the scratch meanwhile)."""
        with self._psycopg_connect(scratch, autocommit=True) as conn:
            conn.execute("ANALYZE")
        self._prepared = {*getattr(self, "_prepared", ()), scratch}

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
        if scratch not in getattr(self, "_prepared", ()):
            self.prepare_swap(scratch)
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
        # (2 s of a 100,000-server restore): on a thread, while the restore validates.
        dropping = threading.Thread(target=self._drop_replaced, args=(old,), name="drop-replaced")
        dropping.start()
        self._dropping = [*getattr(self, "_dropping", []), dropping]

    def _drop_replaced(self, old: str) -> None:
        import psycopg
        from psycopg import sql

        try:
            with self._maintenance_connection() as conn:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(old)))
        except psycopg.Error as exc:
            logging.getLogger("dbtools.restore").warning("the replaced database %s was left behind: %s", old, exc)

    def finish_swap(self) -> None:
        for dropping in getattr(self, "_dropping", []):
            dropping.join()
        self._dropping = []

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

    # --- maintenance --------------------------------------------------------

    def maintain(self, *, analyze: bool, vacuum: bool, reindex: bool, dry_run: bool) -> list[str]:
        """VACUUM (ANALYZE) (or ANALYZE alone), REINDEX INDEX CONCURRENTLY of the invalid indexes
        of this schema (a failed CREATE INDEX CONCURRENTLY leaves them). Runs in autocommit:
        neither VACUUM nor a concurrent reindex can run inside a transaction."""
        from psycopg import sql

        steps: list[str] = []
        statements = []
        if vacuum:
            statements.append(sql.SQL("VACUUM (ANALYZE)" if analyze else "VACUUM"))
        elif analyze:
            statements.append(sql.SQL("ANALYZE"))
        with self.connection.cursor() as cursor:
            if reindex:
                cursor.execute(
                    "SELECT n.nspname, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE NOT i.indisvalid AND n.nspname = current_schema() ORDER BY c.relname"
                )
                invalid = cursor.fetchall()
                if not invalid:
                    steps.append("REINDEX skipped: no invalid index")
                statements += [
                    sql.SQL("REINDEX INDEX CONCURRENTLY {}").format(sql.Identifier(schema, name))
                    for schema, name in invalid
                ]
            raw = self.connection.connection
            for statement in statements:
                steps.append(statement.as_string(raw))
                if not dry_run:
                    cursor.execute(statement.as_string(raw))
        return steps

    def maintenance_advice(self) -> list[str]:
        """Dead tuples (over 20% of a table's live rows), statistics older than the data (over
        10% of the rows changed since ANALYZE), invalid indexes: what maintain would fix."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT relname, n_dead_tup, n_mod_since_analyze, n_live_tup FROM pg_stat_user_tables "
                "WHERE schemaname = current_schema() ORDER BY relname"
            )
            tables = cursor.fetchall()
            cursor.execute(
                "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE NOT i.indisvalid AND c.relnamespace = current_schema()::regnamespace"
            )
            invalid = cursor.fetchone()[0]
        dead = [t for t, n_dead, _, live in tables if n_dead > 1000 and n_dead > 0.2 * live]
        stale = [t for t, _, changed, live in tables if changed > 1000 and changed > 0.1 * live]
        advice = []
        if dead:
            advice.append(f"dead rows in {', '.join(dead)}: python manage.py maintain --vacuum")
        if stale:
            advice.append(f"statistics older than the data in {', '.join(stale)}: python manage.py maintain --analyze")
        if invalid:
            advice.append(f"{invalid} invalid indexes: python manage.py maintain --reindex")
        return advice

    # --- monitoring and validation ---------------------------------------

    # Duplicate search on an indexed column: a million index probes (about 1.3 s) beat
    # sorting a million strings under the database's collation (about 4 s).
    duplicates_by_index_probe = True

    def database_size(self) -> dict:
        """What the server reports for the whole database (tables, indexes, TOAST)."""
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_database_size(current_database())")
            total = int(cursor.fetchone()[0])
        return {"total_bytes": total}

    def table_sizes(self, tables: list[str]) -> dict[str, int] | None:
        """Bytes per table including its indexes and TOAST (pg_total_relation_size)."""
        if not tables:
            return {}
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                "WHERE c.relkind IN ('r', 'p') AND c.relnamespace = current_schema()::regnamespace "
                "AND c.relname = ANY(%s)",
                [list(tables)],
            )
            return {name: int(size) for name, size in cursor.fetchall()}

    def estimated_row_counts(self, tables: list[str]) -> dict[str, int] | None:
        """The planner's estimate (pg_class.reltuples): free, unlike COUNT(*) on a million rows."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.relname, c.reltuples::bigint FROM pg_class c "
                "WHERE c.relkind IN ('r', 'p') AND c.relnamespace = current_schema()::regnamespace "
                "AND c.relname = ANY(%s)",
                [list(tables)],
            )
            counts = {name: int(n) for name, n in cursor.fetchall()}
        # reltuples is -1 for a table never vacuumed or analyzed: no estimate then.
        if any(n < 0 for n in counts.values()) or len(counts) != len(tables):
            return None
        return counts

    def server_connections(self) -> int | None:
        """Connections the server has open to this database (pg_stat_activity)."""
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()")
            return int(cursor.fetchone()[0])

    def pool_stats(self) -> dict | None:
        """psycopg pool statistics when Django's PostgreSQL pooling is on, else None."""
        pool = getattr(self.connection, "pool", None)
        if pool is None:
            return None
        return {key: int(value) for key, value in pool.get_stats().items()}

    def performance_extras(self) -> dict:
        """The buffer cache hit ratio of this database since the statistics were reset."""
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT blks_hit, blks_read FROM pg_stat_database WHERE datname = current_database()")
            row = cursor.fetchone()
        hit, read = (int(row[0] or 0), int(row[1] or 0)) if row else (0, 0)
        return {"cache_hit_ratio": round(hit / (hit + read), 4) if hit + read else None}

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
        """Invalid indexes (a failed CREATE INDEX CONCURRENTLY leaves one behind) in this schema."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT t.relname, i.relname FROM pg_index x "
                "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
                "WHERE NOT x.indisvalid AND t.relnamespace = current_schema()::regnamespace "
                "ORDER BY t.relname, i.relname"
            )
            rows = cursor.fetchall()
        return [
            {
                "table": table,
                "rule": "postgresql_invalid_index",
                "count": 1,
                "samples": [index],
                "message": f"index {index} on {table} is invalid: PostgreSQL does not use or maintain it",
                "fix": f"REINDEX INDEX {index}; (or drop it and create it again)",
            }
            for table, index in rows
        ]

    def foreign_schema_objects(self) -> list[dict]:
        """User triggers, views, materialized views, rules and routines of the current schema.

        Not the internal triggers of foreign keys, and not the functions of extensions
        (pg_depend 'e'): those come with the extension, not from a person.
        """
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT 'trigger', t.tgname, c.relname, '' FROM pg_trigger t "
                "JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace "
                "UNION ALL SELECT 'view', viewname, '', '' FROM pg_views WHERE schemaname = current_schema() "
                "UNION ALL SELECT 'materialized view', matviewname, '', '' FROM pg_matviews "
                "WHERE schemaname = current_schema() "
                "UNION ALL SELECT 'rule', rulename, tablename, '' FROM pg_rules WHERE schemaname = current_schema() "
                "UNION ALL SELECT CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' "
                "ELSE 'function' END, p.proname, '', p.oid::regprocedure::text FROM pg_proc p "
                "WHERE p.pronamespace = current_schema()::regnamespace AND NOT EXISTS ("
                "SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid "
                "AND d.deptype = 'e') "
                "ORDER BY 1, 2"
            )
            rows = cursor.fetchall()

        def quoted(name: str) -> str:
            return '"' + name.replace('"', '""') + '"'

        found = []
        for kind, name, table, signature in rows:
            if kind in ("trigger", "rule"):
                drop = f"DROP {kind.upper()} {quoted(name)} ON {quoted(table)}"
            elif signature:  # regprocedure's text: quoted as needed, with the argument types
                drop = f"DROP {kind.upper()} {signature}"
            else:
                drop = f"DROP {kind.upper()} {quoted(name)}"
            found.append({"kind": kind, "name": name, "table": table, "drop": drop})
        return found

    # --- validation (dbtools.validation) -----------------------------------

    def shared_between_connections(self) -> bool:
        """True: every connection reaches the same database on the server."""
        return True

    # --- restore side (dbtools.restore) ----------------------------------------

    @classmethod
    def tables_in_file(cls, path) -> set[str] | None:
        """None: a PostgreSQL database lives on its server, never in a file (its dumps are archives, not databases)."""
        return None

    # --- demo data (bulk loading) -------------------------------------------

    # Django's datetime columns are timestamptz: the demo data's UTC times say so.
    bulk_timestamp_suffix = "+00"

    def bulk_insert(self, table: str, columns: list[str], rows: list[tuple]) -> None:
        """COPY ... FROM STDIN, row by row through psycopg's copy (several times executemany's speed)."""
        qn = self.connection.ops.quote_name
        names = ", ".join(qn(c) for c in columns)
        self.connection.ensure_connection()
        raw = self.connection.connection.cursor()
        try:
            with raw.copy(f"COPY {qn(table)} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        finally:
            raw.close()

    # --- databases and tools (benchmarks) -----------------------------------

    def tool_command(self, tool: str) -> tuple[list[str], dict[str, str]]:
        """Every libpq tool reads the connection from the environment (PGHOST, PGPORT, PGUSER,
        PGPASSWORD and the TLS options of LIBPQ_ENV)."""
        s = self.settings_dict
        env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
        for key, variable in (("HOST", "PGHOST"), ("PORT", "PGPORT"), ("USER", "PGUSER"), ("PASSWORD", "PGPASSWORD")):
            if s.get(key):
                env[variable] = str(s[key])
        env.update({LIBPQ_ENV[name]: value for name, value in self._libpq_options().items()})
        return [tool], env

    def create_database(self, name: str | None = None) -> None:
        from psycopg import sql

        with self._maintenance_connection() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name or self.settings_dict["NAME"])))

    def drop_database(self, name: str | None = None) -> None:
        from psycopg import sql

        with self._maintenance_connection() as conn:
            statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(statement.format(sql.Identifier(name or self.settings_dict["NAME"])))

    # --- lock -------------------------------------------------------------------

    def lock(self, holder: str, private_directory: Callable[[], Path | None]) -> AbstractContextManager[str]:
        """A session advisory lock keyed on the database's name, on a dedicated connection to the
        maintenance database (never blocks the rename of a restore); the holder is named in that
        connection's application_name, which others read from pg_stat_activity."""
        return locking.postgresql_advisory_lock(self, holder)
