"""Finding the backup to restore: a path, a name in the backup directory, the newest verified
one (``--latest``), or a copy fetched from the offsite store; and recognising a dump's engine."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .. import backups
from ..engines import Engine, engine_for_dump, get_engine
from ..errors import CouldNotRun, RestoreRefused

logger = logging.getLogger("dbtools.restore")


def resolve_source(source: str | os.PathLike | None, *, latest: bool, database: str) -> Path:
    """The backup file to restore into the database ``database``: a path, a name in the
    backup directory, or (``latest``) the newest verified, signed one. Local files only."""
    return find_backup(source, latest=latest, engine=get_engine(database))


def find_backup(source: str | os.PathLike | None, *, latest: bool, engine: Engine) -> Path:
    """``resolve_source`` for an engine already resolved."""
    if latest and source:
        raise CouldNotRun("give either a backup file or --latest, not both")
    if not latest and not source:
        raise CouldNotRun("say which backup to restore: a file, a name in the backup directory, or --latest")
    if latest:
        newest = _newest_local(engine)
        if newest is not None:
            return Path(newest.path)
        raise RestoreRefused(
            f"no verified, signed {engine.display_name} backup of this database in {backups.backup_directory()} "
            "(backup --list shows each one's state)"
        )
    path = Path(source).expanduser()
    if path.exists():
        return path
    candidate = backups.backup_directory() / str(source)
    if not path.is_absolute() and candidate.exists():
        return candidate
    raise CouldNotRun(f"no such backup: {source} (neither a file nor a name in {backups.backup_directory()})")


def _newest_local(engine: Engine):
    """The newest verified, signed backup of this database in the backup directory, or None."""
    usable = [i for i in backups.list_backups() if i.verified and i.signed and not i.problem]
    return backups.newest_to_restore(usable, engine.alias)


@contextmanager
def fetched_source(source, *, latest: bool, engine: Engine, force: bool = False) -> Iterator[Path]:
    """``find_backup``, reaching for the offsite store (MCMANAGER_OFFSITE_URL) when needed.

    A name missing here, or (``latest``) an offsite backup newer than the newest local
    one, is downloaded into a private temporary directory: manifest first (signature
    checked), then the file (size and sha256 checked as it streams); the normal pipeline
    then runs on that copy, and the directory goes when the block ends, whatever happens.
    """
    store = backups.OffsiteStore.from_settings()
    if store is None:
        yield find_backup(source, latest=latest, engine=engine)
        return
    with backups.private_download_dir() as tmp:
        yield _local_or_offsite(store, Path(tmp), source, latest, engine, force)


def _local_or_offsite(store, tmp: Path, source, latest: bool, engine: Engine, force: bool) -> Path:
    if latest and not source:
        local = _newest_local(engine)
        try:
            fetched = backups.fetch_latest(store, tmp, engine.alias, local)
        except CouldNotRun as exc:
            if local is None:
                raise CouldNotRun(f"no verified, signed backup here, and {exc}") from None
            logger.warning("restore --latest: offsite copies not considered: %s", exc)
            fetched = None
        return fetched or find_backup(None, latest=True, engine=engine)
    try:
        return find_backup(source, latest=latest, engine=engine)
    except CouldNotRun:
        name = str(source or "")
        if not name or latest or Path(name).name != name:
            raise
        fetched = backups.fetch_named(store, tmp, name, force)
        if fetched is None:
            raise CouldNotRun(
                f"no such backup: {name} (neither a file, a name in {backups.backup_directory()}, "
                f"nor a copy at {store.url})"
            ) from None
        return fetched


def dump_vendor(path: Path) -> str | None:
    """Which engine's dump the file holds (after decompression), as its vendor name, or None."""
    try:
        stream = backups.open_dump(path)
        try:
            head = stream.read(4096)
        finally:
            stream.close()
    except Exception:  # unreadable, or a compressed stream that is not one
        return None
    cls = engine_for_dump(head)
    return cls.vendor if cls else None
