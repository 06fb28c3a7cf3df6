"""Signed manifests: only a backup signed by this installation's key is restored or checked without --force.

Runs on every engine (``make test``); the key is each test's own (tests/conftest.py
points MCMANAGER_BACKUP_SIGNING_KEY_FILE into tmp_path). The tests that only concern
the key and the manifest run on SQLite alone.
"""

import json
import os
import stat
from io import StringIO
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.test import Client

from accounts.models import User
from dbtools.backups import create_backup, list_backups, verify_backup
from dbtools.errors import CouldNotRun
from dbtools.manifest import manifest_path, read_manifest
from dbtools.signing import signing_key

from .restore_helpers import (
    data_digest,
    edit_manifest,
    live_fingerprint,
    make_data,
    reseal,
    tamper_manifest,
    truncated_copy,
)
from .restore_helpers import run_command as run

pytestmark = pytest.mark.django_db(transaction=True)

KEY_A = "first-key-of-this-installation-0123456789"
KEY_B = "a-key-of-some-other-installation-987654321"


def assert_refused(command: str, args, fragment: str, exit_code: int = 1) -> str:
    before = live_fingerprint()
    code, out, err = run(command, *args)
    assert code == exit_code, (code, out, err)
    assert fragment in err, err
    assert "\n" not in err.strip(), "a refusal is one line"
    assert live_fingerprint() == before, "the live database changed"
    return err


def manifest_json(backup: Path) -> dict:
    return json.loads(manifest_path(backup).read_text())


def unsign(backup: Path) -> None:
    """The manifest as an older version, or someone without the key, would have written it."""
    data = manifest_json(backup)
    del data["signature"]
    manifest_path(backup).write_text(json.dumps(data))


def backup_signed_with(settings, key_text: str) -> Path:
    old = settings.MCMANAGER_BACKUP_SIGNING_KEY
    settings.MCMANAGER_BACKUP_SIGNING_KEY = key_text
    try:
        return Path(create_backup().path)
    finally:
        settings.MCMANAGER_BACKUP_SIGNING_KEY = old


@pytest.fixture
def backup_file() -> Path:
    """Data "a" in the live database and a verified, signed backup of it; then data "b" added."""
    make_data("a")
    path = Path(create_backup().path)
    make_data("b", users=1)
    return path


def restored_a() -> bool:
    return (
        User.objects.filter(username__startswith="a_").count() == 3
        and not User.objects.filter(username__startswith="b_").exists()
    )


# --- the key ------------------------------------------------------------------------


@pytest.mark.engines("sqlite")
def test_the_key_is_created_0600_on_first_use_and_never_written_into_the_manifest(settings):
    key_file = Path(settings.MCMANAGER_BACKUP_SIGNING_KEY_FILE)
    assert not key_file.exists()
    make_data("a", users=1)
    path = Path(create_backup().path)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert not key_file.is_relative_to(settings.MCMANAGER_BACKUP_DIR)
    key = key_file.read_text().strip()
    assert len(key) >= 32
    text = manifest_path(path).read_text()
    assert key not in text
    signature = json.loads(text)["signature"]
    assert signature["alg"] == "hmac-sha256"
    assert signature["key_id"] == signing_key().key_id and len(signature["key_id"]) == 16
    assert len(signature["value"]) == 64
    # The second backup uses the same key: it is created once.
    create_backup()
    assert key_file.read_text().strip() == key
    assert [i.signed for i in list_backups()] == [True, True]
    assert [name for name in os.listdir(key_file.parent) if name != key_file.name] == []


@pytest.mark.engines("sqlite")
def test_a_key_file_inside_the_backup_directory_is_refused(settings, manage_py, tmp_path):
    settings.MCMANAGER_BACKUP_SIGNING_KEY_FILE = Path(settings.MCMANAGER_BACKUP_DIR) / "key"
    with pytest.raises(CouldNotRun, match="inside the backup directory"):
        create_backup()
    assert [e.id for e in run_checks(tags=["dbtools"])] == ["dbtools.E005"]
    done = manage_py("backup", "-v", "0")
    assert done.returncode == 1  # refused by the system check before it starts
    assert "dbtools.E005" in done.stderr
    assert not Path(settings.MCMANAGER_BACKUP_SIGNING_KEY_FILE).exists()
    # Nor may a backup be written into the directory that holds the key (backup -d).
    settings.MCMANAGER_BACKUP_SIGNING_KEY_FILE = tmp_path / "keys" / "key"
    with pytest.raises(CouldNotRun, match="inside the backup directory"):
        create_backup(output_dir=tmp_path / "keys")
    assert not (tmp_path / "keys" / "key").exists()


@pytest.mark.engines("sqlite")
def test_a_short_key_in_the_environment_is_refused(settings):
    settings.MCMANAGER_BACKUP_SIGNING_KEY = "short"
    assert [e.id for e in run_checks(tags=["dbtools"])] == ["dbtools.E006"]
    with pytest.raises(CouldNotRun, match="too short"):
        create_backup()


@pytest.mark.engines("sqlite")
def test_a_key_from_the_environment_signs_and_no_key_file_is_created(settings):
    settings.MCMANAGER_BACKUP_SIGNING_KEY = KEY_A
    make_data("a", users=1)
    path = Path(create_backup().path)
    assert read_manifest(path).signed
    assert KEY_A not in manifest_path(path).read_text()
    assert not Path(settings.MCMANAGER_BACKUP_SIGNING_KEY_FILE).exists()
    out = StringIO()
    call_command("backup", "--list", "--json", stdout=out)
    assert KEY_A not in out.getvalue()
    assert json.loads(out.getvalue())[0]["signed"] is True


@pytest.mark.engines("sqlite")
def test_reseal_signs_with_the_tests_key_so_a_crafted_file_is_refused_for_its_content(backup_file, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Cut in half: whatever the data, the dump is incomplete (a flipped byte may land in a
    # row's value and leave a sound database with one value changed, which restores).
    bad = truncated_copy(backup_file, elsewhere, "half")
    reseal(bad)
    manifest = read_manifest(bad)
    assert manifest.signed and manifest.authenticity.status == "signed"
    before = live_fingerprint()
    code, out, err = run("restore", str(bad), "--noinput")
    assert code == 1, (code, out, err)
    # Past the signature and the checksum: refused for what the file holds.
    assert "failed verification" in err and "not signed" not in err and "checksum" not in err
    assert live_fingerprint() == before


# --- unsigned, wrongly signed, tampered -------------------------------------------------


def test_an_unsigned_backup_is_refused_without_force_and_restores_with_it(backup_file):
    unsign(backup_file)
    fragment = "is not signed by this installation's key (signature missing); restore it only with --force"
    err = assert_refused("restore", [str(backup_file), "--noinput"], fragment)
    assert err.startswith(f"{backup_file.name} is not signed")
    assert_refused("restore", ["--check", str(backup_file)], fragment)
    assert_refused("backup", ["--check", str(backup_file)], "(signature missing); check it only with --force")
    assert [i.signed for i in list_backups()] == [False]

    # --force: checked and restored like any backup; checking it does not make it signed.
    assert run("backup", "--check", str(backup_file), "--force")[0] == 0
    assert "signature" not in manifest_json(backup_file)
    assert run("restore", "--check", str(backup_file), "--force")[0] == 0
    code, out, err = run("restore", str(backup_file), "--noinput", "--force", "--no-safety-backup")
    assert code == 0, err
    assert restored_a()


def test_a_backup_signed_by_another_key_is_refused(settings):
    make_data("a")
    path = backup_signed_with(settings, KEY_B)
    make_data("b", users=1)
    fragment = "is not signed by this installation's key (signed by another key"
    assert_refused("restore", [str(path), "--noinput"], fragment)
    assert_refused("restore", ["--check", str(path)], fragment)
    assert_refused("backup", ["--check", str(path)], fragment)
    code, out, err = run("restore", str(path), "--noinput", "--force", "--no-safety-backup")
    assert code == 0, err
    assert restored_a()


@pytest.mark.parametrize(
    "change",
    [
        {"reason": "cron"},
        {"row_counts": {"accounts_user": 1}},
        {"sha256": "0" * 64},
        {"verification": {"ok": True, "level": "full", "at": "2026-01-01T00:00:00Z", "checks": []}},
    ],
    ids=["reason", "row_counts", "sha256", "verification"],
)
def test_a_manifest_changed_after_signing_is_refused(backup_file, change):
    before = data_digest()
    tamper_manifest(backup_file, **change)
    fragment = "signature does not match: the manifest was changed after signing"
    assert_refused("restore", [str(backup_file), "--noinput"], fragment)
    assert_refused("restore", ["--check", str(backup_file)], fragment)
    assert_refused("backup", ["--check", str(backup_file)], fragment)
    assert data_digest() == before


def test_after_a_key_rotation_the_old_keys_still_verify(settings, tmp_path):
    make_data("a")
    by_text = backup_signed_with(settings, KEY_A)
    in_file = Path(create_backup().path)  # the key file's key
    old_file = tmp_path / "old_key"
    old_file.write_text(Path(settings.MCMANAGER_BACKUP_SIGNING_KEY_FILE).read_text())
    make_data("b", users=1)

    settings.MCMANAGER_BACKUP_SIGNING_KEY = KEY_B  # the new key
    assert_refused("restore", ["--check", str(by_text)], "signed by another key")
    settings.MCMANAGER_BACKUP_SIGNING_OLD_KEYS = [KEY_A]
    settings.MCMANAGER_BACKUP_SIGNING_OLD_KEY_FILES = [old_file]
    for path in (by_text, in_file):
        assert read_manifest(path).authenticity.status == "signed-old-key"
        code, out, err = run("restore", "--check", str(path))
        assert code == 0, err
    assert {i.name: i.signed for i in list_backups()} == {by_text.name: True, in_file.name: True}
    # Re-checking signs the verdict again, with the new key.
    assert verify_backup(by_text).ok
    assert read_manifest(by_text).authenticity.status == "signed"
    code, out, err = run("restore", str(in_file), "--noinput", "--no-safety-backup")
    assert code == 0, err
    assert restored_a()


def test_latest_skips_unsigned_and_wrongly_signed_backups(settings):
    make_data("a")
    good = Path(create_backup().path)
    make_data("b", users=1)
    unsigned = Path(create_backup().path)
    unsign(unsigned)
    foreign = backup_signed_with(settings, KEY_B)
    assert [i.name for i in list_backups()] == [foreign.name, unsigned.name, good.name]

    code, out, err = run("restore", "--check", "--latest", "--json")
    assert code == 0, err
    assert json.loads(out)["path"] == str(good)
    code, out, err = run("restore", "--latest", "--noinput", "--no-safety-backup")
    assert code == 0, err
    assert str(good) in out
    assert restored_a()


def test_latest_with_only_unsigned_backups_is_refused(backup_file):
    unsign(backup_file)
    assert_refused("restore", ["--latest", "--noinput"], "no verified, signed")
    assert_refused("restore", ["--check", "--latest"], "no verified, signed")


@pytest.mark.engines("sqlite")
def test_force_goes_with_check_in_backup(backup_file):
    code, out, err = run("backup", "--force")
    assert code == 2 and "--force goes with --check" in err


@pytest.mark.engines("sqlite")
def test_list_shows_which_backups_are_signed(backup_file, settings):
    foreign = backup_signed_with(settings, KEY_B)
    code, out, err = run("backup", "--list")
    assert code == 0, err
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert " signed " in lines[backup_file.name]
    assert "UNSIGNED" in lines[foreign.name] and "signed by another key" in lines[foreign.name]
    rows = {row["name"]: row for row in json.loads(run("backup", "--list", "--json")[1])}
    assert rows[backup_file.name]["signed"] is True
    assert rows[foreign.name]["signed"] is False
    assert rows[foreign.name]["bad"] is False  # a sound backup, just not ours


@pytest.mark.engines("sqlite")
def test_health_counts_only_signed_backups(backup_file, settings):
    from dbtools.monitoring import UNHEALTHY, check_backup_freshness

    unsign(backup_file)
    check = check_backup_freshness()
    assert check.status == UNHEALTHY
    assert "no verified, signed backup (the newest verified one: signature missing)" in check.message


@pytest.mark.engines("sqlite")
def test_retention_never_counts_or_deletes_unsigned_backups(settings):
    """A planted "verified" manifest signed by someone else cannot push real backups out."""
    make_data("a", users=1)
    real = [Path(create_backup().path) for _ in range(2)]
    planted = [backup_signed_with(settings, KEY_B) for _ in range(3)]
    code, out, err = run("backup", "--prune", "--keep-last", "1")
    assert code == 0, err
    left = {p.name for p in Path(settings.MCMANAGER_BACKUP_DIR).iterdir()}
    assert real[1].name in left and real[0].name not in left  # the newest signed one is kept
    assert all(p.name in left for p in planted)
    assert "not signed by this installation" in out


@pytest.mark.engines("sqlite")
def test_edit_manifest_signs_again(backup_file):
    edit_manifest(backup_file, reason="cron")
    manifest = read_manifest(backup_file)
    assert manifest.reason == "cron" and manifest.signed


@pytest.mark.engines("sqlite")
@pytest.mark.parametrize("kind", ["directory", "fifo", "not text"])
def test_a_key_that_cannot_be_read_is_one_line_and_crashes_nothing(backup_file, settings, tmp_path, kind):
    broken = tmp_path / "broken_key"
    if kind == "directory":
        broken.mkdir()
    elif kind == "fifo":
        os.mkfifo(broken)
    else:
        broken.write_bytes(b"\xff\xfe" * 20)
    settings.MCMANAGER_BACKUP_SIGNING_KEY_FILE = broken
    [info] = list_backups()
    assert info.signed is False and "cannot check the signature" in info.signature
    assert run("backup", "--list")[0] == 0
    response = Client().get("/health/", HTTP_ACCEPT="application/json")
    assert response.status_code == 500  # no signed backup is known: unhealthy, said in JSON
    assert response.json()["checks"]["backup_freshness"]["status"] == "unhealthy"
    assert str(broken) not in response.content.decode()
    assert_refused("restore", [str(backup_file), "--noinput"], "cannot check the signature")
    code, out, err = run("backup", "-v", "0")
    assert code == 2 and "backup signing key" in err and "\n" not in err.strip()
