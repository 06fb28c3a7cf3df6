"""Offsite copies of backups: what backup, restore, retention and health do with the store.

The store itself (``OffsiteStore``: one bucket and prefix, every transfer read back and
checked) is ``dbtools.backups.store``; this module decides what goes there and what comes
back: the upload of a new backup, ``backup --sync`` after an outage, the listing of the
copies beside the local backups, the deletions retention makes, the newest copy's age for
health, and the download a restore on a new machine needs (the manifest first, then the
file, both checked before any of it is loaded).
"""

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from ..engines import get_engine
from ..errors import BackupFailed, CouldNotRun, DbtoolsError, RestoreRefused, VerificationFailed
from ..manifest import manifest_path, read_manifest
from ..signing import keyring, refusal
from .catalogue import BackupInfo, backup_directory, backup_time, is_of, list_backups, newest_to_restore
from .store import OffsiteObject, OffsiteStore, parse_url, private_download_dir

__all__ = [
    "OffsiteObject",
    "OffsiteStore",
    "SyncResult",
    "delete_offsite_copies",
    "fetch_checked_manifest",
    "fetch_latest",
    "fetch_named",
    "forget_state",
    "list_everywhere",
    "offsite_infos",
    "offsite_state",
    "parse_url",
    "private_download_dir",
    "sync_backups",
    "upload_backup",
]

logger = logging.getLogger("dbtools.offsite")  # the logger's name from before the package, kept for log filters


def upload_backup(store: OffsiteStore, path) -> dict:
    """Upload one local backup and its signed manifest; the outcome as a dict for the log.

    Never raises for the store's failures: ``{"uploaded": False, "error": ...}`` says it,
    and the caller decides (``backup`` exits 1, keeping the local backup).
    """
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


def fetch_checked_manifest(store: OffsiteStore, name: str, directory, keys=None):
    """``name``'s manifest downloaded into ``directory`` and read (fields and signature checked)."""
    store.fetch_manifest(name, directory)
    return read_manifest(Path(directory) / name, keys)


def offsite_infos(store: OffsiteStore, objects: dict, local_names, keys=None) -> list:
    """BackupInfo entries of the copies that exist only offsite, from their manifests.

    The manifests (a few KB each) are read into a private temporary directory, removed at
    once: the listing then says engine, creation time, verification and signature of an
    offsite-only backup as it does of a local one, which is what choosing a backup to
    restore on a new machine needs. A manifest that cannot be read is a listed problem.
    """
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
            info.take_manifest(manifest, obj.size)
            infos.append(info)
    return infos


def list_everywhere(directory=None) -> tuple[list, str]:
    """The local backups and the offsite copies, newest first, each with its ``locations``.

    Returns (infos, warning): an unreachable store is a warning (the local backups are
    still listed, each marked local only), never a failure of the listing.
    """
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
    if name not in store.list():
        return None
    manifest = fetch_checked_manifest(store, name, directory)
    if not manifest.signed and not force:
        raise RestoreRefused(refusal(name, manifest.authenticity))
    return store.fetch(name, directory, manifest.size, manifest.sha256)


def fetch_latest(store: OffsiteStore, directory, database: str, local) -> Path | None:
    """Download the newest offsite backup of ``database`` newer than ``local`` (a BackupInfo or None).

    Only a copy whose manifest is signed by this installation, verified, of this database
    (catalogue.belongs_to) and of the size stored counts; the others are skipped (logged).
    None when the newest usable backup is the local one. The store's failures raise (CouldNotRun).
    """
    engine = get_engine(database)
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
        if is_of(manifest, engine):
            return store.fetch(name, directory, manifest.size, manifest.sha256)
        others.append(SimpleNamespace(name=name, manifest=manifest))
    # A new machine (no backup of its database here): the old machine's, when unambiguous.
    choice = newest_to_restore(others, database) if local is None else None
    if choice is not None:
        return store.fetch(choice.name, directory, choice.manifest.size, choice.manifest.sha256)
    return None
