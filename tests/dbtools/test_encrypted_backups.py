"""Encrypted backups (age): no plaintext on disk while they are written, restored with the key only."""

import os
import tempfile
import threading
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from dbtools.backups import create_backup, list_backups, verify_backup
from dbtools.encryption import AGE_MAGIC
from dbtools.manifest import read_manifest

from .restore_helpers import data_digest, live_fingerprint, make_data

pytestmark = pytest.mark.django_db(transaction=True)

PLAIN_MAGICS = (
    b"SQLite format 3",
    b"PGDMP",
    b"-- MariaDB dump",
    b"-- MySQL dump",
    b"/*M!999999",
    b"\x28\xb5\x2f\xfd",
    b"\x1f\x8b",
)


def _keypair(directory: Path, name: str = "backup") -> tuple[str, Path]:
    from pyrage import x25519

    identity = x25519.Identity.generate()
    key_file = directory / f"{name}.agekey"
    key_file.write_text(f"# public key: {identity.to_public()}\n{identity}\n")
    key_file.chmod(0o600)
    return str(identity.to_public()), key_file


@pytest.fixture
def age_keys(settings, tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    public, key_file = _keypair(keys)
    settings.MCMANAGER_BACKUP_ENCRYPT_TO = public
    settings.MCMANAGER_BACKUP_DECRYPT_KEY_FILE = str(key_file)
    return public, key_file, keys


class PlaintextWatch:
    """Polls directories while a backup runs; remembers every file whose head is a plain dump."""

    def __init__(self, *directories: Path) -> None:
        self.directories = [d for d in directories if d.is_dir()]
        # Only what appears during the run: the temp directory holds other programs' files.
        self.before = {(str(d), e.name) for d in self.directories for e in os.scandir(d)}
        self.seen: set[str] = set()
        self.plain: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for directory in self.directories:
                try:
                    entries = list(os.scandir(directory))
                except OSError:
                    continue
                for entry in entries:
                    if (str(directory), entry.name) in self.before:
                        continue
                    try:
                        if not entry.is_file(follow_symlinks=False):
                            continue
                        with open(entry.path, "rb") as f:
                            head = f.read(32)
                    except OSError:
                        continue
                    self.seen.add(entry.name)
                    if head.startswith(PLAIN_MAGICS):
                        self.plain.append(f"{directory}/{entry.name}")
            self._stop.wait(0.002)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def test_an_encrypted_backup_never_has_plaintext_on_disk(settings, age_keys):
    public, _, _ = age_keys
    make_data("enc", users=30, servers_each=20)
    backup_dir = Path(settings.MCMANAGER_BACKUP_DIR)
    backup_dir.mkdir(parents=True, exist_ok=True)
    with PlaintextWatch(backup_dir, Path(tempfile.gettempdir())) as watch:
        result = create_backup()
    assert watch.plain == []
    assert any(name.endswith(".partial") for name in watch.seen), "the watch saw the backup being written"
    path = Path(result.path)
    assert path.name.endswith(".age")
    assert path.read_bytes().startswith(AGE_MAGIC)
    manifest = read_manifest(path)
    assert manifest.encryption == "age" and manifest.recipients == [public]
    assert manifest.signed and manifest.verified
    assert "AGE-SECRET-KEY" not in path.with_name(path.name + ".json").read_text()
    assert [b.name for b in list_backups()] == [path.name]


def test_restore_with_the_key_brings_the_data_back(settings, age_keys):
    make_data("enc", users=5, servers_each=3)
    before = data_digest()
    path = create_backup().path
    make_data("later", users=2)
    out = StringIO()
    call_command("restore", "--check", str(path), stdout=out)
    assert "would restore" in out.getvalue()
    call_command("restore", str(path), "--noinput", stdout=StringIO())
    assert data_digest() == before
    verified = verify_backup(path, "full")
    assert verified.ok, verified.checks


@pytest.mark.parametrize("key", ["wrong", "missing"])
def test_a_wrong_or_missing_key_is_one_line_and_the_live_database_is_unchanged(settings, age_keys, key, tmp_path):
    make_data("enc", users=5, servers_each=3)
    path = create_backup().path
    make_data("later", users=2)
    before = live_fingerprint()
    if key == "wrong":
        _, wrong = _keypair(tmp_path, "wrong")
        settings.MCMANAGER_BACKUP_DECRYPT_KEY_FILE = str(wrong)
        expected = "not one of the backup's recipients"
    else:
        settings.MCMANAGER_BACKUP_DECRYPT_KEY_FILE = ""
        expected = "no decryption key is set"
    for args in (["restore", str(path), "--noinput"], ["restore", "--check", str(path)]):
        with pytest.raises(CommandError) as caught:
            call_command(*args, stdout=StringIO())
        assert caught.value.returncode == 1
        assert expected in str(caught.value) and "\n" not in str(caught.value)
    assert live_fingerprint() == before


def test_full_verification_needs_the_key_else_it_says_so(settings, age_keys):
    make_data("enc", users=3)
    with_key = create_backup(verify="full")
    assert with_key.verification.level == "full"
    assert any(c.name == "row_counts" for c in with_key.verification.checks)
    settings.MCMANAGER_BACKUP_DECRYPT_KEY_FILE = ""
    without = create_backup(verify="full")
    manifest = read_manifest(without.path)
    assert manifest.verified and manifest.verification["level"] == "quick"
    notes = {c["name"]: c["detail"] for c in manifest.verification["checks"]}
    assert "MCMANAGER_BACKUP_DECRYPT_KEY_FILE is not set" in notes["full verification"]
    assert "checked before encryption" in notes["encryption"]


def test_a_recipient_that_is_not_an_age_key_stops_the_backup(settings):
    settings.MCMANAGER_BACKUP_ENCRYPT_TO = "age1notakey"
    with pytest.raises(CommandError) as caught:
        call_command("backup", stdout=StringIO())
    assert caught.value.returncode == 2
    assert list_backups() == []
