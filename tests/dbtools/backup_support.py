"""Shared pieces of the backup tests: data, big incompressible rows, scratch databases."""

import base64
import os
import secrets
import tempfile
from pathlib import Path

from django.db import connection, connections

from accounts.models import User
from servers.models import Configuration, Server
from tests.conftest import database_url_for


def make_rows(prefix: str, users: int = 5, servers_each: int = 2) -> None:
    """``users`` users with ``servers_each`` servers each, in bulk."""
    User.objects.bulk_create(
        [User(username=f"{prefix}_u{i}", email=f"{prefix}{i}@example.com", password="!") for i in range(users)]
    )
    owners = list(User.objects.filter(username__startswith=f"{prefix}_u").order_by("id"))
    Server.objects.bulk_create(
        [
            Server(server_name=f"{prefix}_s{i}_{j}", owner=owner, port=20000 + (i * servers_each + j) % 40000)
            for i, owner in enumerate(owners)
            for j in range(servers_each)
        ]
    )


def make_bulk(megabytes: int, prefix: str = "big") -> None:
    """Configuration rows of incompressible text, about ``megabytes`` MB: a backup that takes a moment."""
    Configuration.objects.bulk_create(
        [
            Configuration(key=f"{prefix}.{i}", value=base64.b64encode(os.urandom(768 * 1024)).decode())
            for i in range(megabytes)
        ],
        batch_size=4,
    )


def scratch_leftovers() -> list[str]:
    """Scratch databases (PostgreSQL, MariaDB) or files (SQLite) that a check failed to remove."""

    if connection.vendor == "sqlite":
        return [p.name for p in Path(tempfile.gettempdir()).glob(f".db_scratch_{os.getpid()}_*")]
    name = connection.settings_dict["NAME"][:24]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [f"{name}_scratch_%"])
        else:
            cursor.execute(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s", [f"{name}_scratch_%"]
            )
        return [r[0] for r in cursor.fetchall()]


def closed_port_url(password: str, directory) -> str:
    """A DATABASE_URL of this engine that cannot connect, with a password that must never be printed."""
    if connection.vendor == "sqlite":
        # A directory where the database file should be: SQLite cannot open it.
        return f"sqlite:///{directory}"
    scheme = {"postgresql": "postgres", "mysql": "mysql"}[connection.vendor]
    return f"{scheme}://root:{password}@127.0.0.1:1/nowhere"


def empty_database_url():
    """A new, empty database of this engine (URL, drop function)."""

    if connection.vendor == "sqlite":
        path = os.path.join(tempfile.mkdtemp(prefix="hb-empty-"), "empty.sqlite3")
        return f"sqlite:///{path}", lambda: None
    name = f"hbempty_{os.getpid()}_{secrets.token_hex(3)}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {connection.ops.quote_name(name)}")
    url = database_url_for().rsplit("/", 1)[0] + "/" + name

    def drop() -> None:
        with connections["default"].cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f"DROP DATABASE IF EXISTS {connection.ops.quote_name(name)} WITH (FORCE)")
            else:
                cursor.execute(f"DROP DATABASE IF EXISTS {connection.ops.quote_name(name)}")

    return url, drop
