"""The backup/restore lock: keyed on what is locked, its files private and removed.

Every engine: a backup through another spelling of the same database (``localhost``
for ``127.0.0.1``; a symlink to the SQLite file) exits 2 at once while the lock is held.
SQLite's lock file and MariaDB's holder file: 0600, never through a symlink planted at
their name, removed when released.
"""

import os
import stat
import time
from pathlib import Path

import pytest
from django.db import connection

from dbtools import locks
from dbtools.backups import list_backups
from dbtools.errors import CouldNotRun, LockHeld
from dbtools.locks import database_lock

from .restore_helpers import make_data

pytestmark = pytest.mark.django_db(transaction=True)


def other_spelling(tmp_path: Path) -> str:
    """A DATABASE_URL naming the test database differently from the settings."""
    from tests.conftest import database_url_for

    url = database_url_for()
    if connection.vendor == "sqlite":
        link = tmp_path / "another-name.sqlite3"
        link.symlink_to(connection.settings_dict["NAME"])
        return f"sqlite:///{link}"
    assert "@127.0.0.1" in url, url
    return url.replace("@127.0.0.1", "@localhost")


def test_a_second_backup_through_another_spelling_exits_2_at_once(manage_py, tmp_path):
    make_data("a")
    url = other_spelling(tmp_path)
    with database_lock("default", "test-holder"):
        started = time.monotonic()
        done = manage_py("backup", "-v", "0", env={"DATABASE_URL": url})
        waited = time.monotonic() - started
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "locked" in lines[0] and f"test-holder pid {os.getpid()}" in lines[0], done.stderr
    assert waited < 30  # at once: a process start, not the holder's time
    assert list_backups() == []
    # Released: the same spelling now backs up.
    done = manage_py("backup", "-v", "0", env={"DATABASE_URL": url})
    assert done.returncode == 0, done.stderr


def test_a_restore_through_another_spelling_exits_2_at_once(manage_py, tmp_path):
    make_data("a")
    from dbtools.backups import create_backup

    path = create_backup().path
    url = other_spelling(tmp_path)
    with database_lock("default", "test-holder"):
        done = manage_py("restore", "--noinput", str(path), "-v", "0", env={"DATABASE_URL": url})
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "locked" in done.stderr and "Traceback" not in done.stderr


# --- SQLite: the lock file ----------------------------------------------------------


@pytest.mark.engines("sqlite")
def test_sqlite_lock_file_is_private_and_removed_when_released():
    path = locks._sqlite_lock_path("default")
    assert path.parent == Path(os.path.realpath(connection.settings_dict["NAME"])).parent
    with database_lock("default", "test-holder"):
        st = os.lstat(path)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert "test-holder" in path.read_text()
        with pytest.raises(LockHeld, match="test-holder"):
            with database_lock("default", "second"):
                pass
    assert not path.exists()
    with database_lock("default", "again"):  # and it is taken again
        assert path.exists()
    assert not path.exists()


@pytest.mark.engines("sqlite")
def test_sqlite_lock_never_follows_a_symlink_planted_at_its_name(tmp_path):
    path = locks._sqlite_lock_path("default")
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    path.symlink_to(victim)
    try:
        with pytest.raises(CouldNotRun, match="lock file"):
            with database_lock("default", "test-holder"):
                pass
        assert victim.read_text() == "keep me"
    finally:
        path.unlink()


# --- MariaDB: the holder's description ------------------------------------------------


def mysql_holder_path() -> Path:
    wrapper = locks._dedicated_connection("default")
    try:
        lock_name, _ = locks._key(locks._mysql_database_name(wrapper))
    finally:
        wrapper.close()
    return locks._mysql_holder_path(lock_name)


@pytest.mark.engines("mysql")
def test_mariadb_holder_file_is_private_and_removed_when_released():
    path = mysql_holder_path()
    with database_lock("default", "test-holder"):
        st = os.lstat(path)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        directory = os.lstat(path.parent)
        assert stat.S_ISDIR(directory.st_mode) and stat.S_IMODE(directory.st_mode) == 0o700
        with pytest.raises(LockHeld, match=f"test-holder pid {os.getpid()}"):
            with database_lock("default", "second"):
                pass
    assert not path.exists()


@pytest.mark.engines("mysql")
def test_mariadb_holder_file_never_follows_a_symlink_planted_at_its_name(tmp_path):
    path = mysql_holder_path()
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    path.symlink_to(victim)
    try:
        with database_lock("default", "test-holder"):
            assert not path.is_symlink()
            assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
        assert victim.read_text() == "keep me"
        assert not os.path.lexists(path)
    finally:
        if os.path.lexists(path):
            path.unlink()


@pytest.mark.engines("postgresql", "mysql")
def test_the_lock_is_keyed_on_the_database_not_its_address():
    """In this very process, an alias reaching the same database through "localhost" meets the lock."""
    from django.db import connections

    base = connections["default"]
    other = base.__class__(dict(base.settings_dict, HOST="localhost"), alias="other_spelling")
    connections["other_spelling"] = other
    try:
        with database_lock("default", "test-holder"):
            with pytest.raises(LockHeld, match="test-holder"):
                with database_lock("other_spelling", "second"):
                    pass
        with database_lock("other_spelling", "second"):  # released: the other spelling takes it
            with pytest.raises(LockHeld, match="second"):
                with database_lock("default", "third"):
                    pass
    finally:
        del connections["other_spelling"]
        other.close()
