"""Signed manifests: HMAC-SHA256 over a manifest's fields, with a key kept outside the backup directory.

A backup counts as ours only when its manifest carries a signature made with this
installation's key (or an old key listed for verification after a rotation). The
manifest holds the backup file's sha256 and size, so the signature vouches for the file
too, and is checked before a single byte of the file is loaded.

HMAC-SHA256 (the standard library's ``hmac``), not Ed25519: the same installation signs
and verifies, so a shared secret is all it needs, with no dependency. The price of a
secret over a public key: whoever can verify can also sign, so the key is kept like the
database password, and never where backups go.

The key is ``MCMANAGER_BACKUP_SIGNING_KEY`` (its text) when set, else the file
``MCMANAGER_BACKUP_SIGNING_KEY_FILE`` (default ``<instance>/backup_signing_key``),
created 0600 on first use. A manifest names its key by a short fingerprint (``key_id``),
never by the key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from .errors import CouldNotRun

ALGORITHM = "hmac-sha256"
MIN_KEY_LENGTH = 16
MAX_KEY_FILE_BYTES = 4096
# Keeps a signature of a manifest from ever being valid for anything else signed with the key.
DOMAIN = b"mcmanager backup manifest v1\n"
KEY_ID_DOMAIN = b"mcmanager backup signing key id\n"
KEY_ID_RE = re.compile(r"[0-9a-f]{16}")
VALUE_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class SigningKey:
    """A key and where it came from (a setting's name or a file: for messages, never the key)."""

    secret: bytes = field(repr=False)
    source: str
    current: bool = True  # False: an old key, listed to verify backups made before a rotation

    @property
    def key_id(self) -> str:
        """A short fingerprint naming the key in manifests; it does not reveal the key."""
        return hashlib.sha256(KEY_ID_DOMAIN + self.secret).hexdigest()[:16]


@dataclass(frozen=True)
class Authenticity:
    """Whether a manifest's signature verifies with one of this installation's keys."""

    ok: bool
    status: str  # signed, signed-old-key, missing, unknown-key, mismatch, unsupported, unchecked
    detail: str
    key_id: str = ""

    def as_dict(self) -> dict:
        return {"ok": self.ok, "status": self.status, "detail": self.detail, "key_id": self.key_id}


def _key_from_text(text: str, source: str, current: bool = True) -> SigningKey:
    text = text.strip()
    if len(text) < MIN_KEY_LENGTH:
        raise CouldNotRun(
            f"the backup signing key in {source} is too short ({len(text)} characters, at least {MIN_KEY_LENGTH})"
        )
    return SigningKey(text.encode("utf-8"), source, current)


def _read_key_file(path: Path, current: bool = True) -> SigningKey:
    """The key in ``path``; FileNotFoundError when there is none, CouldNotRun when unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block us
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise CouldNotRun(f"the backup signing key {path} is not a regular file")
            data = fh.read(MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise CouldNotRun(f"cannot read the backup signing key {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise CouldNotRun(f"{path} is not a backup signing key (over {MAX_KEY_FILE_BYTES} bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CouldNotRun(f"{path} is not a backup signing key (not text)") from None
    return _key_from_text(text, str(path), current)


def _create_key_file(path: Path) -> SigningKey:
    """A new key in ``path``, 0600 in a 0700 directory; if another process wins the race, its key.

    The key is written under a temporary name (O_EXCL, so never through a planted file)
    and linked to ``path``, which fails rather than replaces: no reader ever sees a
    half-written key, and two first runs at once end up with one key.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.partial")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(secrets.token_urlsafe(32) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # created meanwhile by another run: use that one
        finally:
            tmp.unlink(missing_ok=True)
        return _read_key_file(path)
    except OSError as exc:
        raise CouldNotRun(f"cannot create the backup signing key {path}: {exc.strerror or exc}") from None


def key_files() -> list[Path]:
    """Every key file the settings name (the current one, then the old ones)."""
    files = [] if settings.MCMANAGER_BACKUP_SIGNING_KEY else [Path(settings.MCMANAGER_BACKUP_SIGNING_KEY_FILE)]
    return files + [Path(p) for p in settings.MCMANAGER_BACKUP_SIGNING_OLD_KEY_FILES]


def key_file_inside(directory) -> Path | None:
    """The first key file that lies inside ``directory`` (where anyone writing backups could read it)."""
    where = Path(directory).expanduser().resolve()
    for path in key_files():
        if path.expanduser().resolve().is_relative_to(where):
            return path
    return None


def check_key_location(directory=None) -> None:
    """Refuse a key file inside the backup directory (``directory``, default MCMANAGER_BACKUP_DIR)."""
    directory = Path(directory or settings.MCMANAGER_BACKUP_DIR)
    inside = key_file_inside(directory)
    if inside is not None:
        raise CouldNotRun(
            f"the backup signing key {inside} is inside the backup directory {directory}: "
            "whoever can write a backup could then sign one; keep the key elsewhere "
            "(MCMANAGER_BACKUP_SIGNING_KEY_FILE)"
        )


def signing_key() -> SigningKey:
    """The key new manifests are signed with, created in its file on first use.

    Raises CouldNotRun when the key is too short, unreadable, cannot be created, or its
    file is inside the backup directory.
    """
    text = settings.MCMANAGER_BACKUP_SIGNING_KEY
    if text:
        return _key_from_text(text, "MCMANAGER_BACKUP_SIGNING_KEY")
    check_key_location()
    path = Path(settings.MCMANAGER_BACKUP_SIGNING_KEY_FILE)
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        return _create_key_file(path)


def verification_keys() -> list[SigningKey]:
    """The current key (if it exists: verifying never creates one) and the old keys.

    Raises CouldNotRun when a key is unreadable or too short, an old key file is missing,
    or a key file is inside the backup directory.
    """
    check_key_location()
    keys = []
    if settings.MCMANAGER_BACKUP_SIGNING_KEY:
        keys.append(_key_from_text(settings.MCMANAGER_BACKUP_SIGNING_KEY, "MCMANAGER_BACKUP_SIGNING_KEY"))
    else:
        try:
            keys.append(_read_key_file(Path(settings.MCMANAGER_BACKUP_SIGNING_KEY_FILE)))
        except FileNotFoundError:
            pass  # no backup was signed here yet
    for n, text in enumerate(settings.MCMANAGER_BACKUP_SIGNING_OLD_KEYS, 1):
        keys.append(_key_from_text(text, f"MCMANAGER_BACKUP_SIGNING_OLD_KEYS (key {n})", current=False))
    for path in settings.MCMANAGER_BACKUP_SIGNING_OLD_KEY_FILES:
        try:
            keys.append(_read_key_file(Path(path), current=False))
        except FileNotFoundError:
            raise CouldNotRun(
                f"the old backup signing key {path} (MCMANAGER_BACKUP_SIGNING_OLD_KEY_FILES) does not exist"
            ) from None
    return keys


@dataclass(frozen=True)
class Keyring:
    """The keys that verify, or why none could be read (every check then says so)."""

    keys: list[SigningKey]
    problem: str = ""


def keyring() -> Keyring:
    """verification_keys(), with a key that cannot be read turned into the Keyring's problem."""
    try:
        return Keyring(verification_keys())
    except CouldNotRun as exc:
        return Keyring([], str(exc))


def canonical(fields: dict) -> bytes:
    """The bytes signed: every field but the signature, as compact JSON with sorted keys."""
    body = {k: v for k, v in fields.items() if k != "signature"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return DOMAIN + text.encode("ascii")


def sign(fields: dict, key: SigningKey | None = None) -> dict:
    """The signature of a manifest's ``fields`` (a JSON-ready dict), to store under "signature"."""
    key = key or signing_key()
    value = hmac.new(key.secret, canonical(fields), hashlib.sha256).hexdigest()
    return {"alg": ALGORITHM, "key_id": key.key_id, "value": value}


def check_signature(fields: dict, ring: Keyring) -> Authenticity:
    """Verify the "signature" of a manifest's ``fields`` (as read from the file) with the ring's keys."""
    keys = ring.keys
    signature = fields.get("signature")
    if signature is None:
        return Authenticity(False, "missing", "signature missing")
    if not isinstance(signature, dict) or not all(
        isinstance(signature.get(k), str) for k in ("alg", "key_id", "value")
    ):
        return Authenticity(False, "unsupported", "signature malformed")
    key_id = signature["key_id"] if KEY_ID_RE.fullmatch(signature["key_id"]) else "(malformed key id)"
    if signature["alg"] != ALGORITHM:
        return Authenticity(False, "unsupported", f"signature algorithm {signature['alg'][:20]!r} unknown", key_id)
    matching = [k for k in keys if k.key_id == signature["key_id"]]
    if not matching and ring.problem:
        return Authenticity(False, "unchecked", f"cannot check the signature: {ring.problem}", key_id)
    if not matching:
        known = "no key yet" if not keys else "keys " + ", ".join(k.key_id for k in keys)
        return Authenticity(
            False, "unknown-key", f"signed by another key, {key_id}; this installation has {known}", key_id
        )
    try:
        body = canonical(fields)
    except (TypeError, ValueError, RecursionError):
        return Authenticity(False, "mismatch", "signature does not match (the manifest cannot be encoded)", key_id)
    for key in matching:
        expected = hmac.new(key.secret, body, hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected.encode(), signature["value"].encode("utf-8", "replace")):
            if key.current:
                return Authenticity(True, "signed", f"signed by key {key_id}", key_id)
            return Authenticity(True, "signed-old-key", f"signed by old key {key_id}", key_id)
    return Authenticity(False, "mismatch", "signature does not match: the manifest was changed after signing", key_id)


def refusal(name: str, authenticity: Authenticity, action: str = "restore") -> str:
    """The one line saying a backup is not ours, and the way out."""
    return (
        f"{name} is not signed by this installation's key ({authenticity.detail}); "
        f"{action} it only with --force if you trust it"
    )
