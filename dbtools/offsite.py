"""Offsite copies of backups on S3-compatible storage (AWS S3, MinIO, Ceph, Backblaze B2, R2).

``MCMANAGER_OFFSITE_URL=s3://bucket/prefix`` with the standard ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION`` and ``AWS_ENDPOINT_URL`` (for servers
other than AWS) in the environment, read by boto3 as every AWS tool reads them.

A backup is stored as two objects, ``prefix/NAME`` and ``prefix/NAME.json`` (its signed
manifest), the manifest last: a backup without its manifest offsite is an interrupted
upload, never listed as a copy. Every upload is read back (size from the store, sha256
of the bytes streamed back) before it counts; every download is checked the same way
against the manifest before anything of it is used. Both stream: multipart uploads of
8 MiB parts, reads of 1 MiB, so memory stays flat with the size of the backup.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

from django.conf import settings

from .errors import BackupFailed, CouldNotRun, DbtoolsError, VerificationFailed, first_line

logger = logging.getLogger("dbtools.offsite")

MANIFEST_SUFFIX = ".json"
PART_SIZE = 8 << 20
READ_SIZE = 1 << 20


@dataclass(frozen=True)
class OffsiteObject:
    name: str
    size: int


def parse_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of ``s3://bucket/prefix``; ValueError naming what is wrong."""
    parsed = urlparse(url.strip())
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"{url!r} is not an s3://bucket/prefix URL")
    return parsed.netloc, parsed.path.strip("/")


class OffsiteStore:
    """One bucket and prefix; every method raises dbtools errors with one line, never botocore's."""

    def __init__(self, url: str) -> None:
        self.url = url.strip().rstrip("/")
        self.bucket, self.prefix = parse_url(url)
        self._client = None

    @classmethod
    def from_settings(cls) -> OffsiteStore | None:
        url = getattr(settings, "MCMANAGER_OFFSITE_URL", "") or ""
        return cls(url) if url.strip() else None

    @property
    def client(self):
        if self._client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:  # pragma: no cover - boto3 is in requirements.txt
                raise CouldNotRun("offsite copies need boto3 (pip install -r requirements.txt)") from None
            config = Config(
                connect_timeout=5,
                read_timeout=60,
                retries={"max_attempts": 2, "mode": "standard"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
            # A session of its own: the environment as it is now, no credentials cached by another.
            self._client = boto3.session.Session().client("s3", config=config)
        return self._client

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def where(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.key(name)}"

    def _fail(self, what: str, exc: BaseException, error=BackupFailed):
        return error(f"offsite {what} at s3://{self.bucket}/{self.prefix} failed: {_reason(exc)}")

    # --- writing ------------------------------------------------------------------

    def upload(self, path, manifest_file, sha256: str) -> None:
        """Upload the backup and then its manifest; read the backup back and compare.

        BackupFailed (one line) when anything fails; the local files are never touched.
        """
        from boto3.s3.transfer import TransferConfig

        path = Path(path)
        transfer = TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, max_concurrency=2)
        try:
            self.client.upload_file(str(path), self.bucket, self.key(path.name), Config=transfer)
            size, digest = self._read_back(path.name)
        except Exception as exc:
            raise self._fail("upload", exc) from None
        local_size = path.stat().st_size
        if size != local_size or digest != sha256:
            raise BackupFailed(
                f"offsite copy {self.where(path.name)} does not match the backup "
                f"({size} bytes, sha256 {digest[:12]}...; the backup has {local_size} bytes, sha256 {sha256[:12]}...)"
            )
        try:
            self.client.upload_file(str(manifest_file), self.bucket, self.key(path.name + MANIFEST_SUFFIX))
        except Exception as exc:
            raise self._fail("upload of the manifest", exc) from None

    def _read_back(self, name: str) -> tuple[int, str]:
        """The stored object's size and the sha256 of its bytes, streamed back."""
        response = self.client.get_object(Bucket=self.bucket, Key=self.key(name))
        digest = hashlib.sha256()
        size = 0
        body = response["Body"]
        try:
            while chunk := body.read(READ_SIZE):
                digest.update(chunk)
                size += len(chunk)
        finally:
            body.close()
        return size, digest.hexdigest()

    def delete(self, name: str) -> None:
        """Delete the manifest first (so the copy stops counting), then the backup."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key(name + MANIFEST_SUFFIX))
            self.client.delete_object(Bucket=self.bucket, Key=self.key(name))
        except Exception as exc:
            raise self._fail(f"delete of {name}", exc) from None

    # --- reading ------------------------------------------------------------------

    def list(self) -> dict[str, OffsiteObject]:
        """The complete copies (backup and manifest both there), by backup name."""
        objects: dict[str, int] = {}
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            prefix = f"{self.prefix}/" if self.prefix else ""
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    name = item["Key"][len(prefix) :]
                    if "/" not in name:
                        objects[name] = item["Size"]
        except Exception as exc:
            raise self._fail("listing", exc, CouldNotRun) from None
        return {
            name: OffsiteObject(name, size)
            for name, size in objects.items()
            if not name.endswith(MANIFEST_SUFFIX) and name + MANIFEST_SUFFIX in objects
        }

    def fetch_manifest(self, name: str, directory) -> Path:
        """Download ``name``'s manifest into ``directory`` (as ``name.json``); returns its path."""
        target = Path(directory) / (name + MANIFEST_SUFFIX)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key(name + MANIFEST_SUFFIX))
            data = response["Body"].read((1 << 20) + 1)
        except Exception as exc:
            raise self._fail(f"download of {name}'s manifest", exc, CouldNotRun) from None
        if len(data) > 1 << 20:
            raise VerificationFailed(f"the offsite manifest of {name} is over 1 MiB: not a manifest")
        _write_private(target, data)
        return target

    def fetch(self, name: str, directory, size: int, sha256: str) -> Path:
        """Download the backup into ``directory``, checking size and sha256 as it streams.

        The file is 0600 and removed again when it does not match or the download fails.
        """
        target = Path(directory) / name
        digest = hashlib.sha256()
        written = 0
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    response = self.client.get_object(Bucket=self.bucket, Key=self.key(name))
                    body = response["Body"]
                    while chunk := body.read(READ_SIZE):
                        written += len(chunk)
                        if written > size:
                            break
                        digest.update(chunk)
                        out.write(chunk)
                except Exception as exc:
                    raise self._fail(f"download of {name}", exc, CouldNotRun) from None
            if written != size or digest.hexdigest() != sha256:
                found = (
                    f"{'over ' if written > size else ''}{written} bytes" if written != size else "its sha256 differs"
                )
                raise VerificationFailed(
                    f"offsite copy {self.where(name)} does not match its manifest ({found}; the manifest says "
                    f"{size} bytes, sha256 {sha256[:12]}...): refused, nothing of it was loaded"
                )
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return target


def private_download_dir() -> tempfile.TemporaryDirectory:
    """A 0700 directory for downloaded copies, removed with everything in it when done."""
    return tempfile.TemporaryDirectory(prefix="mcmanager-offsite-")


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _reason(exc: BaseException) -> str:
    """botocore's errors as one line without the request's details."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error"):
        error = response["Error"]
        return f"{error.get('Code', 'error')}: {error.get('Message') or ''}".strip(": ")
    name = exc.__class__.__name__
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return "no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError", "ReadTimeoutError"):
        return f"the store does not answer ({first_line(exc)})"
    return first_line(exc) or name


# --- the service: what backup, restore, retention and health do with the store --------


def upload_backup(store: OffsiteStore, path) -> dict:
    """Upload one local backup and its signed manifest; the outcome as a dict for the log.

    Never raises for the store's failures: ``{"uploaded": False, "error": ...}`` says it,
    and the caller decides (``backup`` exits 1, keeping the local backup).
    """
    from .manifest import manifest_path, read_manifest

    path = Path(path)
    outcome = {"url": store.where(path.name), "uploaded": False, "error": ""}
    try:
        manifest = read_manifest(path)
        _refuse_overwrite(store, path.name, manifest.sha256)
        store.upload(path, manifest_path(path), manifest.sha256)
    except DbtoolsError as exc:
        outcome["error"] = str(exc)
    else:
        outcome["uploaded"] = True
    forget_state()
    return outcome


def _refuse_overwrite(store: OffsiteStore, name: str, sha256: str, objects: dict | None = None) -> None:
    """A copy of another backup under the same name (another machine on the same prefix, a
    name reused after a local deletion) is never replaced: BackupFailed instead."""
    if name not in (store.list() if objects is None else objects):
        return
    with private_download_dir() as tmp:
        try:
            theirs = fetch_checked_manifest(store, name, tmp).sha256
        except VerificationFailed:
            theirs = None
    if theirs != sha256:
        raise BackupFailed(
            f"{store.where(name)} already holds another backup of that name; not overwritten "
            "(give each machine its own prefix in MCMANAGER_OFFSITE_URL)"
        )


def backup_time(name: str):
    """The creation time in a backup's name (UTC), or None for a name that is not ours."""
    from .backup import NAME_RE

    match = NAME_RE.match(name)
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1) + match.group(2), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def fetch_checked_manifest(store: OffsiteStore, name: str, directory, keys=None):
    """``name``'s manifest downloaded into ``directory`` and read (fields and signature checked)."""
    from .manifest import read_manifest

    store.fetch_manifest(name, directory)
    return read_manifest(Path(directory) / name, keys)


def offsite_infos(store: OffsiteStore, objects: dict, local_names, keys=None) -> list:
    """BackupInfo entries of the copies that exist only offsite, from their manifests.

    The manifests (a few KB each) are read into a private temporary directory, removed at
    once: the listing then says engine, creation time, verification and signature of an
    offsite-only backup as it does of a local one, which is what choosing a backup to
    restore on a new machine needs. A manifest that cannot be read is a listed problem.
    """
    from .backup import BackupInfo

    infos = []
    with private_download_dir() as tmp:
        for name, obj in objects.items():
            if name in local_names:
                continue
            created = backup_time(name) or datetime.fromtimestamp(0, UTC)
            info = BackupInfo(path=store.where(name), name=name, created_at=created, size=obj.size)
            info.locations = ["offsite"]
            try:
                manifest = fetch_checked_manifest(store, name, tmp, keys)
            except DbtoolsError as exc:
                info.problem = str(exc)
                infos.append(info)
                continue
            info.manifest = manifest
            info.created_at = manifest.created
            info.engine = manifest.engine
            info.reason = manifest.reason
            info.verified = manifest.verified
            info.verification_level = manifest.verification.get("level", "")
            info.signed = manifest.signed
            info.signature = manifest.authenticity.detail
            if manifest.size != obj.size:
                info.problem = f"size {obj.size} differs from the manifest's {manifest.size}"
                info.verified = False
            infos.append(info)
    return infos


def list_everywhere(directory=None) -> tuple[list, str]:
    """The local backups and the offsite copies, newest first, each with its ``locations``.

    Returns (infos, warning): an unreachable store is a warning (the local backups are
    still listed, each marked local only), never a failure of the listing.
    """
    from .backup import list_backups
    from .signing import keyring

    infos = list_backups(directory)
    store = OffsiteStore.from_settings()
    if store is None:
        return infos, ""
    keys = keyring()
    try:
        objects = store.list()
        extra = offsite_infos(store, objects, {i.name for i in infos}, keys)
    except DbtoolsError as exc:
        return infos, f"offsite copies not listed: {exc}"
    for info in infos:
        if info.name in objects:
            info.locations = ["local", "offsite"]
    infos += extra
    infos.sort(key=lambda i: (i.created_at, i.name), reverse=True)
    return infos, ""


@dataclass
class SyncResult:
    """What ``backup --sync`` uploaded, found already offsite, and failed to upload (with why)."""

    uploaded: list[str]
    present: list[str]
    failed: dict[str, str]

    def as_dict(self) -> dict:
        return {"uploaded": self.uploaded, "present": self.present, "failed": self.failed}


def sync_backups(directory=None) -> SyncResult:
    """Upload the local verified, signed backups that have no copy offsite (after an outage).

    Raises CouldNotRun when no store is configured or it cannot be listed.
    """
    from .backup import list_backups

    store = OffsiteStore.from_settings()
    if store is None:
        raise CouldNotRun("no offsite store: set MCMANAGER_OFFSITE_URL (s3://bucket/prefix)")
    objects = store.list()
    result = SyncResult(uploaded=[], present=[], failed={})
    for info in sorted(list_backups(directory), key=lambda i: (i.created_at, i.name)):
        if info.problem or not info.verified or not info.signed:
            continue
        if info.name in objects:
            try:
                _refuse_overwrite(store, info.name, info.manifest.sha256, objects)
            except DbtoolsError as exc:
                result.failed[info.name] = str(exc)
            else:
                result.present.append(info.name)
            continue
        outcome = upload_backup(store, info.path)
        if outcome["uploaded"]:
            result.uploaded.append(info.name)
        else:
            result.failed[info.name] = outcome["error"]
    return result


def delete_offsite_copies(names) -> tuple[list[str], str]:
    """Delete the offsite copies of ``names`` (backups retention deleted locally).

    Returns (deleted, error): the store's failure is reported, never raised, so a prune
    of the local directory is not undone by an outage of the store.
    """
    store = OffsiteStore.from_settings()
    names = list(names)
    if store is None or not names:
        return [], ""
    deleted = []
    try:
        objects = store.list()
        for name in names:
            if name in objects:
                store.delete(name)
                deleted.append(name)
    except DbtoolsError as exc:
        return deleted, str(exc)
    return deleted, ""


_STATE_CACHE: dict = {}
STATE_TTL = 60.0


def offsite_state(now=None) -> dict:
    """The newest offsite copy and its age, for health and the dashboard; cached for a minute.

    A listing is one request (connect timeout 5 s); the cache keeps /health/ from asking
    the store on every request. Never raises: a failing store is ``ok: False`` with why.
    """
    store = OffsiteStore.from_settings()
    if store is None:
        return {"configured": False, "ok": True, "error": "", "count": 0, "newest": None}
    key = store.url
    cached = _STATE_CACHE.get(key)
    if cached and time.monotonic() - cached[0] < STATE_TTL:
        state = cached[1]
    else:
        state = {"configured": True, "ok": True, "error": "", "count": 0, "newest": None}
        try:
            objects = store.list()
        except DbtoolsError as exc:
            state.update(ok=False, error=str(exc))
        else:
            dated = sorted(((backup_time(n), n, o.size) for n, o in objects.items() if backup_time(n)), reverse=True)
            state["count"] = len(objects)
            if dated:
                created, name, size = dated[0]
                state["newest"] = {"name": name, "created_at": created.isoformat(), "size": size}
        _STATE_CACHE[key] = (time.monotonic(), state)
    state = {**state, "newest": dict(state["newest"]) if state["newest"] else None}
    if state["newest"]:
        now = now or datetime.now(UTC)
        age = (now - datetime.fromisoformat(state["newest"]["created_at"])).total_seconds()
        state["newest"].update(age_seconds=int(age), age_hours=round(age / 3600, 2))
    return state


def forget_state() -> None:
    """Drop the cached store state (after an upload, and in tests)."""
    _STATE_CACHE.clear()


# --- restoring from the store: the manifest first, then the file, both checked ------------


def fetch_named(store: OffsiteStore, directory, name: str, force: bool = False) -> Path | None:
    """Download the offsite backup ``name`` into ``directory``; None when the store has no copy.

    The manifest comes first and its signature is checked (unsigned: RestoreRefused unless
    ``force``); then the file, refused (VerificationFailed, removed) unless its size and
    sha256 match the manifest, before any of it is loaded.
    """
    from .errors import RestoreRefused
    from .signing import refusal

    if name not in store.list():
        return None
    manifest = fetch_checked_manifest(store, name, directory)
    if not manifest.signed and not force:
        raise RestoreRefused(refusal(name, manifest.authenticity))
    return store.fetch(name, directory, manifest.size, manifest.sha256)


def fetch_latest(store: OffsiteStore, directory, database: str, local) -> Path | None:
    """Download the newest offsite backup of ``database`` newer than ``local`` (a BackupInfo or None).

    Only a copy whose manifest is signed by this installation, verified, of this database
    (backup.belongs_to) and of the size stored counts; the others are skipped (logged).
    None when the newest usable backup is the local one. The store's failures raise (CouldNotRun).
    """
    from .backup import backup_directory, belongs_to, newest_to_restore
    from .signing import keyring

    objects = store.list()
    keys = keyring()
    floor = (backup_time(local.name) or local.created_at, local.name) if local is not None else None
    here = backup_directory()
    candidates = sorted(((backup_time(n), n) for n in objects if backup_time(n)), reverse=True)
    others = []
    for created, name in candidates:
        if floor is not None and (created, name) <= floor:
            break
        if (here / name).exists():
            continue  # judged by the local listing already
        try:
            manifest = fetch_checked_manifest(store, name, directory, keys)
        except VerificationFailed as exc:
            logger.warning("offsite copy %s skipped: %s", name, exc)
            continue
        if not (manifest.signed and manifest.verified) or manifest.size != objects[name].size:
            logger.info("offsite copy %s skipped: not a verified, signed backup of this size", name)
            continue
        if belongs_to(manifest, database):
            return store.fetch(name, directory, manifest.size, manifest.sha256)
        others.append(SimpleNamespace(name=name, manifest=manifest))
    # A new machine (no backup of its database here): the old machine's, when unambiguous.
    choice = newest_to_restore(others, database) if local is None else None
    if choice is not None:
        return store.fetch(choice.name, directory, choice.manifest.size, choice.manifest.sha256)
    return None
