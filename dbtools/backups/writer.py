"""Writing a backup: ``create_backup`` (and ``pre_migrate_backup``, migrate's backup first).

A backup is written under a dot-prefixed temporary name in the backup directory, checked
while it is written (the engine overlaps the dump, the checks, the compression and the
sha256), fsynced, and only then given its final name ``db_backup_YYYYMMDD_HHMMSS.<ext>``
beside its manifest. A run killed at any point leaves no file under a final name; its
leftovers are removed by the next run (catalogue.clean_leftovers). After a good backup,
retention prunes and the offsite store (if any) gets a copy.
"""

import errno
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from ..encryption import EncryptingWriter, parse_recipients
from ..engines import Engine, get_engine
from ..engines.results import Check
from ..errors import BackupFailed, CouldNotRun, VerificationFailed
from ..formatting import to_ms
from ..locks import database_lock
from ..manifest import FORMAT_VERSION, BackupManifest, manifest_path, write_manifest
from ..oplog import os_user, record_operation
from ..schema_state import migration_plan
from ..signing import check_key_location, signing_key
from ..streams import COMPRESSION_SUFFIX, COMPRESSIONS, HashingFile, compressing_writer, fsync_directory, unique_suffix
from .catalogue import backup_directory, clean_leftovers, drop_scratch_leftovers, iso_utc
from .offsite import OffsiteStore, upload_backup
from .plaintext import ENCRYPTED_SUFFIX, ENCRYPTION_SCHEME, decryption_key_file
from .retention import PruneResult, RetentionPolicy, prune_backups
from .verify import VerificationResult, check_level, deep_checks_with_hash

DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@dataclass
class BackupResult:
    """A new backup: where it is, its manifest, its verification, and what retention pruned."""

    path: Path
    manifest: BackupManifest
    verification: VerificationResult
    duration_ms: int
    pruned: PruneResult | None = None
    offsite: dict | None = None  # the upload's outcome (backups.offsite.upload_backup); None: no store

    def as_dict(self) -> dict:
        return {
            "path": str(self.path),
            "duration_ms": self.duration_ms,
            "manifest": self.manifest.as_dict(),
            "verification": self.verification.as_dict(),
            "pruned": self.pruned.as_dict() if self.pruned else None,
            "offsite": self.offsite,
        }


def encryption_recipients() -> list[str]:
    """The age recipients of MCMANAGER_BACKUP_ENCRYPT_TO (empty: backups are not encrypted)."""
    try:
        return parse_recipients(getattr(settings, "MCMANAGER_BACKUP_ENCRYPT_TO", "") or "")
    except ValueError as exc:
        raise CouldNotRun(f"MCMANAGER_BACKUP_ENCRYPT_TO: {exc}") from None


def _now() -> datetime:
    return datetime.now(UTC)


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
    check_level(verify)
    if database not in connections:
        raise CouldNotRun(f"no database '{database}' in DATABASES")
    directory = backup_directory(output_dir)
    engine = get_engine(database)
    engine.check_connection()  # before the log: an unreachable database cannot log anything
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
            drop_scratch_leftovers(engine)
            path, manifest, verification = _write_backup(
                engine, directory, compression, verify, reason, actor or os_user(), started, check_rows
            )
        record.file = str(path)
        record.checksum = manifest.sha256
        record.details.update(size=manifest.size, verification=verify, compression=compression)
        record.message = f"{path.name}: {manifest.size} bytes, {sum(manifest.row_counts.values())} rows"
        pruned = None
        policy = retention if retention is not None else RetentionPolicy.from_settings()
        if not policy.is_empty:
            pruned = prune_backups(policy, directory, database=database)
        uploaded = _upload_offsite(path, record) if offsite else None
    return BackupResult(
        path=path,
        manifest=manifest,
        verification=verification,
        duration_ms=to_ms(time.monotonic() - started),
        pruned=pruned,
        offsite=uploaded,
    )


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


def _upload_offsite(path: Path, record) -> dict | None:
    """The offsite copy of a new backup (after local retention), its outcome in the operations log."""
    store = OffsiteStore.from_settings()
    if store is None:
        return None
    outcome = upload_backup(store, path)
    record.details["offsite"] = outcome
    if not outcome["uploaded"]:
        record.message += f"; the offsite upload failed: {outcome['error']}"
    return outcome


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


def expected_tables(engine: Engine) -> list[str]:
    """The tables of Django's models that exist in the live database: every dump must hold them."""
    connection = engine.connection
    with connection.cursor() as cursor:
        existing = set(connection.introspection.table_names(cursor))
    tables = set(connection.introspection.django_table_names(only_existing=False)) & existing
    if "django_migrations" in existing:
        tables.add("django_migrations")
    return sorted(tables)


def _write_backup(engine: Engine, directory, compression, verify, reason, actor, started, check_rows=True):
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
        tables = expected_tables(engine)
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
            database_alias=engine.alias,
            database_name=engine.backup_identity(),
            database_identity=engine.database_identity(),
            created_at=iso_utc(when),
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
                checks += deep_checks_with_hash(tmp, manifest, engine, verify)
        verification = VerificationResult.of(checks, verify)
        verification.at = iso_utc(_now())
        if not verification.ok:
            raise VerificationFailed(f"the new backup failed verification ({verification.reason}); it was not kept")
        manifest.verification = {
            "level": verify,
            "ok": True,
            "at": verification.at,
            "checks": [c.as_dict() for c in checks],
        }
        manifest.duration_ms = to_ms(time.monotonic() - started)
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
    except Exception as exc:
        failure = engine.dump_failure(exc, directory)  # the engine's own driver's errors, in one line
        if failure is None:
            raise
        raise BackupFailed(failure) from None
    finally:
        tmp.unlink(missing_ok=True)
        if final is not None and not linked:
            manifest_path(final).unlink(missing_ok=True)


def count_rows(database: str = DEFAULT_DB_ALIAS) -> dict[str, int]:
    """Row count per table of the live database."""
    return get_engine(database).count_rows()


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
    engine = get_engine(database)
    engine.check_connection()
    connection = engine.connection
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
