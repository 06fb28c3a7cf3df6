"""Run SQL through each vendor's own command-line client, as a non-Django user would."""

import os
import subprocess

from django.db import connection


def sql_literal(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "'1'" if value else "'0'"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def insert_sql(table: str, row: dict) -> str:
    columns = ", ".join(connection.ops.quote_name(c) for c in row)
    values = ", ".join(sql_literal(v) for v in row.values())
    return f"INSERT INTO {table} ({columns}) VALUES ({values});"


def client_command(sql: str) -> tuple[list[str], dict]:
    """The command line and environment that run ``sql`` with the vendor's own client."""
    s = connection.settings_dict
    env = dict(os.environ)
    if connection.vendor == "sqlite":
        # The sqlite3 shell leaves foreign keys off unless asked; a careful operator (and
        # this test) turns them on. Check constraints are always on.
        return ["sqlite3", "-bail", "-cmd", ".timeout 5000", s["NAME"], "PRAGMA foreign_keys=ON; " + sql], env
    if connection.vendor == "postgresql":
        if s.get("PASSWORD"):
            env["PGPASSWORD"] = s["PASSWORD"]
        cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", s["HOST"] or "127.0.0.1", "-d", s["NAME"]]
        if s.get("PORT"):
            cmd += ["-p", str(s["PORT"])]
        if s.get("USER"):
            cmd += ["-U", s["USER"]]
        return [*cmd, "-c", sql], env
    if connection.vendor == "mysql":
        env["MYSQL_PWD"] = s.get("PASSWORD") or ""
        cmd = ["mariadb", "-h", s["HOST"] or "127.0.0.1", "-u", s["USER"] or "root", s["NAME"]]
        if s.get("PORT"):
            cmd += ["-P", str(s["PORT"])]
        return [*cmd, "-e", sql], env
    raise AssertionError(f"no client for {connection.vendor}")


def run_client(sql: str) -> subprocess.CompletedProcess:
    cmd, env = client_command(sql)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
