"""One backup or restore per database at a time.

``database_lock(database, purpose)`` takes the lock or raises ``LockHeld`` at once, naming
the holder. The lock dies with its holder (a killed cron job never leaves a stale lock):

- SQLite: ``fcntl.flock`` on a lock file beside the database file; the holder's
  description is written into the file.
- PostgreSQL: a session advisory lock on a dedicated connection to the maintenance
  database (so the lock never blocks a restore that drops or renames the target); the
  holder is named in that connection's ``application_name``, which others read from
  ``pg_stat_activity``.
- MariaDB: ``GET_LOCK`` on a dedicated connection; the holder's description goes into a
  small file in the temp directory (MariaDB has no per-connection label others can read),
  falling back to the holder's connection id.
"""

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from .errors import DatabaseUnreachable, LockHeld


def _holder_text(purpose: str) -> str:
    since = timezone.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{purpose} pid {os.getpid()} since {since}"


@contextmanager
def database_lock(database: str = DEFAULT_DB_ALIAS, purpose: str = "backup") -> Iterator[str]:
    """Hold the backup/restore lock of ``database`` for the block; LockHeld at once if taken."""
    vendor = connections[database].vendor
    if vendor == "sqlite":
        manager = _sqlite_lock
    elif vendor == "postgresql":
        manager = _postgresql_lock
    else:
        manager = _mysql_lock
    with manager(database, purpose) as holder:
        yield holder


def _sqlite_lock_path(database: str) -> Path:
    name = Path(connections[database].settings_dict["NAME"])
    return name.with_name(f".{name.name}.dbtools-lock")


@contextmanager
def _sqlite_lock(database: str, purpose: str) -> Iterator[str]:
    path = _sqlite_lock_path(database)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
            raise LockHeld(f"database '{database}' is locked: held by {holder}") from None
        holder = _holder_text(purpose)
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
        try:
            yield holder
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing releases the flock


def _lock_key(database: str) -> tuple[str, int]:
    s = connections[database].settings_dict
    ident = f"mcmanager-dbtools:{s.get('HOST') or ''}:{s.get('PORT') or ''}:{s['NAME']}"
    digest = hashlib.sha256(ident.encode()).digest()
    # 56 bits: positive, so it reads back the same from pg_locks (classid << 32 | objid).
    return ident, int.from_bytes(digest[:7], "big")


def _dedicated_connection(database: str, name: str | None = None):
    """A new connection wrapper with this alias's settings (optionally another database name)."""
    base = connections[database]
    settings_dict = dict(base.settings_dict)
    if name is not None:
        settings_dict["NAME"] = name
    wrapper = base.__class__(settings_dict, alias=f"__dbtools_lock_{database}")
    try:
        wrapper.ensure_connection()
    except Exception as exc:
        raise DatabaseUnreachable(f"database '{database}' is unreachable: {str(exc).splitlines()[0]}") from exc
    return wrapper


@contextmanager
def _postgresql_lock(database: str, purpose: str) -> Iterator[str]:
    _, key = _lock_key(database)
    try:
        wrapper = _dedicated_connection(database, "postgres")
    except DatabaseUnreachable:
        wrapper = _dedicated_connection(database)  # no maintenance database: lock in the target
    try:
        holder = _holder_text(purpose)
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT set_config('application_name', %s, false)", [f"mcmanager {holder}"[:63]])
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
            if not cursor.fetchone()[0]:
                cursor.execute(
                    "SELECT a.application_name, a.pid FROM pg_locks l "
                    "JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted "
                    "AND ((l.classid::bigint << 32) | l.objid::bigint) = %s::bigint",
                    [key],
                )
                row = cursor.fetchone()
                who = row[0].removeprefix("mcmanager ") if row and row[0] else "another process"
                raise LockHeld(f"database '{database}' is locked: held by {who}")
        try:
            yield holder
        finally:
            with wrapper.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
    finally:
        wrapper.close()


def _mysql_holder_file(ident: str) -> Path:
    digest = hashlib.sha256(ident.encode()).hexdigest()[:24]
    return Path(tempfile.gettempdir()) / f"mcmanager-lock-{digest}.json"


@contextmanager
def _mysql_lock(database: str, purpose: str) -> Iterator[str]:
    ident, _ = _lock_key(database)
    # GET_LOCK names are at most 64 characters and server-wide: hash the identity.
    lock_name = "mcmanager:" + hashlib.sha256(ident.encode()).hexdigest()[:40]
    info_file = _mysql_holder_file(ident)
    wrapper = _dedicated_connection(database)
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT GET_LOCK(%s, 0), CONNECTION_ID()", [lock_name])
            got, connection_id = cursor.fetchone()
            if got != 1:
                cursor.execute("SELECT IS_USED_LOCK(%s)", [lock_name])
                owner = cursor.fetchone()[0]
                who = f"connection {owner}"
                try:
                    info = json.loads(info_file.read_text())
                    if info.get("connection_id") == owner:
                        who = info["holder"]
                except (OSError, ValueError, KeyError):
                    pass
                raise LockHeld(f"database '{database}' is locked: held by {who}")
        holder = _holder_text(purpose)
        try:
            tmp = info_file.with_name(f".{info_file.name}.{os.getpid()}")
            tmp.write_text(json.dumps({"holder": holder, "connection_id": connection_id}))
            os.replace(tmp, info_file)
        except OSError:
            pass  # the description is a courtesy; the lock itself is GET_LOCK
        try:
            yield holder
        finally:
            with wrapper.cursor() as cursor:
                cursor.execute("SELECT RELEASE_LOCK(%s)", [lock_name])
    finally:
        wrapper.close()
