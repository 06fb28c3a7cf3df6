"""dbbackup and dbrestore: django-dbbackup's names, running our guarded backup and restore.

django-dbbackup is not an installed app, so its own commands (which restore with no
lock, no checks, no safety backup) are not offered; dbtools' commands of the same names
accept its common options. Runs on every engine; the live database is the committed test
database (``transactional_db``) so subprocesses see it.
"""

import subprocess
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from accounts.models import User
from dbtools.backups import create_backup, list_backups, read_manifest
from dbtools.locks import database_lock

from .restore_helpers import data_digest, live_fingerprint, make_data, text_file
from .restore_helpers import run_command as run

pytestmark = pytest.mark.django_db(transaction=True)


def backup_files(directory: Path) -> list[Path]:
    return sorted(p for p in Path(directory).glob("db_backup_*") if not p.name.endswith(".json"))


# --- dbbackup -----------------------------------------------------------------------


def test_dbbackup_writes_a_verified_backup_with_a_manifest(settings):
    make_data("a")
    code, out, err = run("dbbackup", "--noinput")
    assert code == 0, err
    [path] = backup_files(settings.MCMANAGER_BACKUP_DIR)
    assert out.strip() == str(path)
    manifest = read_manifest(path)
    assert manifest.reason == "dbbackup"
    assert manifest.row_counts["accounts_user"] == 3
    [info] = list_backups()
    assert info.verified and not info.problem


def test_dbbackup_quiet_prints_nothing(settings):
    code, out, err = run("dbbackup", "-q", "-z", "-d", "default")
    assert (code, out) == (0, ""), err
    assert len(backup_files(settings.MCMANAGER_BACKUP_DIR)) == 1


def test_dbbackup_output_path_is_a_directory(tmp_path, settings):
    target = tmp_path / "elsewhere"
    target.mkdir()
    code, out, err = run("dbbackup", "-O", str(target))
    assert code == 0, err
    assert [p.parent for p in backup_files(target)] == [target]
    assert backup_files(settings.MCMANAGER_BACKUP_DIR) == []


@pytest.mark.parametrize("output", ["{tmp}/out.sqlite3", "s3://bucket/backups/"])
def test_dbbackup_output_path_naming_a_file_or_a_bucket_is_refused(tmp_path, settings, output):
    code, out, err = run("dbbackup", "-O", output.format(tmp=tmp_path))
    assert code == 2, (out, err)
    assert "\n" not in err.strip()
    assert "python manage.py backup" in err or "local directory" in err
    assert list(tmp_path.rglob("db_backup_*")) == []


def test_dbbackup_unknown_database_exits_2(settings):
    code, out, err = run("dbbackup", "-d", "default,nope")
    assert code == 2
    assert "nope" in err
    assert backup_files(settings.MCMANAGER_BACKUP_DIR) == []


def test_dbbackup_clean_keeps_dbbackup_cleanup_keep_when_no_policy_is_set(settings):
    settings.DBBACKUP_CLEANUP_KEEP = 1
    first = Path(create_backup(reason="manual").path)
    code, out, err = run("dbbackup", "-c")
    assert code == 0, err
    [kept] = backup_files(settings.MCMANAGER_BACKUP_DIR)
    assert kept != first and not first.exists()


def test_dbbackup_without_clean_applies_no_cleanup_of_its_own(settings):
    settings.DBBACKUP_CLEANUP_KEEP = 1
    create_backup(reason="manual")
    assert run("dbbackup")[0] == 0
    assert len(backup_files(settings.MCMANAGER_BACKUP_DIR)) == 2


def test_dbbackup_options_it_does_not_support_are_refused(settings):
    with pytest.raises(CommandError, match="unrecognized arguments: --encrypt"):
        call_command("dbbackup", "--encrypt", stdout=StringIO(), stderr=StringIO())
    assert backup_files(settings.MCMANAGER_BACKUP_DIR) == []


# --- dbrestore ----------------------------------------------------------------------


@pytest.fixture
def backup_file() -> Path:
    """Data "a" in the live database and a verified backup of it."""
    make_data("a")
    return Path(create_backup(reason="manual").path)


def test_dbrestore_input_filename_restores_through_our_restore(backup_file, settings):
    wanted = data_digest()
    make_data("b")
    code, out, err = run("dbrestore", "-i", backup_file.name, "--noinput")
    assert code == 0, err
    assert data_digest() == wanted
    assert not User.objects.filter(username__startswith="b_").exists()
    assert "Safety backup of the replaced database:" in out
    assert "validation: no problems found" in out
    safety = [i for i in list_backups() if i.reason == "pre-restore"]
    assert len(safety) == 1 and safety[0].verified


def test_dbrestore_without_a_file_restores_the_newest_verified_backup(backup_file):
    wanted = data_digest()
    make_data("b")
    code, out, err = run("dbrestore", "--noinput", "-q")
    assert (code, out) == (0, ""), err
    assert data_digest() == wanted


def test_dbrestore_refuses_a_bad_file_as_restore_does(tmp_path):
    make_data("a")
    bad = text_file(tmp_path, "db_backup_20260101_000000.sqlite3")
    before = live_fingerprint()
    ours = run("restore", str(bad), "--noinput")
    theirs = run("dbrestore", "-I", str(bad), "--noinput")
    assert theirs[0] == 1, theirs
    assert theirs[::2] == ours[::2], "dbrestore answers as restore does"
    assert "\n" not in theirs[2].strip()
    assert live_fingerprint() == before


def test_dbrestore_input_filename_is_a_name_in_the_backup_directory(backup_file):
    before = live_fingerprint()
    code, out, err = run("dbrestore", "-i", str(backup_file), "--noinput")
    assert code == 2
    assert "-I" in err
    assert live_fingerprint() == before


def test_dbrestore_while_a_backup_holds_the_lock_exits_2_at_once(backup_file, manage_py):
    make_data("b")
    before = live_fingerprint()
    with database_lock("default", "backup"):
        done = manage_py("dbrestore", "-i", backup_file.name, "--noinput", timeout=60)
    assert done.returncode == 2, done.stderr
    assert "held by backup" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert live_fingerprint() == before


def test_dbrestore_asks_first_and_no_answer_is_a_no(backup_file, manage_py):
    make_data("b")
    before = live_fingerprint()
    done = manage_py("dbrestore", "-I", str(backup_file), stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "Restore will REPLACE database 'default'" in done.stdout
    assert live_fingerprint() == before


def test_dbrestore_options_it_does_not_support_are_refused(backup_file):
    before = live_fingerprint()
    for option in (["--decrypt"], ["--pg-options", "--clean"], ["--no-drop"], ["-n", "public"]):
        with pytest.raises(CommandError, match="unrecognized arguments"):
            call_command("dbrestore", "-i", backup_file.name, "--noinput", *option, stdout=StringIO())
    assert live_fingerprint() == before


# --- what manage.py offers ------------------------------------------------------------


def test_help_lists_our_dbbackup_and_dbrestore_and_none_of_django_dbbackups_commands(manage_py):
    done = manage_py("help")
    assert done.returncode == 0, done.stderr
    dbtools_section = done.stdout.split("[dbtools]")[1].split("\n\n")[0].split()
    assert {"backup", "restore", "dbbackup", "dbrestore"} <= set(dbtools_section)
    assert "[dbbackup]" not in done.stdout
    for name in ("mediabackup", "mediarestore", "listbackups"):
        assert name not in done.stdout.split()
    assert "manage.py restore" in manage_py("help", "dbrestore").stdout


@pytest.mark.parametrize("name", ["mediabackup", "mediarestore", "listbackups"])
def test_django_dbbackups_other_commands_are_not_offered(manage_py, settings, name):
    done = manage_py(name, "--noinput")
    assert done.returncode != 0
    assert f"Unknown command: '{name}'" in done.stderr
    assert not Path(settings.MCMANAGER_BACKUP_DIR).exists() or not any(Path(settings.MCMANAGER_BACKUP_DIR).iterdir())
