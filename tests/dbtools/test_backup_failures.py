"""What cron sees when a backup cannot be made: one line on stderr, a non-zero exit, no file.

Every engine: unwritable directory, full disk (a real 512 KB tmpfs), unreachable
database, lock held, SIGKILL in the middle; and a backup taken while another process
writes is a consistent snapshot.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from dbtools.backups import NAME_RE, create_backup, list_backups, read_manifest, verify_backup
from dbtools.engines import get_engine
from dbtools.errors import LockHeld
from dbtools.locks import database_lock
from dbtools.models import OperationLog
from tests.conftest import database_url_for, signing_env

from .backup_support import closed_port_url, make_bulk, make_rows

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


def stderr_lines(done) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.strip()]


def assert_one_clear_line(done, code: int, *words: str) -> str:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = stderr_lines(done)
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def final_files(directory: Path) -> list[str]:
    if not directory.exists():
        return []
    return sorted(n for n in os.listdir(directory) if not n.startswith("."))


def subprocess_env(settings, **extra) -> dict:

    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url_for(),
        MCMANAGER_BACKUP_DIR=str(settings.MCMANAGER_BACKUP_DIR),
        DJANGO_SETTINGS_MODULE="mcmanager.settings",
        **signing_env(),
    )
    env.pop("DJANGO_DEBUG", None)
    env.update(extra)
    return env


def test_an_unwritable_directory_is_one_line_and_exit_2(manage_py, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where a directory should be")
    done = manage_py("backup", "-v", "0", "-d", str(blocker / "backups"))
    assert_one_clear_line(done, 2, "not writable", str(blocker / "backups"))


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 512 KB filesystem (tmpfs) to fill up; needs root, which CI and this sandbox have."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs to fill (needs root): {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_is_one_line_exit_1_and_leaves_nothing(manage_py, tiny_disk):
    make_bulk(3)  # about 3 MB that does not compress: more than the disk holds
    done = manage_py("backup", "-v", "0", "-d", str(tiny_disk))
    assert_one_clear_line(done, 1, "full")
    assert os.listdir(tiny_disk) == []  # no final file, no temporary one
    entry = OperationLog.objects.get(operation="backup")
    assert entry.outcome == "failure" and "full" in entry.message


def test_an_unreachable_database_is_one_line_exit_2_and_no_password(manage_py, settings, tmp_path):
    password = "hunter2-Sekrit-pw"
    done = manage_py("backup", "-v", "0", env={"DATABASE_URL": closed_port_url(password, tmp_path)})
    assert_one_clear_line(done, 2, "unreachable")
    assert password not in done.stdout + done.stderr
    assert final_files(settings.MCMANAGER_BACKUP_DIR) == []


def test_a_held_lock_refuses_at_once_naming_the_holder(manage_py, settings):
    with database_lock("default", "test-holder"):
        with pytest.raises(LockHeld, match=f"test-holder pid {os.getpid()}"):
            create_backup()
        started = time.monotonic()
        done = manage_py("backup", "-v", "0")
        waited = time.monotonic() - started
        assert_one_clear_line(done, 2, "locked", f"held by test-holder pid {os.getpid()}")
    assert waited < 60  # "at once": it did not wait for the holder (a generous bound, not a benchmark)
    assert final_files(settings.MCMANAGER_BACKUP_DIR) == []
    # Released with the block: the next backup runs.
    assert manage_py("backup", "-v", "0").returncode == 0
    assert len(list_backups()) == 1


@pytest.mark.slow
def test_sigkill_in_the_middle_leaves_no_final_file_and_the_next_run_cleans_up(settings):
    make_bulk(40)  # about 40 MB: the backup takes a moment
    directory = Path(settings.MCMANAGER_BACKUP_DIR)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "backup", "-v", "0"],
        cwd=ROOT,
        env=subprocess_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    partial = None
    while proc.poll() is None and partial is None:
        if directory.exists():
            for name in os.listdir(directory):
                if name.startswith(".db_backup_") and ".partial" in name and (directory / name).stat().st_size > 0:
                    partial = name
                    break
        time.sleep(0.002)
    assert partial is not None, "the backup finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()

    assert [n for n in final_files(directory) if NAME_RE.match(n.removesuffix(".json"))] == []
    assert list_backups() == []
    leftovers = [n for n in os.listdir(directory) if n.startswith(".db_backup_")]
    assert leftovers  # what the killed run left, under temporary names only

    result = create_backup()
    assert result.verification.ok
    assert [n for n in os.listdir(directory) if n.startswith(".db_backup_")] == []
    assert final_files(directory) == sorted([result.path.name, result.path.name + ".json"])


WRITER = """
import os, sys
import django
django.setup()
from django.db import transaction
from accounts.models import User
from servers.models import Server
i = 0
while True:
    # Every transaction adds one user AND one server: the invariant a snapshot must keep.
    with transaction.atomic():
        user = User.objects.create(username=f"w{os.getpid()}_{i}", password="!")
        Server.objects.create(server_name=f"w{os.getpid()}_{i}", owner=user, port=1024 + i % 60000)
    i += 1
    if i == 25:
        open(sys.argv[1], "w").write("writing")
"""


@pytest.mark.slow
def test_a_backup_while_another_process_writes_is_a_consistent_snapshot(settings, tmp_path):
    make_rows("base", users=5, servers_each=2)  # users - servers == -5 in every consistent state
    make_bulk(4)  # a dump that takes a moment, so the writer commits during it
    ready = tmp_path / "ready"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(ready)],
        cwd=ROOT,
        env=subprocess_env(settings),
        stderr=subprocess.PIPE,
    )
    try:
        while not ready.exists():
            assert writer.poll() is None, writer.stderr.read().decode()
            time.sleep(0.01)
        result = create_backup(verify="full")
        assert writer.poll() is None, writer.stderr.read().decode()
    finally:
        writer.terminate()
        writer.wait()
        writer.stderr.close()

    counts = read_manifest(result.path).row_counts
    assert counts["accounts_user"] - counts["servers_server"] == -5
    assert counts["accounts_user"] >= 5 + 25
    # The full verification loaded the file into a scratch database: same counts as the manifest.
    assert result.verification.ok
    assert any(c.name == "row_counts" and c.ok for c in result.verification.checks)
    # The writer kept writing after the snapshot: the live database moved on.
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM accounts_user")
        assert cursor.fetchone()[0] > counts["accounts_user"]
    assert verify_backup(result.path, "full").ok


def test_the_engine_names_its_drivers_dump_errors_and_only_those(vendor, tmp_path):
    """Engine.dump_failure: the backup side imports no driver; the engine says what its error means."""
    engine = get_engine()
    full = sqlite3.OperationalError("database or disk is full")
    other = sqlite3.OperationalError("unable to open database file")
    if vendor == "sqlite":
        assert engine.dump_failure(full, tmp_path) == (
            f"backup directory {tmp_path} is full (database or disk is full); no backup was written"
        )
        assert (
            engine.dump_failure(other, tmp_path) == "SQLite could not copy the database: unable to open database file"
        )
    else:  # not this engine's driver: not its to name
        assert engine.dump_failure(full, tmp_path) is None
    assert engine.dump_failure(ValueError("database or disk is full"), tmp_path) is None


def test_check_of_a_missing_file_is_one_line_and_exit_2(manage_py, tmp_path):
    done = manage_py("backup", "--check", str(tmp_path / "nope"))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [f"CommandError: no such backup: {tmp_path / 'nope'} (no such file)"]
    # A file that is there without its manifest is still a bad backup: exit 1.
    (tmp_path / "orphan.sql").write_text("SELECT 1;\n")
    done = manage_py("backup", "--check", str(tmp_path / "orphan.sql"))
    assert done.returncode == 1 and "has no manifest" in done.stdout + done.stderr
