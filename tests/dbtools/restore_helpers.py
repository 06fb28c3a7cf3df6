"""Shared pieces of the restore tests: data, fingerprints of the live database, bad files."""

import gzip
import hashlib
import json
import os
import sqlite3
from pathlib import Path

from django.db import connection, connections

from accounts.models import User
from servers.models import Configuration, Server

# The tables whose content a restore must bring back exactly.
DATA_TABLES = ("accounts_user", "servers_server", "servers_configuration")


def make_data(prefix: str, users: int = 3, servers_each: int = 2) -> None:
    """A few users, their servers and a configuration entry, all named after ``prefix``."""
    for i in range(users):
        user = User.objects.create_user(f"{prefix}_user{i}", f"{prefix}{i}@example.com", "pw-123456")
        for j in range(servers_each):
            Server.objects.create(server_name=f"{prefix}_srv{i}_{j}", owner=user, port=20000 + i * 10 + j)
    Configuration.objects.create(key=f"{prefix}.motd", value=f"hello from {prefix}")


def table_rows(table: str, alias: str = "default") -> list[tuple]:
    with connections[alias].cursor() as cursor:
        cursor.execute(f"SELECT * FROM {connections[alias].ops.quote_name(table)} ORDER BY 1")
        return [tuple(str(v) for v in row) for row in cursor.fetchall()]


def data_digest(alias: str = "default") -> str:
    """A sha256 over every row of the data tables: equal digests, equal data."""
    digest = hashlib.sha256()
    for table in DATA_TABLES:
        digest.update(table.encode())
        digest.update(json.dumps(table_rows(table, alias)).encode())
    return digest.hexdigest()


def sqlite_file_digest(path: str) -> str:
    """The database file and its WAL, byte for byte (a missing WAL counts as empty)."""
    digest = hashlib.sha256()
    for part in (Path(path), Path(f"{path}-wal")):
        digest.update(part.read_bytes() if part.exists() else b"")
    return digest.hexdigest()


def live_fingerprint() -> tuple:
    """What must not change when a restore is refused.

    SQLite: the file's bytes (connections closed first, so their checkpoint is done
    before and after alike). Every engine: the content of the data tables, the
    applied migrations and the operations log.
    """
    connections.close_all()
    file_digest = sqlite_file_digest(connection.settings_dict["NAME"]) if connection.vendor == "sqlite" else None
    rows = (
        data_digest(),
        len(table_rows("django_migrations")),
        table_rows("dbtools_operationlog"),
    )
    connections.close_all()
    if connection.vendor == "sqlite":
        # Reading must not have changed the file either.
        assert sqlite_file_digest(connection.settings_dict["NAME"]) == file_digest
    return file_digest, rows


def truncated_copy(source: Path, target_dir: Path, size: int | str) -> Path:
    """A copy of a backup (and its manifest) cut to ``size`` bytes ("half" for half)."""
    data = source.read_bytes()
    n = len(data) // 2 if size == "half" else int(size)
    target = target_dir / source.name
    target.write_bytes(data[:n])
    _copy_manifest(source, target)
    return target


def flipped_copy(source: Path, target_dir: Path) -> Path:
    """A copy of a backup (and its manifest) with one byte in the middle flipped."""
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target = target_dir / source.name
    target.write_bytes(bytes(data))
    _copy_manifest(source, target)
    return target


def manifest_path(backup: Path) -> Path:
    from dbtools.manifest import manifest_path as path_of

    return path_of(backup)


def _copy_manifest(source: Path, target: Path) -> None:
    manifest_path(target).write_bytes(manifest_path(source).read_bytes())


def edit_manifest(backup: Path, **changes) -> None:
    """Change fields of a backup's manifest and sign it again with the test's key (through
    write_manifest), so the change is refused, if at all, for what it says, not for a
    broken signature. tamper_manifest() changes a field without signing."""
    from dbtools.manifest import BackupManifest, write_manifest

    data = json.loads(manifest_path(backup).read_text())
    data.update(changes)
    data.pop("signature", None)
    write_manifest(backup, BackupManifest.from_dict(data))


def tamper_manifest(backup: Path, **changes) -> None:
    """Change fields of a backup's manifest and leave its signature as it was (now wrong)."""
    path = manifest_path(backup)
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def text_file(target_dir: Path, name: str) -> Path:
    path = target_dir / name
    path.write_text("This is not a backup.\nJust some notes an operator saved here.\n" * 20)
    return path


def gzip_of_garbage(target_dir: Path, name: str) -> Path:
    path = target_dir / name
    path.write_bytes(gzip.compress(os.urandom(4096)))
    return path


def flask_era_sqlite(target_dir: Path, name: str = "mcmanager.db") -> Path:
    """A database of the Flask application this project replaced: tables user, server, configuration."""
    path = target_dir / name
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE user (id INTEGER PRIMARY KEY, username VARCHAR(80) UNIQUE NOT NULL,
                           email VARCHAR(120), password_hash VARCHAR(128), is_admin BOOLEAN);
        CREATE TABLE server (id INTEGER PRIMARY KEY, server_name VARCHAR(150) UNIQUE NOT NULL,
                             port INTEGER, memory_mb INTEGER, status VARCHAR(20),
                             owner_id INTEGER REFERENCES user(id));
        CREATE TABLE configuration (id INTEGER PRIMARY KEY, key VARCHAR(100) UNIQUE, value TEXT);
        INSERT INTO user VALUES (1, 'admin', 'admin@example.com', 'x', 1);
        INSERT INTO server VALUES (1, 'survival', 25565, 2048, 'Running', 1);
        INSERT INTO configuration VALUES (1, 'motd', 'hello');
        """
    )
    conn.commit()
    conn.close()
    return path


def foreign_dump_head(vendor: str) -> bytes:
    """The first bytes of a dump of an engine other than ``vendor``."""
    if vendor == "postgresql":
        return b"SQLite format 3\x00" + b"\x10\x00\x01\x01" + b"\x00" * 4076
    return b"PGDMP\x01\x0e\x00\x04\x08\x01\x01" + b"\x00" * 4000


def reseal(backup: Path) -> None:
    """Make the manifest vouch for the file as it now is: sha256 and size recomputed, then
    written back through dbtools.manifest.write_manifest (which signs it with the configured
    key), as an attacker holding that key, or the operator's own tooling, would.

    Hostile-file tests use it so that a crafted file passes every check of the manifest and
    its refusal can only come from reading the file's content.
    """
    import hashlib

    from dbtools.manifest import BackupManifest, write_manifest

    data = json.loads(manifest_path(backup).read_text())
    digest = hashlib.sha256()
    with open(backup, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    data["sha256"] = digest.hexdigest()
    data["size"] = backup.stat().st_size
    data.pop("signature", None)
    write_manifest(backup, BackupManifest.from_dict(data))


def run_command(name: str, *args) -> tuple[int, str, str]:
    """call_command(name, ...) -> (exit status, stdout, stderr), as the shell would see them."""
    from io import StringIO

    from django.core.management import CommandError, call_command

    out, err = StringIO(), StringIO()
    try:
        call_command(name, *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), str(exc)
    return 0, out.getvalue(), err.getvalue()
