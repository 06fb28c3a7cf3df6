"""The manifest: a JSON file beside each backup saying what it is and how it was checked.

A manifest is input like the backup it describes (anyone who can write the backup
directory can write one), so ``read_manifest`` trusts nothing in it: the file is read
only if it is a regular file of at most MAX_MANIFEST_BYTES, every field is checked for
type and range, and its signature (dbtools.signing) is verified from the very bytes
read. A bad manifest is one VerificationFailed line, never a traceback.
"""

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from .errors import VerificationFailed
from .formatting import first_line
from .signing import Authenticity, check_signature, keyring, sign
from .streams import COMPRESSIONS, NotRegularFile, open_regular, unique_suffix

FORMAT_VERSION = 1
MANIFEST_SUFFIX = ".json"
MAX_MANIFEST_BYTES = 1024 * 1024
# Our manifests nest four levels deep (verification -> checks -> check -> detail).
MAX_DEPTH = 8
MAX_TEXT = 4096
SHA256_RE = re.compile(r"[0-9a-f]{64}")


@dataclass
class BackupManifest:
    """What a backup holds (engine, schema, rows), its checksum, and the verification done on it."""

    format_version: int = FORMAT_VERSION
    file: str = ""
    engine: str = ""
    server_version: str = ""
    database_alias: str = "default"
    database_name: str = ""
    # Where the database lives beyond its name (Engine.database_identity): SQLite the file's
    # real path, a server's own identity. Absent in older manifests (matched by name).
    database_identity: str = ""
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
    # The age public keys an encrypted backup was written to (never a secret).
    recipients: list[str] = field(default_factory=list)
    duration_ms: int = 0
    verification: dict = field(default_factory=dict)
    # {"alg": "hmac-sha256", "key_id": ..., "value": ...}, set by write_manifest.
    signature: dict | None = None

    # Whether the signature verifies: set by read_manifest from the bytes it read, never
    # written (a manifest built in memory has not been checked: None).
    authenticity: ClassVar[Authenticity | None] = None

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

    @property
    def signed(self) -> bool:
        """Signed by this installation's key (a current or an old one), as read."""
        return self.authenticity is not None and self.authenticity.ok


def parse_time(value: str) -> datetime:
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def manifest_path(backup_path) -> Path:
    backup_path = Path(backup_path)
    return backup_path.with_name(backup_path.name + MANIFEST_SUFFIX)


def _got(value) -> str:
    """A value from a manifest, as a message may show it (short, one line)."""
    if value is None:
        return "null"
    if isinstance(value, dict | list):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    return repr(value)[:40]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _too_deep(data, limit: int) -> bool:
    """Whether ``data`` nests deeper than ``limit`` levels (walked without recursion)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _is_time(value) -> bool:
    try:
        parse_time(value)
    except (TypeError, ValueError, AttributeError):
        return False
    return True


def _is_names(value) -> bool:
    return isinstance(value, list) and all(isinstance(n, str) for n in value)


# Each field: (check, what it must be). Fields absent from the file take their defaults,
# except the required ones.
TEXT_FIELDS = ("file", "engine", "server_version", "database_alias", "database_name", "database_identity")
TEXT_FIELDS += ("reason", "actor")
TEXT_FIELDS += ("dump_format", "tool")
REQUIRED_FIELDS = ("format_version", "engine", "created_at", "sha256", "size", "compression", "row_counts")
FIELD_RULES = {
    **{
        name: (lambda v: isinstance(v, str) and len(v) <= MAX_TEXT, f"a text of at most {MAX_TEXT} characters")
        for name in TEXT_FIELDS
    },
    "created_at": (_is_time, "an ISO 8601 time"),
    "migrations": (
        lambda v: isinstance(v, dict) and all(_is_names(names) for names in v.values()),
        "an object of app name -> list of migration names",
    ),
    "row_counts": (
        lambda v: isinstance(v, dict) and all(_is_int(n) and n >= 0 for n in v.values()),
        "an object of table -> row count, each a whole number 0 or more",
    ),
    "size": (lambda v: _is_int(v) and v >= 0, "a whole number of bytes, 0 or more"),
    "sha256": (lambda v: isinstance(v, str) and SHA256_RE.fullmatch(v) is not None, "64 lowercase hex digits"),
    "compression": (lambda v: v in COMPRESSIONS, " or ".join(COMPRESSIONS)),
    "encryption": (lambda v: v is None or isinstance(v, str), "null or a text"),
    "recipients": (
        lambda v: isinstance(v, list) and len(v) <= 100 and all(isinstance(r, str) and len(r) <= MAX_TEXT for r in v),
        "a list of age public keys",
    ),
    "duration_ms": (lambda v: _is_int(v) and v >= 0, "a whole number, 0 or more"),
    "verification": (
        lambda v: (
            isinstance(v, dict)
            and isinstance(v.get("ok", False), bool)
            and isinstance(v.get("level", ""), str)
            and isinstance(v.get("at", ""), str)
            and isinstance(v.get("checks", []), list)
            and all(isinstance(c, dict) for c in v.get("checks", []))
        ),
        'an object with "ok" (true/false), "level", "at" and "checks" (a list of objects)',
    ),
    "signature": (
        lambda v: (
            v is None
            or (
                isinstance(v, dict)
                and isinstance(v.get("alg"), str)
                and isinstance(v.get("key_id"), str)
                and isinstance(v.get("value"), str)
                and SHA256_RE.fullmatch(v["value"]) is not None
            )
        ),
        'null or {"alg", "key_id", "value": 64 hex digits}',
    ),
}


def manifest_problem(data) -> str | None:
    """What is wrong with a manifest's parsed JSON, in a few words; None when every field is sound."""
    if not isinstance(data, dict):
        return f"not a JSON object ({_got(data)})"
    if _too_deep(data, MAX_DEPTH):
        return f"nested deeper than {MAX_DEPTH} levels"
    version = data.get("format_version")
    if not _is_int(version) or version != FORMAT_VERSION:
        return f"format_version is {_got(version)}, not {FORMAT_VERSION}"
    for name in REQUIRED_FIELDS:
        if name not in data:
            return f"{name} is missing"
    for name, (check, wanted) in FIELD_RULES.items():
        if name in data and not check(data[name]):
            return f"{name} must be {wanted} (got {_got(data[name])})"
    return None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number")


def _read_bounded(path: Path, name: str) -> bytes:
    """The bytes of a manifest: a regular file (never a FIFO that would block), at most 1 MiB."""
    try:
        with open_regular(path) as fh:  # a FIFO named like a manifest must not block
            raw = fh.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise VerificationFailed(f"{name} has no manifest ({path.name} is missing)") from None
    except NotRegularFile as exc:
        raise VerificationFailed(f"the manifest of {name} is unreadable: {path.name} is {exc.kind}") from None
    except OSError as exc:
        raise VerificationFailed(f"the manifest of {name} is unreadable: {exc.strerror or exc}") from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise VerificationFailed(f"the manifest of {name} is bad: larger than {MAX_MANIFEST_BYTES // 1024} KiB")
    return raw


def read_manifest(backup_path, keys=None) -> BackupManifest:
    """The manifest beside ``backup_path``, every field checked, its signature verified.

    ``keys``: a dbtools.signing.Keyring (default: read now; a listing reads it once for
    all its files). The verdict on the signature is the
    manifest's ``authenticity``: callers decide (restore refuses unless --force).
    Raises VerificationFailed (one line) when the manifest is missing, unreadable or bad.
    """

    name = Path(backup_path).name
    raw = _read_bounded(manifest_path(backup_path), name)
    keys = keyring() if keys is None else keys
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise VerificationFailed(f"the manifest of {name} is bad: nested too deeply") from None
    except ValueError as exc:
        raise VerificationFailed(f"the manifest of {name} is unreadable: not JSON ({first_line(exc)})") from None
    # The same bytes checked with the same keys give the same verdict: a listing of a year
    # of backups (the dashboard, /health/) checks each manifest once per process, not per request.
    memo_key = (hashlib.sha256(raw).digest(), tuple(k.key_id for k in keys.keys), keys.problem)
    if memo_key in _VERDICTS:
        problem, authenticity = _VERDICTS[memo_key]
    else:
        problem = manifest_problem(data)
        authenticity = None if problem is not None else check_signature(data, keys)
        if len(_VERDICTS) >= _VERDICTS_MAX:
            _VERDICTS.clear()
        _VERDICTS[memo_key] = (problem, authenticity)
    if problem is not None:
        raise VerificationFailed(f"the manifest of {name} is bad: {problem}")
    manifest = BackupManifest.from_dict(data)
    manifest.authenticity = authenticity
    return manifest


# read_manifest's verdicts by (sha256 of the manifest's bytes, keys); bounded, cleared when full.
_VERDICTS: dict = {}
_VERDICTS_MAX = 4096


def write_manifest(backup_path, manifest: BackupManifest) -> Path:
    """Sign the manifest with this installation's key and write it (or replace it) atomically.

    Signed over the fields exactly as they will be read back (a JSON round trip), so the
    signature verifies whatever the Python types were. Raises CouldNotRun when there is
    no usable signing key.
    """

    fields = json.loads(json.dumps(manifest.as_dict()))
    fields.pop("signature", None)
    manifest.signature = fields["signature"] = sign(fields)
    path = manifest_path(backup_path)
    tmp = path.with_name(f".{path.name}.{unique_suffix()}.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(fields, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
