"""Each engine's backup/restore lock: what ``Engine.lock()`` returns, one section per vendor.

The lock dies with its holder (a killed cron job never leaves a stale lock) and is keyed
on what is locked, never on how the connection settings spell it, so the same database
reached through ``127.0.0.1`` and ``localhost`` (or a SQLite file and a symlink to it) has
one lock:

- SQLite: ``fcntl.flock`` on a lock file beside the database file's real path
  (``os.path.realpath``), opened without following a symlink, 0600, removed when
  released; the holder's description is written into it.
- PostgreSQL: a session advisory lock, keyed on the database's name, on a dedicated
  connection to the server's maintenance database (advisory locks live in the server, so
  every spelling of its address meets the same lock, and the lock never blocks a restore
  that drops or renames the target); the holder is named in that connection's
  ``application_name``, which others read from ``pg_stat_activity``.
- MariaDB: ``GET_LOCK`` (server-wide) on the database's name as the server reports it
  (``SELECT DATABASE()``, case-folded when the server folds names). MariaDB has no
  per-connection label others can read, so the holder's description goes into a small
  file in the private directory the caller gives (0600, created with O_EXCL|O_NOFOLLOW
  and removed when released); without it, the holder is named by its connection id and
  client address.

Every lock raises ``LockHeld`` at once (never waits), naming the holder.
"""

import fcntl
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import CouldNotRun, DatabaseUnreachable, LockHeld
from ..formatting import first_line

HOLDER_MAX = 512


def lock_key(name: str) -> tuple[str, int]:
    """A lock name and a 56-bit advisory key for the database named ``name`` by its server."""
    digest = hashlib.sha256(f"mcmanager-dbtools:{name}".encode()).digest()
    # 56 bits: positive, so it reads back the same from pg_locks (classid << 32 | objid).
    # GET_LOCK names are at most 64 characters: the hash, not the name.
    return "mcmanager:" + digest.hex()[:40], int.from_bytes(digest[:7], "big")


def dedicated_connection(engine, name: str | None = None):
    """A new connection wrapper with the engine's settings (optionally another database name)."""
    base = engine.connection
    settings_dict = dict(base.settings_dict)
    if name is not None:
        settings_dict["NAME"] = name
    wrapper = base.__class__(settings_dict, alias=f"__dbtools_lock_{engine.alias}")
    try:
        wrapper.ensure_connection()
    except Exception as exc:
        raise DatabaseUnreachable(f"database '{engine.alias}' is unreachable: {first_line(exc)}") from exc
    return wrapper


# --- SQLite -----------------------------------------------------------------------


def real_database_file(database_file: str | os.PathLike) -> Path:
    """A SQLite database's identity: its file's real absolute path (symlinks resolved), the
    key of its lock and the ``database_identity`` its backups record."""
    return Path(os.path.realpath(database_file))


def sqlite_lock_path(database_file: str | os.PathLike) -> Path:
    """The lock file beside the database's real file: a symlink to it meets the same lock."""
    real = real_database_file(database_file)
    return real.with_name(f".{real.name}.dbtools-lock")


def _open_sqlite_lock_file(path: Path) -> int:
    """The lock file's descriptor: never through a symlink planted at its name, only a regular file."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise CouldNotRun(f"cannot open the lock file {path}: {exc.strerror or exc}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise CouldNotRun(f"cannot use the lock file {path}: not a regular file")
    if st.st_mode & 0o077 and st.st_uid == os.geteuid():
        os.fchmod(fd, 0o600)  # a lock file left by an older version
    return fd


@contextmanager
def sqlite_file_lock(engine, holder: str) -> Iterator[str]:
    path = sqlite_lock_path(engine.settings_dict["NAME"])
    while True:
        fd = _open_sqlite_lock_file(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held_by = os.pread(fd, HOLDER_MAX, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise LockHeld(f"database '{engine.alias}' is locked: held by {held_by}") from None
        # The holder before us removes the file when it releases: if ours was removed
        # meanwhile, the lock we hold is on a file nobody else will open. Open it again.
        mine = os.fstat(fd)
        try:
            now = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            now = None
        if now is not None and (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
        yield holder
    finally:
        try:
            path.unlink(missing_ok=True)  # still holding it: nobody can have it meanwhile
        finally:
            os.close(fd)  # closing releases the flock


# --- PostgreSQL ---------------------------------------------------------------------


@contextmanager
def postgresql_advisory_lock(engine, holder: str) -> Iterator[str]:
    # Database names are exact in PostgreSQL: the settings' NAME is the server's name.
    _, key = lock_key(engine.settings_dict["NAME"])
    try:
        wrapper = dedicated_connection(engine, "postgres")
    except DatabaseUnreachable:
        wrapper = dedicated_connection(engine)  # no maintenance database: lock in the target
    try:
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
                raise LockHeld(f"database '{engine.alias}' is locked: held by {who}")
        try:
            yield holder
        finally:
            with wrapper.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
    finally:
        wrapper.close()


# --- MariaDB ------------------------------------------------------------------------


def mariadb_database_name(wrapper) -> str:
    """The database's name as the server knows it (folded to lower case where the server folds)."""
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT DATABASE(), @@lower_case_table_names")
        name, folds = cursor.fetchone()
    return name.lower() if folds else name


def mariadb_lock_name(engine) -> str:
    """The GET_LOCK name of the engine's database (asks the server on a connection of its own)."""
    wrapper = dedicated_connection(engine)
    try:
        return lock_key(mariadb_database_name(wrapper))[0]
    finally:
        wrapper.close()


def mariadb_holder_path(lock_name: str, directory: Path | None) -> Path | None:
    """Where the holder of ``lock_name`` describes itself, in ``directory`` (None: nowhere)."""
    return None if directory is None else directory / f"{lock_name.removeprefix('mcmanager:')}.holder"


def _write_holder_file(path: Path, text: str) -> None:
    """Write ``text`` at ``path`` through a new 0600 file (O_EXCL|O_NOFOLLOW) renamed over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)  # replaces whatever is at the name, a symlink included, never follows it
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_holder_file(path: Path) -> dict:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return {}
        data = json.loads(os.read(fd, HOLDER_MAX * 2))
    finally:
        os.close(fd)
    return data if isinstance(data, dict) else {}


def _mariadb_who(cursor, owner, holder_path: Path | None) -> str:
    """The holder of the lock: its own description when its file says so, else its connection."""
    if holder_path is not None:
        try:
            info = _read_holder_file(holder_path)
            if info.get("connection_id") == owner and isinstance(info.get("holder"), str):
                return info["holder"][:HOLDER_MAX]
        except (OSError, ValueError):
            pass
    cursor.execute("SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = %s", [owner])
    row = cursor.fetchone()
    return f"connection {owner}" + (f" from {row[0]}" if row and row[0] else "")


@contextmanager
def mariadb_named_lock(engine, holder: str, private_directory: Callable[[], Path | None]) -> Iterator[str]:
    wrapper = dedicated_connection(engine)
    try:
        lock_name, _ = lock_key(mariadb_database_name(wrapper))
        holder_path = mariadb_holder_path(lock_name, private_directory())
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT GET_LOCK(%s, 0), CONNECTION_ID()", [lock_name])
            got, connection_id = cursor.fetchone()
            if got != 1:
                cursor.execute("SELECT IS_USED_LOCK(%s)", [lock_name])
                owner = cursor.fetchone()[0]
                who = _mariadb_who(cursor, owner, holder_path)
                raise LockHeld(f"database '{engine.alias}' is locked: held by {who}")
        written = False
        if holder_path is not None:
            try:
                _write_holder_file(holder_path, json.dumps({"holder": holder, "connection_id": connection_id}))
                written = True
            except OSError:
                pass  # the description is a courtesy; the lock itself is GET_LOCK
        try:
            yield holder
        finally:
            if written:
                holder_path.unlink(missing_ok=True)  # still holding the lock: the file is ours
            with wrapper.cursor() as cursor:
                cursor.execute("SELECT RELEASE_LOCK(%s)", [lock_name])
    finally:
        wrapper.close()
