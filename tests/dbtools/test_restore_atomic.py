"""restore is atomic: open connections see the restored data, and a SIGKILL at any step
leaves either the old database or the restored one, whole."""

import os
import signal
import sqlite3
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection, connections

from dbtools.backups import create_backup

from ..conftest import database_url_for, signing_env
from .restore_helpers import data_digest, make_data

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def backup_file():
    make_data("a")
    return Path(create_backup(reason="manual").path)


HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=20)
count = "SELECT COUNT(*) FROM accounts_user"
def say(*words):
    print(*words, flush=True)
say("open", conn.execute(count).fetchone()[0])
for line in sys.stdin:
    command = line.strip()
    if command == "begin":
        conn.execute("BEGIN")
        say("began", conn.execute(count).fetchone()[0])
    elif command == "count":
        say("count", conn.execute(count).fetchone()[0])
    elif command == "commit":
        conn.execute("COMMIT")
        say("committed")
    elif command == "check":
        say("check", conn.execute("PRAGMA integrity_check").fetchone()[0], conn.execute("PRAGMA journal_mode").fetchone()[0])
    elif command == "write":
        conn.execute("UPDATE accounts_user SET is_active = 0 WHERE username = 'a_user0'")
        say("wrote")
"""


@pytest.mark.engines("sqlite")
def test_open_connection_sees_the_restored_data(backup_file):
    """Another process holds the database open, even in a read transaction, during the restore."""
    make_data("b")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, connection.settings_dict["NAME"]],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def ask(command: str) -> str:
        holder.stdin.write(command + "\n")
        holder.stdin.flush()
        return holder.stdout.readline().strip()

    try:
        assert holder.stdout.readline().strip() == "open 6"
        # A reader in the middle of a transaction keeps its snapshot, as SQLite promises...
        assert ask("begin") == "began 6"
        call_command("restore", str(backup_file), "--noinput", stdout=StringIO())
        assert ask("count") == "count 6"
        assert ask("commit") == "committed"
        # ...and then sees the restored database: same file, same WAL, coherent.
        assert ask("count") == "count 3"
        assert ask("check") == "check ok wal"
        # It can still write, and Django reads what it wrote.
        assert ask("write") == "wrote"
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    from accounts.models import User

    assert User.objects.get(username="a_user0").is_active is False


def _popen_restore(*args: str) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url_for(),
        MCMANAGER_BACKUP_DIR=str(settings.MCMANAGER_BACKUP_DIR),
        DJANGO_SETTINGS_MODULE="mcmanager.settings",
        **signing_env(),
    )
    env.pop("DJANGO_DEBUG", None)
    return subprocess.Popen(
        [sys.executable, "-u", str(ROOT / "manage.py"), "restore", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _integrity_ok() -> bool:
    """The engine's own integrity check and the model rules, on whatever is live now."""
    from dbtools.validation import run_validation

    connections.close_all()
    if connection.vendor == "sqlite":
        probe = sqlite3.connect(connection.settings_dict["NAME"])
        try:
            if probe.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                return False
        finally:
            probe.close()
    return run_validation("default").ok


def _databases(like: str) -> list[str]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [like])
        else:
            cursor.execute("SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE %s", [like])
        return [r[0] for r in cursor.fetchall()]


def _drop_scratch_leftovers(pid: int) -> None:
    """Scratch databases the killed restore (process ``pid``) left on the server."""
    if connection.vendor == "sqlite":
        return
    for name in _databases(f"%_scratch_{pid}_%"):
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            else:
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")


MOMENTS = [
    "loading into a scratch database",
    "taking a safety backup",
    "carrying the operations log over",
    "swapping",
    "swapped",
]


@pytest.mark.slow
@pytest.mark.parametrize("moment", MOMENTS)
def test_sigkill_leaves_the_old_or_the_new_database(backup_file, moment):
    new = data_digest()
    make_data("b", users=4)
    old = data_digest()
    connections.close_all()
    proc = _popen_restore(str(backup_file), "--noinput", "-v", "2")
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line.rstrip())
            if moment in line:
                os.kill(proc.pid, signal.SIGKILL)
                break
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert any(moment in line for line in seen), (seen, proc.stderr.read())
    try:
        state = data_digest()
        assert state in (old, new)
        if moment in ("loading into a scratch database", "taking a safety backup", "carrying the operations log over"):
            assert state == old  # nothing touched the live database before the swap
        if moment == "swapped":
            assert state == new
        assert _integrity_ok()
    finally:
        connections.close_all()
        _drop_scratch_leftovers(proc.pid)
    # The lock died with the process: the next restore runs, brings the new data, and
    # drops the replaced database a kill after the swap may have left.
    call_command("restore", str(backup_file), "--noinput", "--no-safety-backup", stdout=StringIO())
    assert data_digest() == new
    if connection.vendor != "sqlite":
        assert _databases(connection.settings_dict["NAME"][:30] + "_old_%") == []


@pytest.mark.engines("sqlite")
def test_a_live_file_that_is_no_longer_a_database_is_restored(backup_file):
    """The worst day: the live file was overwritten. The backup API cannot write into it,
    no connection can use it, so it is replaced whole (and its stale WAL removed)."""
    new = data_digest()
    path = Path(connection.settings_dict["NAME"])
    connections.close_all()
    path.write_bytes(b"overwritten by accident " * 1000)
    Path(f"{path}-wal").write_bytes(b"a stale WAL that must not be replayed " * 100)
    err = StringIO()
    # The safety backup of a garbage file fails, and says how to go on.
    with pytest.raises(CommandError, match="--no-safety-backup restores without one"):
        call_command("restore", str(backup_file), "--noinput", stdout=StringIO(), stderr=err)
    assert path.read_bytes().startswith(b"overwritten by accident")
    call_command("restore", str(backup_file), "--noinput", "--no-safety-backup", stdout=StringIO(), stderr=err)
    connections.close_all()
    assert data_digest() == new
    assert _integrity_ok()


WRITER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=20)
print("ready", flush=True)
i = 0
while True:
    i += 1
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "INSERT INTO servers_configuration (key, value, description, updated_at) VALUES (?, 'v', '', '2026-01-01')",
        (f"writer.{i}",),
    )
    conn.execute("COMMIT")
"""


@pytest.mark.engines("sqlite")
def test_restore_while_another_process_writes(backup_file):
    """A writer keeps committing during the restore: the swap waits its turn, nothing breaks."""
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, connection.settings_dict["NAME"]], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout.readline().strip() == "ready"
        call_command("restore", str(backup_file), "--noinput", stdout=StringIO())
        assert writer.poll() is None, "the writer died"
    finally:
        writer.kill()
        writer.wait()
    from accounts.models import User

    assert User.objects.count() == 3
    assert _integrity_ok()


@pytest.mark.slow
@pytest.mark.engines("sqlite")
@pytest.mark.parametrize("delay", [0.0, 0.1, 0.3])
def test_sigkill_in_the_middle_of_a_large_sqlite_swap(delay):
    """Big enough that the backup API's single step takes a while: the kill lands inside
    it or just after, and the file is whole either way."""
    import time

    from dbtools.demo.generator import generate

    generate(users=2000, servers=60000, configs=10)
    path = Path(create_backup(reason="manual").path)
    new = data_digest()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM servers_server WHERE id % 2 = 0")
    old = data_digest()
    connections.close_all()
    proc = _popen_restore(str(path), "--noinput", "--no-safety-backup", "-v", "2")
    try:
        for line in proc.stdout:
            if "swapping" in line:
                time.sleep(delay)
                os.kill(proc.pid, signal.SIGKILL)
                break
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    state = data_digest()
    print("outcome:", "old" if state == old else "new" if state == new else "neither")  # shown with -s
    assert state in (old, new)
    assert _integrity_ok()
