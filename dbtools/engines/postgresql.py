"""PostgreSQL: everything vendor-specific about it.

The engine class holds the identity, the connections (libpq options, tool command lines,
psycopg and maintenance connections) and the small sections of the contract; the larger
ones are its mixins: the dump and its checks (postgresql_dump), the swap of a restore
(postgresql_swap), maintenance, monitoring and validation queries (postgresql_monitoring).
"""

import os
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from django.db import transaction

from . import locking
from .base import Engine
from .postgresql_dump import PostgreSQLDumpMixin
from .postgresql_monitoring import PostgreSQLMonitoringMixin
from .postgresql_swap import PostgreSQLSwapMixin

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


class PostgreSQLEngine(PostgreSQLDumpMixin, PostgreSQLSwapMixin, PostgreSQLMonitoringMixin, Engine):
    vendor = "postgresql"
    display_name = "PostgreSQL"
    dump_extension = "pgdump"

    # --- identity ---------------------------------------------------------

    def server_version(self) -> str:
        with self.connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            return cursor.fetchone()[0]

    def server_identity(self) -> str:
        """The cluster's system identifier (pg_control_system()): one per initdb, the same
        through every address of the server, another for another server."""
        with transaction.atomic(using=self.alias), self.connection.cursor() as cursor:
            cursor.execute("SELECT system_identifier FROM pg_control_system()")
            return f"system_identifier {cursor.fetchone()[0]}"

    # --- connections (the dump itself: postgresql_dump) --------------------

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

    # --- monitoring and validation ---------------------------------------

    # Duplicate search on an indexed column: a million index probes (about 1.3 s) beat
    # sorting a million strings under the database's collation (about 4 s).
    duplicates_by_index_probe = True

    def constraints_built_by_load(self) -> set[tuple[str, str, tuple[str, ...], str]]:
        """pg_restore builds every unique index and adds every foreign key after the data
        (pg_dump's post-data section); each fails on a row that breaks it. So on the scratch
        it has just loaded, a valid, plain unique index (no predicate, no expression) and a
        validated single-column foreign key are proven for every row."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.relname, 'unique', ARRAY(SELECT a.attname::text FROM unnest(i.indkey) k "
                "  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k ORDER BY 1), '' "
                "FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND i.indisunique AND i.indisvalid AND i.indisready "
                "AND i.indpred IS NULL AND i.indexprs IS NULL "
                "UNION ALL "
                "SELECT c.relname, 'foreign_key', ARRAY(SELECT a.attname::text FROM unnest(f.conkey) k "
                "  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k), r.relname "
                "FROM pg_constraint f JOIN pg_class c ON c.oid = f.conrelid JOIN pg_class r ON r.oid = f.confrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE f.contype = 'f' AND f.convalidated AND n.nspname = current_schema() "
                "AND cardinality(f.conkey) = 1"
            )
            return {(table, kind, tuple(columns), ref) for table, kind, columns, ref in cursor.fetchall()}

    @contextmanager
    def grouping_in_key_order(self):
        """Hash aggregation off for one count of a unique field's duplicates, in a transaction
        (a savepoint inside the caller's) whose SET LOCAL ends with it: once the table is
        analyzed, the planner prefers hashing a million server names, which spills out of
        work_mem's 4 MiB (0.74 s at 1,000,000 servers), to walking the unique index in
        order (0.31 s; what it chooses by itself on a freshly restored table)."""
        with transaction.atomic(using=self.alias):
            with self.connection.cursor() as cursor:
                cursor.execute("SET LOCAL enable_hashagg = off")
            yield
            with self.connection.cursor() as cursor:
                cursor.execute("SET LOCAL enable_hashagg = DEFAULT")  # the caller's transaction goes on

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
