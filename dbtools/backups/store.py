"""The offsite store: one S3-compatible bucket and prefix (AWS S3, MinIO, Ceph, Backblaze B2, R2).

``MCMANAGER_OFFSITE_URL=s3://bucket/prefix`` with the standard ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION`` and ``AWS_ENDPOINT_URL`` (for servers
other than AWS) in the environment, read by boto3 as every AWS tool reads them.

A backup is stored as two objects, ``prefix/NAME`` and ``prefix/NAME.json`` (its signed
manifest), the manifest last: a backup without its manifest offsite is an interrupted
upload, never listed as a copy. Every upload is read back (size from the store, sha256
of the bytes streamed back) before it counts; every download is checked the same way
against the manifest before anything of it is used. Both stream: multipart uploads of
8 MiB parts, reads of 1 MiB, so memory stays flat with the size of the backup.

This module only moves bytes; what backup, restore, retention and health do with the
store is in ``dbtools.backups.offsite``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings

from ..errors import BackupFailed, CouldNotRun, VerificationFailed
from ..formatting import first_line
from ..manifest import MANIFEST_SUFFIX

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
            # boto3 is imported here, not at the top: it takes half a second to import, and
            # every command would pay it although most installations have no offsite store.
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
        from boto3.s3.transfer import TransferConfig  # as boto3 above: only with a store

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
