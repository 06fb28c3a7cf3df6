"""The manifest: a JSON file beside each backup saying what it is and how it was checked."""

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .errors import VerificationFailed
from .streams import open_regular

FORMAT_VERSION = 1
MANIFEST_SUFFIX = ".json"


@dataclass
class BackupManifest:
    """What a backup holds (engine, schema, rows), its checksum, and the verification done on it."""

    format_version: int = FORMAT_VERSION
    file: str = ""
    engine: str = ""
    server_version: str = ""
    database_alias: str = "default"
    database_name: str = ""
    created_at: str = ""
    reason: str = "manual"
    actor: str = ""
    dump_format: str = ""
    tool: str = ""
    migrations: dict[str, list[str]] = field(default_factory=dict)
    row_counts: dict[str, int] = field(default_factory=dict)
    size: int = 0
    sha256: str = ""
    compression: str = "none"
    encryption: str | None = None
    duration_ms: int = 0
    verification: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "BackupManifest":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def created(self) -> datetime:
        return parse_time(self.created_at)

    @property
    def verified(self) -> bool:
        return bool(self.verification.get("ok"))


def parse_time(value: str) -> datetime:
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def manifest_path(backup_path) -> Path:
    backup_path = Path(backup_path)
    return backup_path.with_name(backup_path.name + MANIFEST_SUFFIX)


def read_manifest(backup_path) -> BackupManifest:
    """The manifest beside ``backup_path``; VerificationFailed when missing or unreadable."""
    path = manifest_path(backup_path)
    try:
        with open_regular(path, "r") as f:  # a FIFO named like a manifest must not block
            data = json.loads(f.read())
    except FileNotFoundError:
        raise VerificationFailed(f"{Path(backup_path).name} has no manifest ({path.name} is missing)") from None
    except (OSError, ValueError) as exc:
        raise VerificationFailed(f"the manifest of {Path(backup_path).name} is unreadable: {exc}") from None
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION or not data.get("sha256"):
        raise VerificationFailed(f"the manifest of {Path(backup_path).name} is not a format {FORMAT_VERSION} manifest")
    return BackupManifest.from_dict(data)


def write_manifest(backup_path, manifest: BackupManifest) -> Path:
    """Write (or replace) the manifest atomically: temp name, fsync, rename."""
    from .streams import unique_suffix

    path = manifest_path(backup_path)
    tmp = path.with_name(f".{path.name}.{unique_suffix()}.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(manifest.as_dict(), f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
