"""Hostile things in the backup directory and hostile surroundings: one line, the right exit code.

Every engine: a FIFO, a device, a directory or a socket named like a backup (or like its
manifest) is refused at once by restore, restore --check and backup --check, and never
blocks; restore --check against an unreachable database exits 2, against a missing one
says so; a closed output pipe gives no traceback; scratches of killed runs are removed
by the next run, those of running ones are not.
"""

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from django.db import connection, connections

from dbtools.backups import create_backup, list_backups
from dbtools.engines import get_engine

from .backup_support import closed_port_url, scratch_leftovers
from .restore_helpers import live_fingerprint, make_data, run_command

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = (
    ("restore", "--noinput"),
    ("restore", "--check"),
    ("backup", "--check"),
)


def backup_like_name() -> str:
    return f"db_backup_20260101_000000.{get_engine().dump_extension}.zst"


def run_within(limit: float, unblock, name: str, *args) -> tuple[int, str, str]:
    """Run a command on a thread; fail if it has not finished within ``limit`` seconds.

    ``unblock`` frees a thread stuck on the hostile file, so a failing test never hangs
    the suite.
    """
    box: dict = {}

    def target() -> None:
        try:
            box["result"] = run_command(name, *args)
        except BaseException as exc:  # reported below, in the test's thread
            box["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=target, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(limit)
    hung = thread.is_alive()
    if hung:
        unblock()
        thread.join(30)
    assert not hung, f"{name} {' '.join(args)} still ran after {limit} s"
    if "error" in box:
        raise box["error"]
    assert time.monotonic() - started < limit
    return box["result"]


def unblock_fifo(path: Path):
    def unblock() -> None:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # the reader then sees EOF
        except OSError:
            pass

    return unblock


@pytest.fixture
def backup_dir(settings) -> Path:
    directory = Path(settings.MCMANAGER_BACKUP_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def hostile(kind: str, path: Path, tmp_path: Path):
    """Make ``path`` a FIFO, a directory, a device (a symlink to /dev/zero) or a socket."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "device":
        path.symlink_to("/dev/zero")  # a read would never end
    else:
        server = socket.socket(socket.AF_UNIX)
        here = os.getcwd()
        os.chdir(path.parent)  # a socket's path is limited to 108 bytes: bind the name alone
        try:
            server.bind(path.name)
        finally:
            os.chdir(here)
        return server
    return None


KIND_WORDS = {
    "fifo": "named pipe",
    "directory": "directory",
    "device": "character device",
    "socket": "socket",
}


@pytest.mark.parametrize("kind", sorted(KIND_WORDS))
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_a_non_regular_file_named_like_a_backup_is_refused_at_once(backup_dir, tmp_path, kind, command):
    make_data("a")
    path = backup_dir / backup_like_name()
    keep = hostile(kind, path, tmp_path)
    before = live_fingerprint()
    try:
        code, out, err = run_within(1.0, unblock_fifo(path), *command, str(path))
    finally:
        if keep is not None:
            keep.close()
    assert code == 1, (code, out, err)
    assert KIND_WORDS[kind] in err and "not a regular file" in err, err
    assert "\n" not in err.strip()
    assert live_fingerprint() == before


@pytest.mark.parametrize("command", COMMANDS[1:], ids=lambda c: " ".join(c))
def test_a_fifo_as_the_manifest_beside_a_backup_is_refused_at_once(backup_dir, command):
    make_data("a")
    good = Path(create_backup().path)
    manifest = good.with_name(good.name + ".json")
    manifest.unlink()
    os.mkfifo(manifest)
    code, out, err = run_within(1.0, unblock_fifo(manifest), *command, str(good))
    assert code == 1, (code, out, err)
    assert "named pipe" in out + err


def test_a_fifo_manifest_does_not_block_the_listing(backup_dir):
    make_data("a")
    good = Path(create_backup().path)
    manifest = good.with_name(good.name + ".json")
    manifest.unlink()
    os.mkfifo(manifest)
    code, out, err = run_within(1.0, unblock_fifo(manifest), "backup", "--list")
    assert code == 0, (code, out, err)
    assert "PROBLEM" in out and "named pipe" in out
    assert list_backups()[0].problem


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_a_fifo_is_refused_by_the_real_command_in_one_line(manage_py, backup_dir, command):
    path = backup_dir / backup_like_name()
    os.mkfifo(path)
    try:
        done = manage_py(*command, str(path), "-v", "0", timeout=60)
    except subprocess.TimeoutExpired:
        unblock_fifo(path)()
        raise
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "named pipe" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


# --- exit codes ---------------------------------------------------------------------


@pytest.mark.parametrize("command", [("restore", "--check"), ("restore", "--noinput"), ("backup", "--check")])
def test_an_unreachable_database_exits_2(manage_py, tmp_path, command):
    make_data("a")
    path = create_backup().path
    password = "hunter2-Sekrit-pw"
    done = manage_py(*command, str(path), "-v", "0", env={"DATABASE_URL": closed_port_url(password, tmp_path)})
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "unreachable" in lines[0], done.stderr
    assert password not in done.stdout + done.stderr


@pytest.mark.engines("postgresql", "mysql")
@pytest.mark.parametrize("command", [("restore", "--check"), ("restore", "--noinput"), ("backup", "--check")])
def test_a_missing_live_database_is_named_exit_2(manage_py, command):
    from tests.conftest import database_url_for

    make_data("a")
    path = create_backup().path
    missing = f"gone_{os.getpid()}_{secrets.token_hex(3)}"
    url = database_url_for().rsplit("/", 1)[0] + "/" + missing
    done = manage_py(*command, str(path), env={"DATABASE_URL": url})
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and missing in lines[0], done.stderr
    assert "would restore" not in done.stdout
    with connection.cursor() as cursor:  # nothing created it on the way
        if connection.vendor == "postgresql":
            cursor.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [missing])
        else:
            cursor.execute("SELECT count(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", [missing])
        assert cursor.fetchone()[0] == 0


@pytest.mark.engines("sqlite")
def test_a_missing_sqlite_file_would_be_created_by_restore_and_check_says_so(manage_py, tmp_path):
    make_data("a")
    path = create_backup().path
    live = tmp_path / "new" / "mcmanager.sqlite3"
    live.parent.mkdir()
    done = manage_py("restore", "--check", str(path), env={"DATABASE_URL": f"sqlite:///{live}"})
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    assert "does not exist yet" in done.stdout and "would restore" in done.stdout
    assert not live.exists(), "a check touches nothing, not even to create the file"
    done = manage_py("restore", "--noinput", str(path), env={"DATABASE_URL": f"sqlite:///{live}"})
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    assert live.exists()


# --- a closed output pipe -----------------------------------------------------------


def subprocess_env(settings) -> dict:
    from tests.conftest import database_url_for, signing_env

    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url_for(),
        MCMANAGER_BACKUP_DIR=str(settings.MCMANAGER_BACKUP_DIR),
        DJANGO_SETTINGS_MODULE="mcmanager.settings",
        **signing_env(),
    )
    env.pop("DJANGO_DEBUG", None)
    return env


@pytest.mark.parametrize("entries", [3000, 1])
def test_a_listing_into_a_pipe_closed_early_ends_without_a_traceback(settings, backup_dir, entries):
    """``backup --list | head -1``: many lines (the pipe fills) or one (closed before it is written)."""
    for i in range(entries):
        (backup_dir / f"db_backup_20260101_{i // 3600:02d}{i // 60 % 60:02d}{i % 60:02d}.sqlite3").write_bytes(b"x")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "backup", "--list"],
        cwd=ROOT,
        env=subprocess_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    if entries > 1:
        first = proc.stdout.readline()
        assert first.startswith(b"db_backup_"), (first, proc.stderr.read())
    proc.stdout.close()  # what head does once it has its line
    try:
        _, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr, stderr.decode()
    assert stderr.strip() == b""
    assert proc.returncode == 0  # the listing was made; that nobody read it is the reader's choice


def test_a_shell_pipeline_into_head_has_no_traceback(settings, backup_dir):
    for i in range(3000):
        (backup_dir / f"db_backup_20260101_{i // 3600:02d}{i // 60 % 60:02d}{i % 60:02d}.sqlite3").write_bytes(b"x")
    manage = f"{sys.executable} {ROOT / 'manage.py'}"
    done = subprocess.run(
        ["bash", "-c", f"{manage} backup --list | head -1; echo status ${{PIPESTATUS[0]}} >&2"],
        cwd=ROOT,
        env=subprocess_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.startswith("db_backup_") and done.stdout.count("\n") == 1
    assert done.stderr.strip() == "status 0", done.stderr


# --- leftovers of killed runs -------------------------------------------------------


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def live_pid():
    proc = subprocess.Popen(["sleep", "120"])
    yield proc.pid
    proc.kill()
    proc.wait()


def make_scratch(pid: int) -> str:
    """A scratch of this engine named as process ``pid`` would name it."""
    suffix = f"{pid}_{secrets.token_hex(4)}"
    if connection.vendor == "sqlite":
        path = Path(tempfile.gettempdir()) / f".db_scratch_{suffix}.sqlite3"
        shutil.copyfile(connection.settings_dict["NAME"], path)
        Path(f"{path}-wal").write_bytes(b"")
        return path.name
    name = f"{connection.settings_dict['NAME'][:24]}_scratch_{suffix}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {connection.ops.quote_name(name)}")
    return name


def scratches_named(pid: int) -> list[str]:
    if connection.vendor == "sqlite":
        return sorted(p.name for p in Path(tempfile.gettempdir()).glob(f".db_scratch_{pid}_*"))
    return [n for n in scratch_leftovers() if f"_scratch_{pid}_" in n]


def wait_until_unused(names: list[str]) -> None:
    """A killed run's dump tool (pg_restore, mariadb) outlives it by a moment, connected."""
    if connection.vendor == "sqlite":
        return
    deadline = time.monotonic() + 30
    with connection.cursor() as cursor:
        while True:
            if connection.vendor == "postgresql":
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = ANY(%s)", [names])
            else:
                marks = ", ".join(["%s"] * len(names))
                cursor.execute(f"SELECT count(*) FROM information_schema.PROCESSLIST WHERE DB IN ({marks})", names)
            if cursor.fetchone()[0] == 0 or time.monotonic() > deadline:
                return
            time.sleep(0.1)


def drop_scratch(name: str) -> None:
    if connection.vendor == "sqlite":
        for path in Path(tempfile.gettempdir()).glob(f"{name}*"):
            path.unlink()
        return
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {connection.ops.quote_name(name)}")


@pytest.mark.parametrize("run", ["backup", "restore --check"])
def test_the_next_run_removes_a_killed_runs_scratch_and_keeps_a_running_ones(manage_py, live_pid, run):
    make_data("a")
    dead = dead_pid()
    gone, running = make_scratch(dead), make_scratch(live_pid)
    try:
        if run == "backup":
            done = manage_py("backup", "-v", "0")
        else:
            path = create_backup().path
            done = manage_py("restore", "--check", str(path), "-v", "0")
        assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
        assert scratches_named(dead) == [], f"{gone} was left behind"
        assert scratches_named(live_pid), f"{running} of a running process was removed"
    finally:
        drop_scratch(gone)
        drop_scratch(running)


@pytest.mark.engines("sqlite")
def test_a_killed_whole_file_replacement_leaves_nothing_after_the_next_run(manage_py):
    make_data("a")
    live = Path(connection.settings_dict["NAME"])
    leftover = live.with_name(f".{live.name}.restore-{dead_pid()}_{secrets.token_hex(4)}")
    leftover.write_bytes(b"half a database")
    assert manage_py("backup", "-v", "0").returncode == 0
    assert not leftover.exists()


def test_a_killed_restore_check_leaves_a_scratch_the_next_run_removes(manage_py, settings):
    """The real thing: SIGKILL while restore --check has its scratch, then another run."""
    from .backup_support import make_bulk

    make_data("a")
    make_bulk(20)
    path = create_backup().path
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "restore", "--check", str(path), "-v", "0"],
        cwd=ROOT,
        env=subprocess_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not scratches_named(proc.pid):
            assert proc.poll() is None, "restore --check ended before its scratch was seen"
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    left = scratches_named(proc.pid)
    assert left, "the kill left no scratch: nothing to test"
    wait_until_unused(left)
    connections.close_all()
    done = manage_py("restore", "--check", str(path), "-v", "0")
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    assert scratches_named(proc.pid) == []
