"""The backup directory's catalogue: names, the listing, which backups are of which database.

The bottom of the backup side: the writer, verification, retention and the offsite copies
all read the directory through this module, and it imports none of them.

- Names: ``db_backup_YYYYMMDD_HHMMSS[_N].<ext>`` (``NAME_RE``, ``backup_time``), in
  ``backup_directory()``; the temporary files of a run named with its pid (``LEFTOVER_RE``),
  removed by the next run once that pid is gone (``clean_leftovers``, and the scratch
  databases of killed runs: ``clean_scratch_leftovers``).
- The listing: ``list_backups`` (one ``BackupInfo`` per file, a bad entry listed with its
  problem), ``latest_verified_backup``.
- Whose backup: ``belongs_to`` (the manifest's engine, database name and identity, not the
  alias: the one rule, see "whose backup" below), ``newest_to_restore`` (``restore --latest``),
  ``source_of`` / ``foreign_source_note`` (naming the database a backup is of).
"""

import logging
import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings

from ..engines import Engine, get_engine
from ..errors import RestoreRefused, VerificationFailed
from ..manifest import MANIFEST_SUFFIX, BackupManifest, read_manifest
from ..schema_state import known_migrations, manifest_schema_state
from ..signing import Keyring, keyring
from ..streams import pid_alive

logger = logging.getLogger("dbtools.backup")  # the logger's name from before the package, kept for log filters

NAME_RE = re.compile(r"^db_backup_(\d{8})_(\d{6})(?:_(\d+))?\.([A-Za-z0-9.]+)$")
# Temporary files named with their process id: a backup's, a scratch's, a manifest's.
LEFTOVER_RE = re.compile(
    r"^\.(?:db_backup|db_scratch)_(\d+)_[0-9a-f]{8}\."
    r"|^\.db_backup_\d{8}_\d{6}(?:_\d+)?\..+\.json\.(\d+)_[0-9a-f]{8}\.partial$"
)


@dataclass
class BackupInfo:
    """One file in the backup directory, as ``--list`` shows it."""

    path: Path
    name: str
    created_at: datetime
    size: int
    engine: str = ""
    reason: str = ""
    verified: bool | None = None
    verification_level: str = ""
    manifest: BackupManifest | None = None
    problem: str | None = None
    schema: str = ""
    signed: bool | None = None
    signature: str = ""
    locations: list[str] = field(default_factory=lambda: ["local"])  # "local", "offsite" (backups.offsite)

    @property
    def bad(self) -> bool:
        """Not a sound backup of ours: no manifest, a bad one, a file that differs from it."""
        return self.problem is not None

    def take_manifest(self, manifest: BackupManifest, stored_size: int) -> None:
        """Fill in what ``manifest`` says; a file whose size differs from it is a problem."""
        self.manifest = manifest
        self.created_at = manifest.created
        self.engine = manifest.engine
        self.reason = manifest.reason
        self.verified = manifest.verified
        self.verification_level = manifest.verification.get("level", "")
        self.signed = manifest.signed
        self.signature = manifest.authenticity.detail
        if manifest.size != stored_size:
            self.problem = f"size {stored_size} differs from the manifest's {manifest.size}"
            self.verified = False

    def as_dict(self) -> dict:
        return {
            "path": str(self.path),
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "size": self.size,
            "engine": self.engine,
            "reason": self.reason,
            "verified": self.verified,
            "verification_level": self.verification_level,
            "schema": self.schema,
            "problem": self.problem,
            "bad": self.bad,
            "signed": self.signed,
            "signature": self.signature,
            "database_alias": self.manifest.database_alias if self.manifest else None,
            "database_name": self.manifest.database_name if self.manifest else None,
            "database_identity": self.manifest.database_identity if self.manifest else None,
            "sha256": self.manifest.sha256 if self.manifest else None,
            "locations": self.locations,
        }


def backup_directory(output_dir=None) -> Path:
    return Path(output_dir or settings.MCMANAGER_BACKUP_DIR)


def iso_utc(when: datetime) -> str:
    """A time as manifests and verification results write it: ISO 8601, UTC, with a Z."""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def backup_time(name: str) -> datetime | None:
    """The creation time in a backup's name (UTC), or None for a name that is not ours."""
    match = NAME_RE.match(name)
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1) + match.group(2), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:  # digits that are no time, such as month 13
        return None


# --- leftovers of killed runs ----------------------------------------------------------


def clean_leftovers(directory: Path) -> list[str]:
    """Remove temporary files of runs that died (their pid is gone) and orphan name reservations."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    names = {e.name for e in entries}
    for entry in entries:
        match = LEFTOVER_RE.match(entry.name)
        if match and not pid_alive(int(match.group(1) or match.group(2))):
            Path(entry.path).unlink(missing_ok=True)
            removed.append(entry.name)
        elif (
            entry.name.endswith(MANIFEST_SUFFIX)
            and NAME_RE.match(entry.name[: -len(MANIFEST_SUFFIX)])
            and entry.name[: -len(MANIFEST_SUFFIX)] not in names
            and entry.stat().st_size == 0
            and time.time() - entry.stat().st_mtime > 60
        ):
            # A name reserved by a run killed before it linked its backup file.
            Path(entry.path).unlink(missing_ok=True)
            removed.append(entry.name)
    return removed


def clean_scratch_leftovers(database: str) -> list[str]:
    """Remove the scratch databases (or files) of killed runs; looking for them never fails a run."""
    return drop_scratch_leftovers(get_engine(database))


def drop_scratch_leftovers(engine: Engine) -> list[str]:
    """clean_scratch_leftovers for an Engine already resolved."""
    try:
        removed = engine.drop_scratch_leftovers()
    except Exception as exc:  # a cleanup that cannot look (no privilege, server busy) waits for the next run
        logger.info("could not look for scratch leftovers: %s", _secret_free(str(exc), engine))
        return []
    for name in removed:
        logger.info("removed %s, left behind by a killed run", name)
    return removed


def _secret_free(text: str, engine: Engine) -> str:
    password = engine.settings_dict.get("PASSWORD")
    return text.replace(str(password), "***") if password else text


# --- the listing -----------------------------------------------------------------------


def _known_migrations():
    """The code's migrations, or None when they cannot be loaded (the listing goes on without)."""
    try:
        return known_migrations()
    except Exception:
        return None


def list_backups(directory=None) -> list[BackupInfo]:
    """Everything in the backup directory, newest first; files that are not sound backups of ours say so.

    One bad entry (a manifest that is not JSON or has a field of the wrong type, a file
    that vanished or cannot be read) is listed with its problem; the others are not affected.
    """
    directory = backup_directory(directory)
    try:
        entries = [e for e in os.scandir(directory) if e.is_file() and not e.name.startswith(".")]
    except FileNotFoundError:
        return []
    names = {e.name for e in entries}
    known = _known_migrations()
    keys = keyring()
    infos = []
    for entry in entries:
        name = entry.name
        if name.endswith(MANIFEST_SUFFIX) and name[: -len(MANIFEST_SUFFIX)] in names:
            continue  # a manifest, shown with its backup
        try:
            stat = entry.stat()
        except OSError as exc:
            infos.append(
                BackupInfo(
                    path=Path(entry.path),
                    name=name,
                    created_at=datetime.fromtimestamp(0, UTC),
                    size=0,
                    problem=f"unreadable: {exc.strerror or exc}",
                )
            )
            continue
        info = _backup_info(entry, stat, known, keys)
        if info is not None:
            infos.append(info)
    infos.sort(key=lambda i: (i.created_at, i.name), reverse=True)
    return infos


def _backup_info(entry, stat, known, keys: Keyring) -> BackupInfo | None:
    """One entry of the listing; None for a name reserved by a running (or killed) backup."""
    name = entry.name
    mtime = datetime.fromtimestamp(stat.st_mtime, UTC)
    match = NAME_RE.match(name)
    if match is None or name.endswith(MANIFEST_SUFFIX):
        if name.endswith(MANIFEST_SUFFIX) and match is not None and stat.st_size == 0:
            return None
        return BackupInfo(
            path=Path(entry.path),
            name=name,
            created_at=mtime,
            size=stat.st_size,
            problem="not a backup made by mcmanager",
        )
    info = BackupInfo(path=Path(entry.path), name=name, created_at=backup_time(name) or mtime, size=stat.st_size)
    try:
        manifest = read_manifest(entry.path, keys)
    except VerificationFailed as exc:
        info.problem = str(exc)
        return info
    applied = {(app, migration) for app, names in manifest.migrations.items() for migration in names}
    info.schema = manifest_schema_state(applied, known)
    info.take_manifest(manifest, stat.st_size)
    return info


# --- whose backup ----------------------------------------------------------------------
#
# The one rule, used by health, the dashboard, dbstats, --latest and retention: a backup is
# a database's when its manifest's engine, database name and database identity (where the
# database lives: SQLite its file's real path, a server its own identity) are the
# database's (Engine.is_own). A manifest without the identity (older ones) is matched by
# engine and name. The alias never counts: two installations may both call theirs "default".


def belongs_to(manifest, database: str) -> bool:
    """Whether a backup's manifest says it is of ``database`` (the rule above)."""
    return is_of(manifest, get_engine(database))


def is_of(manifest, engine: Engine) -> bool:
    """belongs_to for an Engine already resolved."""
    return manifest is not None and engine.is_own(manifest.engine, manifest.database_name, manifest.database_identity)


def database_key(manifest) -> tuple[str, str, str]:
    """Which database a manifest is of, as a key (engine, name, identity)."""
    return (manifest.engine, manifest.database_name, manifest.database_identity)


def source_of(manifest) -> str:
    """The database a backup is of, for messages: its name and, when recorded, where it lives."""
    if manifest is None:
        return "an unknown database (no manifest)"
    where = f" at {manifest.database_identity}" if manifest.database_identity else ""
    return f"'{manifest.database_name}'{where}"


def foreign_source_note(manifest, engine: Engine) -> str | None:
    """A line for the prompt, --check and the log when a backup is not this database's own
    (a new machine's restore of the old one's backup, a restore by file name), else None."""
    if manifest is None or is_of(manifest, engine):
        return None
    return f"the backup is of another database: {source_of(manifest)}"


def latest_verified_backup(directory=None, engine: str | None = None, database: str | None = None) -> BackupInfo | None:
    """The newest backup that is signed by this installation, verified and sound: of ``database``
    (its engine and database, see belongs_to) if given, else of ``engine`` if given."""
    owner = None  # the Engine of ``database``, resolved when the first candidate needs it
    for info in list_backups(directory):
        if not (info.verified and info.signed and not info.problem):
            continue
        if database is not None:
            owner = owner or get_engine(database)
            if not is_of(info.manifest, owner):
                continue
        if engine is None or info.engine == engine:
            return info
    return None


def newest_to_restore(candidates, database: str):
    """``restore --latest``'s choice among ``candidates`` (newest first; each has ``.manifest``,
    verified and signed): the newest of this database (belongs_to).

    On a new machine, whose database has none yet, the newest of the old machine's database:
    only backups whose source cannot be a database of this machine count
    (Engine.source_elsewhere: a SQLite file that does not exist here, another server), and
    only when they are all of one database. Otherwise, with backups of other databases and
    none of this one: RestoreRefused naming them, so a restore never picks another live
    database's backup by guesswork. None when there is no backup of this engine at all."""
    engine = get_engine(database)
    usable = [c for c in candidates if c.manifest is not None and c.manifest.engine == engine.vendor]
    for candidate in usable:
        if is_of(candidate.manifest, engine):
            return candidate
    elsewhere = [c for c in usable if engine.source_elsewhere(c.manifest.database_identity)]
    if len({database_key(c.manifest) for c in elsewhere}) == 1:
        return elsewhere[0]
    sources = sorted({source_of(c.manifest) for c in usable})
    if sources:
        raise RestoreRefused(
            f"no backup of this database ('{engine.backup_identity()}' at {engine.database_identity() or 'unknown'}) "
            f"and no single other machine's to fall back on; backups of {len(sources)} other "
            f"{engine.display_name} database(s): {', '.join(sources[:5])}: restore one by its file name"
        )
    return None
