"""Backups you can trust: create, verify, list (and, through dbtools.retention, prune).

A backup is written under a dot-prefixed temporary name in the backup directory, checked
while it is written (the engine overlaps the dump, the checks, the compression and the
sha256), fsynced, and only then given its final name ``db_backup_YYYYMMDD_HHMMSS.<ext>``
beside its manifest. A run killed at any point leaves no file under a final name; its
leftovers are removed by the next run.
"""

import errno
import logging
import os
import re
import sqlite3
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from .encryption import AGE_MAGIC, EncryptingWriter, decrypting_reader, is_encrypted, parse_recipients
from .engines import get_engine
from .errors import BackupFailed, CouldNotRun, ForeignContent, RestoreRefused, VerificationFailed
from .locks import database_lock
from .manifest import (
    FORMAT_VERSION,
    MANIFEST_SUFFIX,
    BackupManifest,
    manifest_path,
    read_manifest,
    write_manifest,
)
from .oplog import journal_operation, os_user, record_operation
from .retention import PruneResult, RetentionPolicy, prune_backups
from .signing import Keyring, check_key_location, keyring, refusal, signing_key
from .streams import (
    COMPRESSION_SUFFIX,
    Check,
    HashingFile,
    HashingReader,
    NotRegularFile,
    compare_row_counts,
    compressing_writer,
    decompressing_reader,
    detect_compression,
    fsync_directory,
    open_regular,
    pid_alive,
    unique_suffix,
)

__all__ = [
    "BackupInfo",
    "BackupManifest",
    "BackupResult",
    "PruneResult",
    "RetentionPolicy",
    "VerificationResult",
    "count_rows",
    "create_backup",
    "list_backups",
    "open_dump",
    "prune_backups",
    "read_manifest",
    "verify_backup",
]

logger = logging.getLogger("dbtools.backup")

COMPRESSIONS = ("zstd", "gzip", "none")
VERIFY_LEVELS = ("quick", "full")
NAME_RE = re.compile(r"^db_backup_(\d{8})_(\d{6})(?:_(\d+))?\.([A-Za-z0-9.]+)$")
# Temporary files named with their process id: a backup's, a scratch's, a manifest's.
LEFTOVER_RE = re.compile(
    r"^\.(?:db_backup|db_scratch)_(\d+)_[0-9a-f]{8}\."
    r"|^\.db_backup_\d{8}_\d{6}(?:_\d+)?\..+\.json\.(\d+)_[0-9a-f]{8}\.partial$"
)
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@dataclass
class VerificationResult:
    """The verdict on one backup file: every check, and the first failure as the reason."""

    ok: bool
    level: str
    checks: list[Check] = field(default_factory=list)
    reason: str = ""
    path: str = ""
    at: str = ""

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "level": self.level,
            "reason": self.reason,
            "path": self.path,
            "at": self.at,
            "checks": [c.as_dict() for c in self.checks],
        }


@dataclass
class BackupResult:
    """A new backup: where it is, its manifest, its verification, and what retention pruned."""

    path: Path
    manifest: BackupManifest
    verification: VerificationResult
    duration: float
    pruned: PruneResult | None = None
    offsite: dict | None = None  # the upload's outcome (dbtools.offsite.upload_backup); None: no store

    def as_dict(self) -> dict:
        return {
            "path": str(self.path),
            "duration_seconds": round(self.duration, 3),
            "manifest": self.manifest.as_dict(),
            "verification": self.verification.as_dict(),
            "pruned": self.pruned.as_dict() if self.pruned else None,
            "offsite": self.offsite,
        }


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
    locations: list[str] = field(default_factory=lambda: ["local"])  # "local", "offsite" (dbtools.offsite)

    @property
    def bad(self) -> bool:
        """Not a sound backup of ours: no manifest, a bad one, a file that differs from it."""
        return self.problem is not None

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
            "sha256": self.manifest.sha256 if self.manifest else None,
            "locations": self.locations,
        }


ENCRYPTION_SCHEME = "age"
ENCRYPTED_SUFFIX = ".age"


def encryption_recipients() -> list[str]:
    """The age recipients of MCMANAGER_BACKUP_ENCRYPT_TO (empty: backups are not encrypted)."""
    try:
        return parse_recipients(getattr(settings, "MCMANAGER_BACKUP_ENCRYPT_TO", "") or "")
    except ValueError as exc:
        raise CouldNotRun(f"MCMANAGER_BACKUP_ENCRYPT_TO: {exc}") from None


def decryption_key_file() -> str:
    return (getattr(settings, "MCMANAGER_BACKUP_DECRYPT_KEY_FILE", "") or "").strip()


def backup_directory(output_dir=None) -> Path:
    return Path(output_dir or settings.MCMANAGER_BACKUP_DIR)


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _secret_free(text: str, database: str) -> str:
    password = connections[database].settings_dict.get("PASSWORD")
    return text.replace(str(password), "***") if password else text


def _prepare_directory(directory: Path) -> None:
    """Create the directory 0700 and prove it writable, or say why not in one line (exit 2)."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        probe = directory / f".db_backup_{unique_suffix()}.probe"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise BackupFailed(f"backup directory {directory} is full: {exc.strerror}") from None
        raise CouldNotRun(f"backup directory {directory} is not writable: {exc.strerror}") from None


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
    try:
        removed = get_engine(database).drop_scratch_leftovers()
    except Exception as exc:  # a cleanup that cannot look (no privilege, server busy) waits for the next run
        logger.info("could not look for scratch leftovers: %s", _secret_free(str(exc), database))
        return []
    for name in removed:
        logger.info("removed %s, left behind by a killed run", name)
    return removed


def _reserve_name(directory: Path, when: datetime, ext: str) -> Path:
    """A final name no other backup has, reserved by creating its manifest file exclusively."""
    stem = f"db_backup_{when:%Y%m%d_%H%M%S}"
    for n in range(1, 1000):
        name = f"{stem}.{ext}" if n == 1 else f"{stem}_{n}.{ext}"
        path = directory / name
        if path.exists():
            continue
        try:
            os.close(os.open(manifest_path(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            continue
        return path
    raise BackupFailed(f"no free backup name for {stem} in {directory}")


def expected_tables(database: str) -> list[str]:
    """The tables of Django's models that exist in the live database: every dump must hold them."""
    connection = connections[database]
    with connection.cursor() as cursor:
        existing = set(connection.introspection.table_names(cursor))
    tables = set(connection.introspection.django_table_names(only_existing=False)) & existing
    if "django_migrations" in existing:
        tables.add("django_migrations")
    return sorted(tables)


def _check_reachable(database: str) -> None:
    get_engine(database).check_connection()


def create_backup(
    *,
    database: str = DEFAULT_DB_ALIAS,
    output_dir=None,
    compress: str | None = None,
    verify: str = "quick",
    reason: str = "manual",
    actor: str | None = None,
    take_lock: bool = True,
    retention: RetentionPolicy | None = None,
    check_rows: bool = True,
    offsite: bool = True,
    log=record_operation,
) -> BackupResult:
    """Write a verified backup of ``database`` into the backup directory and return where it is.

    Raises CouldNotRun (bad arguments, unwritable directory), DatabaseUnreachable,
    LockHeld, BackupFailed (the dump failed, the disk is full) or VerificationFailed (the
    new backup failed its checks; it is not kept). ``take_lock=False`` is for callers that
    already hold the database lock (restore's safety backup). ``retention`` (default: the
    MCMANAGER_KEEP_* settings) is applied after a successful backup. ``check_rows=False``
    leaves out SQLite's check of every row against its CHECK constraints (informative,
    never fatal): restore's safety backup, whose rows the restore replaces anyway.
    With MCMANAGER_OFFSITE_URL set (and ``offsite``), the backup and its manifest are then
    uploaded and read back; a failed upload does not raise (the local backup is good): the
    result's ``offsite`` and the operations log say it, and the caller decides.
    ``log`` writes the operations-log entry (restore's safety backup, taken while the backup
    loads, passes ``oplog.deferred_operation`` to write it only once the restore goes ahead).
    """
    compression = compress or settings.MCMANAGER_BACKUP_COMPRESSION
    if compression not in COMPRESSIONS:
        raise CouldNotRun(f"unknown compression {compression!r}: use one of {', '.join(COMPRESSIONS)}")
    if verify not in VERIFY_LEVELS:
        raise CouldNotRun(f"unknown verification level {verify!r}: use quick or full")
    if database not in connections:
        raise CouldNotRun(f"no database '{database}' in DATABASES")
    directory = backup_directory(output_dir)
    _check_reachable(database)  # before the log: an unreachable database cannot log anything
    started = time.monotonic()
    with log("backup", database=database, actor=actor) as record:
        record.details["reason"] = reason
        _prepare_directory(directory)
        # The key before the dump: a backup that cannot be signed is not started.
        check_key_location(directory)
        signing_key()
        lock = database_lock(database, "backup") if take_lock else nullcontext()
        with lock:
            clean_leftovers(directory)
            clean_scratch_leftovers(database)
            path, manifest, verification = _write_backup(
                database, directory, compression, verify, reason, actor or os_user(), started, check_rows
            )
        record.file = str(path)
        record.checksum = manifest.sha256
        record.details.update(size=manifest.size, verification=verify, compression=compression)
        record.message = f"{path.name}: {manifest.size} bytes, {sum(manifest.row_counts.values())} rows"
        pruned = None
        policy = retention if retention is not None else RetentionPolicy.from_settings()
        if not policy.is_empty:
            pruned = prune_backups(policy, directory)
        uploaded = _upload_offsite(path, record) if offsite else None
    return BackupResult(
        path=path,
        manifest=manifest,
        verification=verification,
        duration=time.monotonic() - started,
        pruned=pruned,
        offsite=uploaded,
    )


def _upload_offsite(path: Path, record) -> dict | None:
    """The offsite copy of a new backup (after local retention), its outcome in the operations log."""
    from .offsite import OffsiteStore, upload_backup

    store = OffsiteStore.from_settings()
    if store is None:
        return None
    outcome = upload_backup(store, path)
    record.details["offsite"] = outcome
    if not outcome["uploaded"]:
        record.message += f"; the offsite upload failed: {outcome['error']}"
    return outcome


def _write_backup(database, directory, compression, verify, reason, actor, started, check_rows=True):
    engine = get_engine(database)
    when = _now()
    recipients = encryption_recipients()
    ext = engine.dump_extension + COMPRESSION_SUFFIX[compression] + (ENCRYPTED_SUFFIX if recipients else "")
    tmp = directory / f".db_backup_{unique_suffix()}.{ext}.partial"
    # An engine that snapshots into a file first (SQLite) does it beside the live database
    # when the backup is encrypted: no plaintext copy in the backup directory, ever.
    workdir = engine.plaintext_workdir(directory) if recipients else directory
    final = None
    linked = False
    try:
        tables = expected_tables(database)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw:
            sink = HashingFile(raw)
            encrypter = EncryptingWriter(sink, recipients) if recipients else None
            try:
                writer = compressing_writer(encrypter or sink, compression)
                outcome = engine.write_dump(
                    writer, workdir, level=verify, expected_tables=tables, check_rows=check_rows
                )
                writer.close()
                if encrypter is not None:
                    encrypter.close()
            finally:
                if encrypter is not None:
                    encrypter.abandon()
            raw.flush()
            os.fsync(raw.fileno())
        checks = list(outcome.checks)
        manifest = BackupManifest(
            format_version=FORMAT_VERSION,
            engine=engine.vendor,
            server_version=engine.server_version(),
            database_alias=database,
            database_name=engine.backup_identity(),
            created_at=_iso(when),
            reason=reason,
            actor=actor,
            dump_format=engine.dump_extension,
            tool=outcome.tool,
            migrations=outcome.migrations,
            row_counts=outcome.row_counts,
            size=sink.size,
            sha256=sink.sha256.hexdigest(),
            compression=compression,
            encryption=ENCRYPTION_SCHEME if recipients else None,
            recipients=recipients,
        )
        if recipients:
            checks.append(
                Check("encryption", True, f"age, to {len(recipients)} recipient(s); checked before encryption")
            )
        if verify == "full" and not outcome.failures:
            if recipients and not decryption_key_file():
                # The file cannot be read back without the private key: the checks on the
                # stream, before encryption, are the verification, and the manifest says so.
                verify = "quick"
                checks.append(
                    Check(
                        "full verification",
                        True,
                        "not done: the backup is encrypted and MCMANAGER_BACKUP_DECRYPT_KEY_FILE is not set; "
                        "verified on the stream before encryption",
                    )
                )
            else:
                # Restore the file just written into a scratch database: the proof that it loads.
                checks += _deep_checks_with_hash(tmp, manifest, engine, verify)
        failures = [c for c in checks if not c.ok]
        verification = VerificationResult(
            ok=not failures,
            level=verify,
            checks=checks,
            reason=f"{failures[0].name}: {failures[0].detail}" if failures else "",
            at=_iso(_now()),
        )
        if failures:
            raise VerificationFailed(f"the new backup failed verification ({verification.reason}); it was not kept")
        manifest.verification = {
            "level": verify,
            "ok": True,
            "at": verification.at,
            "checks": [c.as_dict() for c in checks],
        }
        manifest.duration_ms = int((time.monotonic() - started) * 1000)
        final = _reserve_name(directory, when, ext)
        manifest.file = final.name
        write_manifest(final, manifest)
        os.link(tmp, final)  # never replaces: a name taken meanwhile fails instead
        linked = True
        tmp.unlink()
        fsync_directory(directory)
        verification.path = str(final)
        return final, manifest, verification
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise BackupFailed(
                f"backup directory {directory} is full ({exc.strerror}); no backup was written"
            ) from None
        raise BackupFailed(f"could not write the backup in {directory}: {exc.strerror or exc}") from None
    except sqlite3.OperationalError as exc:
        if "full" in str(exc):
            raise BackupFailed(f"backup directory {directory} is full ({exc}); no backup was written") from None
        raise BackupFailed(f"SQLite could not copy the database: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
        if final is not None and not linked:
            manifest_path(final).unlink(missing_ok=True)


def verify_backup(
    path, level: str = "quick", database: str = DEFAULT_DB_ALIAS, *, force: bool = False
) -> VerificationResult:
    """``backup --check``: _verify_backup, its verdict kept in the operations journal (a
    check only reads: the live database is not written to)."""
    with journal_operation("verify", database=database) as record:
        record.file = str(path)
        result = _verify_backup(path, level, database, force=force)
        record.outcome = "success" if result.ok else "failure"
        record.message = f"verified ({result.level})" if result.ok else result.reason
        record.details = {"level": result.level, "failed": [c.name for c in result.checks if not c.ok]}
    return result


def _verify_backup(
    path, level: str = "quick", database: str = DEFAULT_DB_ALIAS, *, force: bool = False
) -> VerificationResult:
    """Check a backup file against its manifest: signature, checksum and structure; ``full`` also loads it.

    A manifest not signed by this installation's key fails at once, before a byte of the
    file is read, unless ``force``. The file is read once: hashed as it is decompressed
    into the engine's checks. The result of a signed backup is written into its manifest's
    ``verification`` (and signed), so --list and retention see it; an unsigned one's
    manifest is left as it is: checking a file never makes it ours.
    """
    if level not in VERIFY_LEVELS:
        raise CouldNotRun(f"unknown verification level {level!r}: use quick or full")
    get_engine(database).check_live_database()  # unreachable is exit 2, not a bad file
    clean_scratch_leftovers(database)
    path = Path(path)
    checks: list[Check] = []
    if path.exists() and not path.is_file():  # a FIFO, a device, a directory: said before anything else
        problem = str(NotRegularFile(path, path.stat().st_mode))
        return VerificationResult(
            ok=False, level=level, checks=[Check("file", False, problem)], reason=f"file: {problem}", path=str(path)
        )
    try:
        manifest = read_manifest(path)
    except VerificationFailed as exc:
        return VerificationResult(
            ok=False, level=level, checks=[Check("manifest", False, str(exc))], reason=str(exc), path=str(path)
        )
    if not manifest.signed:
        message = refusal(path.name, manifest.authenticity, "check")
        if not force:
            return VerificationResult(
                ok=False, level=level, checks=[Check("signature", False, message)], reason=message, path=str(path)
            )
        checks.append(Check("signature", True, f"{manifest.authenticity.detail}; going on because of --force"))
    else:
        checks.append(Check("signature", True, manifest.authenticity.detail))
    engine = get_engine(database)
    if manifest.engine != engine.vendor:
        checks.append(Check("engine", False, f"a {manifest.engine} backup; database '{database}' is {engine.vendor}"))
    elif not path.exists():
        checks.append(Check("file", False, f"{path} does not exist"))
    else:
        try:
            with open_regular(path) as f:
                head = f.read(len(AGE_MAGIC))
        except OSError as exc:  # a FIFO, a device, a directory: refused before it is read
            checks.append(Check("file", False, str(exc)))
        else:
            if bool(manifest.encryption) != is_encrypted(head):
                said = "encrypted" if manifest.encryption else "not encrypted"
                checks.append(Check("encryption", False, f"the manifest says {said}, the file is not"))
            elif (
                not manifest.encryption
                and detect_compression(head[:4]) != manifest.compression
                and manifest.compression != "none"
            ):
                checks.append(Check("compression", False, f"the manifest says {manifest.compression}, the file is not"))
            else:
                checks += _deep_checks_with_hash(path, manifest, engine, level)
    failures = [c for c in checks if not c.ok]
    result = VerificationResult(
        ok=not failures,
        level=level,
        checks=checks,
        reason=f"{failures[0].name}: {failures[0].detail}" if failures else "",
        path=str(path),
        at=_iso(_now()),
    )
    if manifest.signed and manifest.engine == engine.vendor and path.is_file():
        manifest.verification = {
            "level": level,
            "ok": result.ok,
            "at": result.at,
            "checks": [c.as_dict() for c in checks],
        }
        try:
            write_manifest(path, manifest)
        except (OSError, CouldNotRun):
            pass  # a read-only backup directory, a key that cannot sign: the verdict is still returned
    return result


def _deep_checks_with_hash(path: Path, manifest: BackupManifest, engine, level: str) -> list[Check]:
    import zstandard

    with open_regular(path) as f:
        reader = HashingReader(f)
        counts = None
        found: list[Check] = []
        stream = None
        try:
            stream = plaintext_reader(reader, manifest.compression, manifest.encryption)
            found, counts = engine.check_dump(stream, level=level, manifest=manifest, workdir=path.parent)
        except (zstandard.ZstdError, OSError, EOFError) as exc:
            found = [Check("decompress", False, f"the file does not decompress: {exc}")]
        except ForeignContent as exc:
            found = [Check("content", False, str(exc))]
        except VerificationFailed as exc:  # a wrong or missing decryption key too
            found = [Check("restore", False, str(exc))]
        finally:
            if stream is not None:
                stream.close()
        try:
            reader.drain()  # the hash covers the whole file, trailing bytes included
        except OSError:
            pass
    digest = reader.sha256.hexdigest()
    checks = [
        Check(
            "checksum",
            digest == manifest.sha256 and reader.size == manifest.size,
            f"sha256 {digest[:16]}..., {reader.size} bytes"
            + ("" if digest == manifest.sha256 else f" (manifest: {manifest.sha256[:16]}..., {manifest.size} bytes)"),
        )
    ]
    checks += found
    if counts is not None and all(c.ok for c in found):
        checks.append(compare_row_counts(manifest.row_counts, counts))
    return checks


class PlaintextStream:
    """The plain dump over a backup's bytes: decrypted (age) and decompressed as the backup
    was written. ``close()`` closes every layer it added (not ``raw``)."""

    def __init__(self, raw, compression: str | None, encryption: str | None) -> None:
        self._layers = []
        source = raw
        if encryption:
            if encryption != ENCRYPTION_SCHEME:
                raise VerificationFailed(f"encrypted with {encryption!r}, which this version cannot read")
            source = decrypting_reader(raw, decryption_key_file())
            self._layers.append(source)
        if compression is None:  # no manifest: the magic bytes say
            compression = detect_compression(source.peek(4)[:4] if hasattr(source, "peek") else b"")
        self._stream = decompressing_reader(source, compression)
        if self._stream is not source:
            self._layers.insert(0, self._stream)

    def read(self, n: int = -1) -> bytes:
        return self._stream.read(n)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        for layer in self._layers:
            layer.close()


def plaintext_reader(raw, compression: str | None, encryption: str | None) -> PlaintextStream:
    """``PlaintextStream(raw, ...)``: how every reader of a backup gets at its dump."""
    return PlaintextStream(raw, compression, encryption)


class _DumpStream:
    """The plain dump of a backup file; closing it closes the file."""

    def __init__(self, path: Path, compression: str | None, encryption: str | None) -> None:
        self._file = open_regular(path)
        try:
            self._stream = plaintext_reader(self._file, compression, encryption)
        except BaseException:
            self._file.close()
            raise

    def read(self, n: int = -1) -> bytes:
        return self._stream.read(n)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._stream.close()
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_dump(path) -> _DumpStream:
    """A binary stream of the plain dump (decrypted, decompressed: by the manifest or the magic bytes)."""
    path = Path(path)
    try:
        manifest = read_manifest(path)
        compression, encryption = manifest.compression, manifest.encryption
    except VerificationFailed:
        with open_regular(path) as f:
            head = f.read(64)
        encryption = ENCRYPTION_SCHEME if is_encrypted(head) else None
        compression = None if encryption else detect_compression(head[:4])
    return _DumpStream(path, compression, encryption)


def count_rows(database: str = DEFAULT_DB_ALIAS) -> dict[str, int]:
    """Row count per table of the live database."""
    return get_engine(database).count_rows()


def _schema_state(manifest: BackupManifest, graph_nodes) -> str:
    if graph_nodes is None:
        return ""
    applied = {(app, name) for app, names in manifest.migrations.items() for name in names}
    unknown = applied - graph_nodes
    if unknown:
        return f"newer than the code ({len(unknown)} unknown migrations)"
    missing = graph_nodes - applied
    if missing:
        return f"older than the code ({len(missing)} migrations to apply)"
    return "current"


def _code_migrations():
    try:
        from django.db.migrations.loader import MigrationLoader

        return set(MigrationLoader(None, ignore_no_migrations=True).graph.nodes)
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
    nodes = _code_migrations()
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
        info = _backup_info(entry, stat, nodes, keys)
        if info is not None:
            infos.append(info)
    infos.sort(key=lambda i: (i.created_at, i.name), reverse=True)
    return infos


def _backup_info(entry, stat, nodes, keys: Keyring) -> BackupInfo | None:
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
    try:
        created = datetime.strptime(match.group(1) + match.group(2), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:  # digits that are no time, such as month 13
        created = mtime
    info = BackupInfo(path=Path(entry.path), name=name, created_at=created, size=stat.st_size)
    try:
        manifest = read_manifest(entry.path, keys)
    except VerificationFailed as exc:
        info.problem = str(exc)
        return info
    info.manifest = manifest
    info.created_at = manifest.created
    info.engine = manifest.engine
    info.reason = manifest.reason
    info.verified = manifest.verified
    info.verification_level = manifest.verification.get("level", "")
    info.schema = _schema_state(manifest, nodes)
    info.signed = manifest.signed
    info.signature = manifest.authenticity.detail
    if manifest.size != stat.st_size:
        info.problem = f"size {stat.st_size} differs from the manifest's {manifest.size}"
        info.verified = False
    return info


def belongs_to(manifest, database: str) -> bool:
    """Whether a backup's manifest says it is of ``database``: its engine and its database's
    name (Engine.backup_identity), not the alias, which another installation may share."""
    engine = get_engine(database)
    return (
        manifest is not None and manifest.engine == engine.vendor and manifest.database_name == engine.backup_identity()
    )


def database_key(manifest) -> tuple[str, str]:
    """Which database a manifest is of, as a key: retention prunes each database on its own."""
    return (manifest.engine, manifest.database_name)


def latest_verified_backup(directory=None, engine: str | None = None, database: str | None = None) -> BackupInfo | None:
    """The newest backup that is signed by this installation, verified and sound: of ``database``
    (its engine and database, see belongs_to) if given, else of ``engine`` if given."""
    for info in list_backups(directory):
        if not (info.verified and info.signed and not info.problem):
            continue
        if database is not None and not belongs_to(info.manifest, database):
            continue
        if engine is None or info.engine == engine:
            return info
    return None


def newest_to_restore(candidates, database: str):
    """``restore --latest``'s choice among ``candidates`` (newest first; each has ``.manifest``,
    verified and signed): the newest of this database; on a new machine, whose database has
    none yet, the newest of this engine if they are all of one database (the old machine's).
    Backups of several other databases and none of this one: RestoreRefused naming them, so
    a restore never picks another database's backup by guesswork. None when there is none."""
    engine = get_engine(database)
    usable = [c for c in candidates if c.manifest is not None and c.manifest.engine == engine.vendor]
    for candidate in usable:
        if belongs_to(candidate.manifest, database):
            return candidate
    names = sorted({c.manifest.database_name for c in usable})
    if len(names) == 1:
        return usable[0]
    if names:
        raise RestoreRefused(
            f"no backup of database '{engine.backup_identity()}', and backups of {len(names)} other "
            f"{engine.display_name} databases ({', '.join(names[:5])}): restore one by its file name"
        )
    return None


def migration_plan(database: str = DEFAULT_DB_ALIAS, app_label: str | None = None, migration_name: str | None = None):
    """The (migration, backwards) steps ``migrate [app_label [migration_name]]`` would run."""
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections[database])
    graph = executor.loader.graph
    if app_label and migration_name:
        if migration_name == "zero":
            targets = [(app_label, None)]
        else:
            targets = [(app_label, executor.loader.get_migration_by_prefix(app_label, migration_name).name)]
    elif app_label:
        targets = [node for node in graph.leaf_nodes() if node[0] == app_label]
    else:
        targets = graph.leaf_nodes()
    return executor.migration_plan(targets)


def pre_migrate_backup(
    database: str = DEFAULT_DB_ALIAS,
    *,
    app_label: str | None = None,
    migration_name: str | None = None,
    actor: str | None = None,
):
    """Take the pre-migrate backup when migrate has work to do on a database that holds tables.

    Returns (BackupResult or None, plan or None). A fresh, empty database gets no backup
    (there is nothing to lose) and costs one query. Raises what create_backup raises.
    """
    _check_reachable(database)
    connection = connections[database]
    with connection.cursor() as cursor:
        if not connection.introspection.table_names(cursor):
            return None, None
    try:
        plan = migration_plan(database, app_label, migration_name)
    except Exception:  # a bad app label or migration name: Django's migrate says it better
        return None, None
    if not plan:
        return None, plan
    return create_backup(database=database, reason="pre-migrate", actor=actor), plan
