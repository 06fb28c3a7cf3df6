"""The offsite store against a real S3-compatible server (moto's server mode; fixture s3_server)."""

import hashlib
import os

import boto3
import pytest
from django.core.checks import run_checks

from dbtools.backups import OffsiteStore, parse_url
from dbtools.errors import BackupFailed, CouldNotRun, VerificationFailed


def _backup(tmp_path, name="db-20261129-010203.sqlite3.zst", size=20 << 20):
    path = tmp_path / name
    data = os.urandom(size)
    path.write_bytes(data)
    manifest = tmp_path / (name + ".json")
    manifest.write_text('{"signed": "yes"}')
    return path, manifest, hashlib.sha256(data).hexdigest()


def test_parse_url():
    assert parse_url("s3://bucket/some/prefix/") == ("bucket", "some/prefix")
    assert parse_url("s3://bucket") == ("bucket", "")
    for bad in ("http://bucket/x", "s3:///x", "bucket/x"):
        with pytest.raises(ValueError):
            parse_url(bad)


def test_upload_is_read_back_and_listed_only_with_its_manifest(tmp_path, s3_server):
    store = OffsiteStore("s3://backups/nightly")
    path, manifest, digest = _backup(tmp_path)
    store.upload(path, manifest, digest)
    listed = store.list()
    assert list(listed) == [path.name] and listed[path.name].size == path.stat().st_size
    # The object is the file (read through another client), uploaded in parts.
    head = boto3.client("s3").head_object(Bucket="backups", Key=f"nightly/{path.name}")
    assert head["ContentLength"] == path.stat().st_size
    assert "-" in head["ETag"]  # a multipart upload's ETag: md5-of-parts "-" count
    # A backup object without its manifest is not a copy.
    boto3.client("s3").put_object(Bucket="backups", Key="nightly/half.sqlite3.zst", Body=b"x")
    assert list(store.list()) == [path.name]


def test_fetch_checks_size_and_checksum(tmp_path, s3_server):
    store = OffsiteStore("s3://backups/p")
    path, manifest, digest = _backup(tmp_path, size=3 << 20)
    store.upload(path, manifest, digest)
    down = tmp_path / "down"
    down.mkdir()
    got = store.fetch(path.name, down, path.stat().st_size, digest)
    assert got.read_bytes() == path.read_bytes()
    assert got.stat().st_mode & 0o777 == 0o600
    assert store.fetch_manifest(path.name, down).read_text() == manifest.read_text()
    got.unlink()
    # Tampered offsite: refused, nothing left behind.
    boto3.client("s3").put_object(Bucket="backups", Key=f"p/{path.name}", Body=b"evil" * 1000)
    with pytest.raises(VerificationFailed, match="does not match its manifest"):
        store.fetch(path.name, down, path.stat().st_size, digest)
    same_size = bytearray(path.read_bytes())
    same_size[100] ^= 1
    boto3.client("s3").put_object(Bucket="backups", Key=f"p/{path.name}", Body=bytes(same_size))
    with pytest.raises(VerificationFailed, match="sha256 differs"):
        store.fetch(path.name, down, path.stat().st_size, digest)
    assert list(down.iterdir()) == [down / (path.name + ".json")]


def test_delete_removes_both_objects(tmp_path, s3_server):
    store = OffsiteStore("s3://backups")
    path, manifest, digest = _backup(tmp_path, size=1000)
    store.upload(path, manifest, digest)
    store.delete(path.name)
    assert store.list() == {}
    assert boto3.client("s3").list_objects_v2(Bucket="backups").get("KeyCount") == 0


def test_a_store_that_stops_answering_is_one_line(tmp_path, s3_server):
    store = OffsiteStore("s3://backups")
    path, manifest, digest = _backup(tmp_path, size=1 << 20)
    s3_server.stop()
    with pytest.raises(BackupFailed, match="offsite upload at s3://backups/ failed: the store does not answer"):
        store.upload(path, manifest, digest)
    with pytest.raises(CouldNotRun, match="offsite listing"):
        store.list()
    assert path.exists() and manifest.exists()


def test_a_missing_bucket_and_missing_credentials(tmp_path, s3_server, monkeypatch):
    path, manifest, digest = _backup(tmp_path, size=1000)
    with pytest.raises(BackupFailed, match="NoSuchBucket"):
        OffsiteStore("s3://nobucket/x").upload(path, manifest, digest)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(BackupFailed, match="no credentials"):
        OffsiteStore("s3://backups/x").upload(path, manifest, digest)


@pytest.mark.parametrize(
    "setting,value,env,error",
    [
        ("MCMANAGER_OFFSITE_URL", "http://bucket/x", {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}, "E011"),
        ("MCMANAGER_OFFSITE_URL", "s3://bucket/x", {}, "E012"),
        ("MCMANAGER_BACKUP_ENCRYPT_TO", "age1notakey", {}, "E013"),
        ("MCMANAGER_BACKUP_DECRYPT_KEY_FILE", "/nonexistent/key.txt", {}, "E014"),
    ],
)
def test_settings_are_checked(settings, monkeypatch, setting, value, env, error):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, v in env.items():
        monkeypatch.setenv(name, v)
    assert not {e.id for e in run_checks(tags=["dbtools"])} & {f"dbtools.{error}"}
    setattr(settings, setting, value)
    assert f"dbtools.{error}" in {e.id for e in run_checks(tags=["dbtools"])}
