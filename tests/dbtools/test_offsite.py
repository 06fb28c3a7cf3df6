"""Offsite copies wired into backup, --list, --sync, restore, retention and health.

Against a real S3-compatible server (moto's server mode on 127.0.0.1, fixture
``s3_server``), on every engine (``make test``).
"""

import hashlib
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
from io import StringIO
from pathlib import Path

import boto3
import pytest
from django.core.management import CommandError, call_command
from pyrage import x25519

from dbtools.backups import RetentionPolicy, create_backup, list_backups, offsite, read_manifest
from dbtools.models import OperationLog
from dbtools.monitoring import DEGRADED, HEALTHY, backup_state, check_backup_freshness, health_report
from dbtools.signing import SigningKey, sign

from ..conftest import database_url_for, signing_env
from .backup_support import empty_database_url
from .offsite_support import s3_env
from .restore_helpers import data_digest, live_fingerprint, make_data
from .test_heartbeat import _Recorder

pytestmark = pytest.mark.django_db(transaction=True)

PREFIX = "nightly"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(settings, s3_server, tmp_path, monkeypatch):
    """MCMANAGER_OFFSITE_URL pointing at the test server's bucket; no cached store state.

    Temporary files go to a directory of this test's, so the check that no downloaded
    copy is left behind sees this test's leftovers only (not another run's).
    """
    settings.MCMANAGER_OFFSITE_URL = f"s3://backups/{PREFIX}"
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    offsite.forget_state()
    yield s3_server
    offsite.forget_state()


def s3():
    return boto3.client("s3")


def object_sha256(name: str) -> str:
    body = s3().get_object(Bucket="backups", Key=f"{PREFIX}/{name}")["Body"].read()
    return hashlib.sha256(body).hexdigest()


def run(command, *args):
    """call_command -> (exit status, stdout, stderr), as the shell would see them."""
    out, err = StringIO(), StringIO()
    try:
        call_command(command, *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), err.getvalue() + str(exc)
    return 0, out.getvalue(), err.getvalue()


def offsite_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("mcmanager-offsite-*")}


def drop_local(path) -> None:
    Path(path).unlink()
    Path(str(path) + ".json").unlink()


# --- backup -------------------------------------------------------------------------


def test_backup_lands_offsite_and_the_object_is_the_file(store):
    make_data("a")
    code, out, err = run("backup")
    assert code == 0, err
    path = Path(out.splitlines()[0])
    manifest = read_manifest(path)
    assert object_sha256(path.name) == manifest.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    stored = s3().get_object(Bucket="backups", Key=f"{PREFIX}/{path.name}.json")["Body"].read()
    assert stored == Path(str(path) + ".json").read_bytes(), "the signed manifest is uploaded as it is"
    assert f"s3://backups/{PREFIX}/{path.name}" in out
    entry = OperationLog.objects.filter(operation="backup").latest("started_at")
    assert entry.details["offsite"]["uploaded"] is True


def test_failed_upload_keeps_the_local_backup_and_exits_1(store):
    make_data("a")
    store.stop()
    code, out, err = run("backup")
    assert code == 1
    line = err.strip()
    assert "\n" not in line, "one line"
    assert "backup written and verified locally (" in line
    assert "but the offsite upload failed:" in line and line.endswith("the local backup is kept")
    [info] = list_backups()
    assert info.verified and info.signed and not info.problem
    assert str(info.path) in line
    entry = OperationLog.objects.filter(operation="backup").latest("started_at")
    assert entry.details["offsite"]["uploaded"] is False and entry.details["offsite"]["error"]


def test_another_backup_of_the_same_name_offsite_is_not_overwritten(store, settings):
    make_data("a")
    settings.MCMANAGER_OFFSITE_URL = ""
    mine, other = create_backup().path, create_backup().path
    settings.MCMANAGER_OFFSITE_URL = f"s3://backups/{PREFIX}"
    # Another machine's backup under the name of mine (the same prefix, the same second).
    for suffix in ("", ".json"):
        body = Path(str(other) + suffix).read_bytes()
        s3().put_object(Bucket="backups", Key=f"{PREFIX}/{mine.name}{suffix}", Body=body)
    code, out, err = run("backup", "--sync")
    assert code == 1
    assert f"offsite upload of {mine.name} failed" in err and "already holds another backup" in err
    assert "\n" not in err.strip()
    assert out.splitlines() == [f"uploaded: {other.name}"]
    assert object_sha256(mine.name) == read_manifest(other).sha256, "theirs is left as it was"


def test_restore_safety_backup_is_not_uploaded(store):
    make_data("a")
    first = create_backup().path
    code, out, err = run("restore", str(first), "--noinput")
    assert code == 0, err
    names = {i.name for i in list_backups()}
    assert len(names) == 2
    assert set(offsite.OffsiteStore.from_settings().list()) == {first.name}


# --- --list -------------------------------------------------------------------------


def test_list_shows_where_each_backup_lives(store):
    make_data("a")
    local_only = create_backup().path
    s3().delete_object(Bucket="backups", Key=f"{PREFIX}/{local_only.name}.json")
    both = create_backup().path
    offsite_only = create_backup().path
    drop_local(offsite_only)
    before = offsite_dirs()

    code, out, err = run("backup", "--list")
    assert code == 0 and not err, err
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert rows.keys() == {local_only.name, both.name, offsite_only.name}
    assert rows[local_only.name].split()[5] == "local"
    assert rows[both.name].split()[5] == "both"
    assert rows[offsite_only.name].split()[5] == "offsite"
    # The offsite-only one is described from its manifest, read from the store.
    assert "signed" in rows[offsite_only.name] and "verified" in rows[offsite_only.name]

    code, out, err = run("backup", "--list", "--json")
    listed = {entry["name"]: entry for entry in json.loads(out)}
    assert listed[local_only.name]["locations"] == ["local"]
    assert listed[both.name]["locations"] == ["local", "offsite"]
    assert listed[offsite_only.name]["locations"] == ["offsite"]
    assert listed[offsite_only.name]["signed"] is True and listed[offsite_only.name]["verified"] is True
    assert offsite_dirs() == before, "the manifests' temporary directory is removed"


def test_list_with_the_store_down_warns_and_lists_the_local_ones(store):
    make_data("a")
    path = create_backup().path
    store.stop()
    code, out, err = run("backup", "--list")
    assert code == 0
    assert err.startswith("warning: offsite copies not listed:") and "\n" not in err.strip()
    assert path.name in out and " local " in out


# --- restore from offsite -------------------------------------------------------------


def test_restore_latest_from_offsite_when_the_local_copy_is_gone(store):
    make_data("a")
    expected = data_digest()
    path = create_backup().path
    drop_local(path)
    make_data("b")
    assert data_digest() != expected
    before = offsite_dirs()
    code, out, err = run("restore", "--latest", "--noinput")
    assert code == 0, err
    assert data_digest() == expected
    assert offsite_dirs() == before, "the downloaded copy is removed"
    assert not (Path(tempfile.gettempdir()) / path.name).exists()


def test_restore_by_name_from_offsite(store):
    make_data("a")
    expected = data_digest()
    path = create_backup().path
    drop_local(path)
    make_data("b")
    code, out, err = run("restore", path.name, "--noinput")
    assert code == 0, err
    assert data_digest() == expected


def test_restore_check_latest_and_by_name_from_offsite(store):
    make_data("a")
    path = create_backup().path
    drop_local(path)
    before = offsite_dirs()
    for args in (["--check", "--latest"], ["--check", path.name]):
        code, out, err = run("restore", *args)
        assert code == 0, err
        assert "would restore" in out and path.name in out
    assert offsite_dirs() == before


def test_latest_prefers_a_newer_offsite_copy_over_an_older_local_one(store):
    make_data("a")
    older = create_backup().path
    s3().delete_object(Bucket="backups", Key=f"{PREFIX}/{older.name}.json")  # local only
    make_data("b")
    expected = data_digest()
    newer = create_backup().path
    drop_local(newer)
    make_data("c")
    code, out, err = run("restore", "--latest", "--noinput")
    assert code == 0, err
    assert data_digest() == expected


def test_latest_with_the_store_down_restores_the_local_backup(store):
    make_data("a")
    expected = data_digest()
    create_backup()
    make_data("b")
    store.stop()
    code, out, err = run("restore", "--latest", "--noinput")
    assert code == 0, err
    assert data_digest() == expected


def test_latest_with_the_store_down_and_nothing_here_cannot_run(store):
    make_data("a")
    drop_local(create_backup().path)
    store.stop()
    before = live_fingerprint()
    code, out, err = run("restore", "--latest", "--noinput")
    assert code == 2 and "no verified, signed backup here, and offsite listing" in err
    assert "\n" not in err.strip() and live_fingerprint() == before


def test_tampered_offsite_object_is_refused_before_it_is_loaded(store):
    make_data("a")
    path = create_backup().path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    drop_local(path)
    s3().put_object(Bucket="backups", Key=f"{PREFIX}/{path.name}", Body=bytes(data))
    make_data("b")
    before = live_fingerprint()
    dirs = offsite_dirs()
    for args in (["--latest", "--noinput"], [path.name, "--noinput"], ["--check", "--latest"]):
        code, out, err = run("restore", *args)
        assert code == 1, (args, out, err)
        assert "does not match its manifest" in err and "\n" not in err.strip()
        assert live_fingerprint() == before
    assert offsite_dirs() == dirs


def test_unsigned_offsite_manifest_is_refused_unless_forced(store):
    make_data("a")
    path = create_backup().path
    manifest = json.loads(Path(str(path) + ".json").read_text())
    manifest["reason"] = "edited"  # the signature no longer matches
    drop_local(path)
    s3().put_object(Bucket="backups", Key=f"{PREFIX}/{path.name}.json", Body=json.dumps(manifest).encode())
    make_data("b")
    before = live_fingerprint()
    code, out, err = run("restore", path.name, "--noinput")
    assert code == 1 and "not signed by this installation's key" in err
    assert live_fingerprint() == before
    # --latest never takes an unsigned copy.
    code, out, err = run("restore", "--latest", "--noinput")
    assert code == 1 and live_fingerprint() == before


# --- retention and --sync -------------------------------------------------------------


def test_retention_deletes_offsite_copies_of_deleted_backups_and_keeps_the_newest(store):
    make_data("a")
    first = create_backup(retention=RetentionPolicy()).path
    second = create_backup(retention=RetentionPolicy()).path
    third = create_backup(retention=RetentionPolicy(keep_last=1)).path
    assert {i.name for i in list_backups()} == {third.name}
    assert set(offsite.OffsiteStore.from_settings().list()) == {third.name}
    keys = {o["Key"] for o in s3().list_objects_v2(Bucket="backups").get("Contents", [])}
    assert not any(first.name in k or second.name in k for k in keys)


def test_prune_command_deletes_offsite_copies_too_but_not_on_a_dry_run(store):
    make_data("a")
    paths = [create_backup(retention=RetentionPolicy()).path for _ in range(3)]
    listed = offsite.OffsiteStore.from_settings().list
    code, out, err = run("backup", "--prune", "--keep-last", "1", "--dry-run")
    assert code == 0 and set(listed()) == {p.name for p in paths}
    code, out, err = run("backup", "--prune", "--keep-last", "1")
    assert code == 0, err
    assert f"deleted offsite: {paths[0].name}" in out and f"deleted offsite: {paths[1].name}" in out
    assert set(listed()) == {paths[2].name}, "the newest verified stays, in both places"
    assert [i.name for i in list_backups()] == [paths[2].name]


def test_offsite_only_copies_are_not_pruned(store):
    make_data("a")
    old, second, third = (create_backup(retention=RetentionPolicy()).path for _ in range(3))
    drop_local(old)
    code, out, err = run("backup", "--prune", "--keep-last", "1")
    assert code == 0, err
    assert set(offsite.OffsiteStore.from_settings().list()) == {old.name, third.name}


def test_sync_uploads_what_is_missing(store, settings):
    make_data("a")
    settings.MCMANAGER_OFFSITE_URL = ""
    missing = [create_backup().path, create_backup().path]
    settings.MCMANAGER_OFFSITE_URL = f"s3://backups/{PREFIX}"
    already = create_backup().path
    code, out, err = run("backup", "--sync")
    assert code == 0, err
    assert out.splitlines() == [f"uploaded: {p.name}" for p in missing]
    listed = offsite.OffsiteStore.from_settings().list()
    assert set(listed) == {p.name for p in [*missing, already]}
    for p in missing:
        assert object_sha256(p.name) == read_manifest(p).sha256
    code, out, err = run("backup", "--sync")
    assert code == 0 and "Nothing to upload: 3 backup(s) already offsite." in out


def test_sync_with_the_store_down_fails_in_one_line(store):
    make_data("a")
    create_backup()
    store.stop()
    code, out, err = run("backup", "--sync")
    assert code == 2 and "offsite listing" in err and "\n" not in err.strip()


# --- health -------------------------------------------------------------------------


def test_health_shows_the_offsite_copy_and_degrades_when_the_store_is_down(store, client, admin_user):
    make_data("a")
    path = create_backup().path
    state = backup_state()["offsite"]
    assert state["configured"] and state["ok"] and state["newest"]["name"] == path.name
    assert state["newest"]["age_seconds"] < 600
    check = check_backup_freshness()
    assert check.status == HEALTHY and "newest offsite copy" in check.message
    client.force_login(admin_user)
    page = client.get("/admin/health/").content.decode()
    assert 'id="offsite"' in page and path.name in page

    store.stop()
    offsite.forget_state()
    check = check_backup_freshness()
    assert check.status == DEGRADED, check.as_dict()
    assert "the offsite store does not answer" in check.message
    report = health_report()
    assert {c.name: c.status for c in report.checks}["backup_freshness"] == DEGRADED
    assert report.status != "unhealthy"
    page = client.get("/admin/health/").content.decode()
    assert "store down" in page


def test_health_state_is_cached_for_a_minute(store):
    make_data("a")
    create_backup()
    assert backup_state()["offsite"]["ok"]
    store.stop()
    assert backup_state()["offsite"]["ok"], "cached: /health/ does not ask the store every time"
    offsite.forget_state()
    assert not backup_state()["offsite"]["ok"]


# --- two machines -----------------------------------------------------------------------


def manage(instance: Path, database_url: str, server, *args, extra: dict | None = None):
    """manage.py as on a machine whose instance directory is ``instance`` (backups, signing key);
    ``extra``: more environment (encryption keys, a heartbeat URL)."""
    env = dict(s3_env(server), **signing_env())
    env.update(
        MCMANAGER_BACKUP_SIGNING_KEY_FILE=str(instance / "backup_signing_key"),
        DATABASE_URL=database_url,
        MCMANAGER_BACKUP_DIR=str(instance / "backups"),
        MCMANAGER_OFFSITE_URL=f"s3://backups/{PREFIX}",
        DJANGO_SETTINGS_MODULE="mcmanager.settings",
    )
    env.update(extra or {})
    env.pop("DJANGO_DEBUG", None)
    (instance / "tmp").mkdir(exist_ok=True)
    env["TMPDIR"] = str(instance / "tmp")
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def from_another_server(first: Path) -> None:
    """Make the bucket's manifests say what a real old machine's say: that their database
    lived on another server. Both "machines" here share one database server (one SQLite
    directory), so the new machine would see a live database of its own server and rightly
    refuse the fallback of restore --latest; the manifests are signed again with the first
    machine's key, as it would have signed them."""
    key = SigningKey((first / "backup_signing_key").read_text().strip().encode(), "machine1")
    client = s3()
    for entry in client.list_objects_v2(Bucket="backups", Prefix=PREFIX)["Contents"]:
        if entry["Key"].endswith(".json"):
            fields = json.loads(client.get_object(Bucket="backups", Key=entry["Key"])["Body"].read())
            fields["database_identity"] = "old-machine:gone"
            fields["signature"] = sign(fields, key)
            client.put_object(Bucket="backups", Key=entry["Key"], Body=json.dumps(fields).encode())


def test_backup_on_one_machine_restores_on_a_new_one(store, tmp_path):
    make_data("a")
    expected = data_digest()
    first, second = tmp_path / "machine1", tmp_path / "machine2"
    first.mkdir(mode=0o700)
    second.mkdir(mode=0o700)
    result = manage(first, database_url_for(), store, "backup")
    assert result.returncode == 0, result.stderr
    from_another_server(first)
    # The one thing carried over besides the environment: the old machine's signing key.
    key = (first / "backup_signing_key").read_bytes()
    fd = os.open(second / "backup_signing_key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    url, drop = empty_database_url()
    try:
        result = manage(second, url, store, "migrate", "--noinput")
        assert result.returncode == 0, result.stderr
        result = manage(second, url, store, "restore", "--latest", "--noinput")
        assert result.returncode == 0, result.stderr
        code = "from tests.dbtools.restore_helpers import data_digest; print(data_digest())"
        result = manage(second, url, store, "shell", "-c", code)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().splitlines()[-1] == expected
        names = [n for n in os.listdir(second / "backups") if not n.endswith(".json")]
        # Only the new machine's own safety backup; the downloaded copy is gone.
        assert len(names) == 1 and "pre-restore" in (second / "backups" / (names[0] + ".json")).read_text()
        assert list((second / "tmp").iterdir()) == [], "the downloaded copy is removed"
    finally:
        drop()


def test_encrypted_offsite_backup_restores_on_a_new_machine_and_the_monitor_saw_every_run(store, tmp_path):
    """Issue 17's whole story: a backup made on one machine lands encrypted in the bucket,
    a new machine with only the documented environment restores it, a heartbeat for each run."""

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.heard = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    identity = x25519.Identity.generate()
    key_file = tmp_path / "backup.agekey"
    key_file.write_text(f"{identity}\n")
    key_file.chmod(0o600)
    extra = {
        "MCMANAGER_BACKUP_ENCRYPT_TO": str(identity.to_public()),
        "MCMANAGER_BACKUP_DECRYPT_KEY_FILE": str(key_file),
        "MCMANAGER_BACKUP_PING_URL": f"http://127.0.0.1:{server.server_address[1]}/ping/machine",
    }
    try:
        make_data("enc")
        expected = data_digest()
        first, second = tmp_path / "machine1", tmp_path / "machine2"
        first.mkdir(mode=0o700)
        second.mkdir(mode=0o700)
        result = manage(first, database_url_for(), store, "backup", extra=extra)
        assert result.returncode == 0, result.stderr
        from_another_server(first)
        objects = boto3.client("s3").list_objects_v2(Bucket="backups", Prefix=PREFIX)["Contents"]
        backup_key = next(o["Key"] for o in objects if not o["Key"].endswith(".json"))
        body = boto3.client("s3").get_object(Bucket="backups", Key=backup_key)["Body"].read()
        assert backup_key.endswith(".age") and body.startswith(b"age-encryption.org/v1\n")
        key = (first / "backup_signing_key").read_bytes()
        fd = os.open(second / "backup_signing_key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key)
        url, drop = empty_database_url()
        try:
            assert manage(second, url, store, "migrate", "--noinput", extra=extra).returncode == 0
            result = manage(second, url, store, "restore", "--check", "--latest", extra=extra)
            assert result.returncode == 0, result.stderr
            result = manage(second, url, store, "restore", "--latest", "--noinput", extra=extra)
            assert result.returncode == 0, result.stderr
            code = "from tests.dbtools.restore_helpers import data_digest; print(data_digest())"
            result = manage(second, url, store, "shell", "-c", code, extra=extra)
            assert result.stdout.strip().splitlines()[-1] == expected
            assert list((second / "tmp").iterdir()) == [], "the downloaded copy is removed"
        finally:
            drop()
        assert [(path, body.split(":")[0]) for path, body in server.heard] == [
            ("/ping/machine/start", "backup"),
            ("/ping/machine", "backup"),
            ("/ping/machine/start", "restore --check"),
            ("/ping/machine", "restore --check"),
        ]
    finally:
        server.shutdown()
        server.server_close()
