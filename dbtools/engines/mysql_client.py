"""MariaDB's connections and client tools: the ``mariadb``/``mariadb-dump`` command lines
(TLS as the application's connection has it, the password never on argv), MySQLdb
connections of their own, table listing and counting, the identifier quoting and the
tables a dump may hold. Mixed into ``MySQLEngine`` (``dbtools.engines.mysql``)."""

import os
import shutil
import subprocess

from django.apps import apps

from mcmanager import mariadb_tls

from ..errors import CouldNotRun
from ..formatting import first_line as first_text_line


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


class MySQLClientMixin:
    """``MySQLEngine``'s client commands and own connections (methods only; uses the
    Engine's ``settings_dict``)."""

    # The dump: `mariadb-dump --single-transaction` of this one database, naming no
    # database (no CREATE DATABASE, no USE) so it loads into any database. django-dbbackup's
    # MysqlDumpConnector is not used: it puts the password on the command line (visible
    # in `ps`), buffers the whole dump in a spooled file, and has no --single-transaction.
    # The password goes through MYSQL_PWD, never argv.

    def _client_command(self, tool: str, init_command: str = "") -> tuple[list[str], dict]:

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
        if tool == "mariadb":
            # A required TLS is checked by the session itself (mariadb-dump has no --init-command).
            init = mariadb_tls.init_command(self._tls_options(), init_command)
            if init:
                args.append(f"--init-command={init}")
        elif init_command:
            raise ValueError(f"{tool} takes no --init-command")
        env = {k: v for k, v in os.environ.items() if k != "MYSQL_PWD"}
        if s.get("PASSWORD"):
            env["MYSQL_PWD"] = str(s["PASSWORD"])
        return args, env

    def _tls_options(self) -> dict:
        """OPTIONS' TLS as mysqlclient takes it (settings.py has normalized it already; this
        also covers a settings_dict written by hand, as the tests do)."""
        return mariadb_tls.normalize(self.settings_dict.get("OPTIONS") or {})

    def _tls_arguments(self) -> list[str]:
        """The client tools' TLS flags from DATABASE_URL's (``mcmanager.mariadb_tls``), so a
        dump or a load is never less private than the application's own connection."""
        return mariadb_tls.client_flags(self._tls_options())

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
        options = self._tls_options()
        for name in ("ssl", "ssl_mode"):  # TLS as the application's connection has it
            if options.get(name):
                kwargs[name] = options[name]
        if mariadb_tls.requires_tls(options):
            kwargs["init_command"] = mariadb_tls.init_command(options)
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

    def _loader_command(self, database: str) -> tuple[list[str], dict]:
        """The ``mariadb`` client that loads a dump into ``database``: --sandbox, always.

        A client without --sandbox (MariaDB before 10.5.25, 10.6.18, 10.11.8, 11.0.6, or
        MySQL's) is refused: the statement whitelist is the first guard, not the only one.
        """

        # The session's sql_mode as mariadb-dump sets it, whatever the server's global one:
        # with NO_BACKSLASH_ESCAPES or ANSI_QUOTES there, the server would read the dump's
        # strings otherwise than dumpcheck does.
        cmd, env = self._client_command("mariadb", "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'")
        if not has_sandbox(cmd[0]):
            raise CouldNotRun(
                f"the mariadb client ({cmd[0]}) has no --sandbox option: a dump is never loaded without it; "
                "install MariaDB's client 10.11.8 or newer"
            )
        return [
            *cmd,
            "--sandbox",
            "--batch",
            "--default-character-set=utf8mb4",
            f"--database={database}",
        ], env

    def _server_statement(self, statement: str) -> None:
        """One statement outside any database, by the ``mariadb`` client (MySQLdb always opens one)."""

        cmd, env = self._client_command("mariadb")
        done = subprocess.run([*cmd, "-e", statement], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            why = first_text_line(done.stderr or done.stdout) or f"exit {done.returncode}"
            raise CouldNotRun(f"{statement}: {why}")
