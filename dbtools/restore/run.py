"""The two services: ``restore_backup`` and ``check_restore`` (``restore --check``).

Both are entry points taking a database alias: they resolve its engine once and pass it
down. A restore refused or failed before its swap leaves the live database as it was and
goes to the operations journal beside the backups (``oplog.append_journal``), never into
the live database's log; the next logged operation moves it in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import wait
from datetime import timedelta
from pathlib import Path

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from .. import backups
from ..engines import Engine, get_engine
from ..errors import CouldNotRun, DbtoolsError, RestoreFailed, RestoreRefused
from ..formatting import to_ms
from ..locks import database_lock
from ..oplog import OperationRecord, append_journal, journal_operation, os_user, record_operation
from .checks import Checks, check_file, check_loaded, isoformat, manifest_field
from .results import Progress, RestoreCheckResult, RestorePlan, RestoreResult
from .scratch import loaded_scratch, migrate_scratch, scratch_alias, settle_integrity
from .source import fetched_source
from .swap import SafetyBackup, live_counts, start_validation, swap_stage, validate_restored

logger = logging.getLogger("dbtools.restore")


def _engine_of(database: str) -> tuple[Engine, str | None]:
    """The engine of ``database`` and the note of its live check; exit 2 (CouldNotRun,
    DatabaseUnreachable) before any download when the database cannot take a restore."""
    if database not in connections:
        raise CouldNotRun(f"no database '{database}' in DATABASES")
    engine = get_engine(database)
    return engine, engine.check_live_database()


def check_restore(source, database: str = DEFAULT_DB_ALIAS, *, force: bool = False, progress: Progress | None = None):
    """Every check of a restore plus a test restore into a scratch database; the live one is not touched.

    Returns a RestoreCheckResult (``ok`` says whether the backup would restore). Raises
    CouldNotRun when the check itself cannot run (no such file, database unreachable).
    The verdict goes to the operations journal (the live database is not written to).
    ``source`` None is the newest verified backup, here or offsite (``fetched_source``).
    """
    engine, note = _engine_of(database)
    with journal_operation("restore-check", database=database) as record:
        record.file = str(source or "--latest")
        with fetched_source(source, latest=not source, engine=engine, force=force) as path:
            result = _check_restore_at(path, engine, note, force=force, progress=progress)
        record.file = result.path
        record.outcome = "success" if result.ok else "refused"
        record.message = result.reason
    return result


def _check_restore_at(path: Path, engine: Engine, note: str | None, *, force: bool, progress: Progress | None):
    say = progress or (lambda message: None)
    t0 = time.monotonic()
    backups.clean_scratch_leftovers(engine.alias)
    result = RestoreCheckResult(path=str(path), database=engine.alias, engine=engine.display_name)
    if note:
        result.notes.append(note)
    checks = Checks()
    try:
        say("checking the file")
        manifest = check_file(path, engine, force, checks)
        result.backup_created_at = isoformat(manifest_field(manifest, "created_at"))
        foreign = backups.foreign_source_note(manifest, engine)
        if foreign:
            result.notes.append(foreign)
        say("loading into a scratch database")
        with (
            loaded_scratch(engine, path, manifest, checks) as scratch,
            scratch_alias(engine.alias, scratch.name) as alias,
        ):
            result.row_counts, result.pending_migrations = check_loaded(alias, scratch, path, manifest, force, checks)
            if result.pending_migrations:
                say("applying pending migrations to the scratch database")
                try:
                    migrate_scratch(alias)
                except Exception as exc:
                    checks.refuse("migrations", f"the pending migrations fail on {path.name}: {exc}")
                checks.passed("migrations apply", f"{len(result.pending_migrations)} pending migration(s) applied")
    except RestoreRefused as exc:
        result.ok = False
        result.reason = str(exc)
    else:
        result.ok = True
        result.reason = "the backup would restore"
    result.checks = checks.items
    result.duration_ms = to_ms(time.monotonic() - t0)
    return result


def restore_backup(
    source=None,
    *,
    latest: bool = False,
    database: str = DEFAULT_DB_ALIAS,
    force: bool = False,
    safety_backup: bool = True,
    migrate: bool = True,
    confirm: Callable[[RestorePlan], bool] | None = None,
    actor: str | None = None,
    progress: Progress | None = None,
) -> RestoreResult:
    """Replace the live database with a backup, only once the backup is proven good; atomically.

    ``confirm`` (interactive runs) receives the RestorePlan and returns whether to go on.
    Raises RestoreRefused (nothing was touched), RestoreFailed (the live database is
    the old one, or the restored one when the failure came after the swap; the message
    says which), LockHeld / CouldNotRun (could not run). A backup that is only offsite
    is downloaded and checked first, and its copy removed at the end (``fetched_source``).
    """
    engine, _ = _engine_of(database)
    t0 = time.monotonic()
    found = False
    try:
        with fetched_source(source, latest=latest, engine=engine, force=force) as path:
            found = True
            return _restore_from(
                path,
                engine,
                force=force,
                safety_backup=safety_backup,
                migrate=migrate,
                confirm=confirm,
                actor=actor,
                progress=progress,
            )
    except DbtoolsError as exc:
        if not found:  # no such file, no --latest backup: journalled as restore --check's are
            outcome = "refused" if isinstance(exc, RestoreRefused) else "failure"
            _journal_refusal(Path(str(source or "--latest")), database, actor, outcome, exc, t0)
        raise


def _restore_from(
    path: Path,
    engine: Engine,
    *,
    force: bool,
    safety_backup: bool,
    migrate: bool,
    confirm: Callable[[RestorePlan], bool] | None,
    actor: str | None,
    progress: Progress | None,
) -> RestoreResult:
    say = progress or (lambda message: None)
    t0 = time.monotonic()
    database = engine.alias
    checks = Checks()
    try:
        with database_lock(database, "restore"):
            for name in engine.drop_swap_leftovers():
                logger.info("dropped %s, left behind by an interrupted restore", name)
            backups.clean_scratch_leftovers(database)
            say("checking the file")
            manifest = check_file(path, engine, force, checks)
            result = RestoreResult(
                path=str(path),
                database=database,
                engine=engine.display_name,
                backup_created_at=isoformat(manifest_field(manifest, "created_at")),
                backup_reason=manifest_field(manifest, "reason"),
                swap=engine.swap_description(),
            )
            foreign = backups.foreign_source_note(manifest, engine)
            if foreign:
                result.warnings.append(foreign)
            safety = SafetyBackup(engine, actor, say) if safety_backup else None
            try:
                _load_check_swap(engine, path, manifest, force, migrate, confirm, actor, checks, result, safety, say)
            except BaseException:
                if safety is not None:
                    safety.discard()  # refused or cancelled before the swap: nothing of it stays
                raise
    except RestoreRefused as exc:
        # Refused before the swap: the live database is as it was, so the refusal goes to
        # the journal (the dashboard shows it; the next logged operation moves it in).
        _journal_refusal(path, database, actor, "refused", exc, t0)
        raise
    except DbtoolsError as exc:
        engine.finish_swap()
        if not isinstance(exc, RestoreFailed):  # a RestoreFailed is in the log already
            _journal_refusal(path, database, actor, "failure", exc, t0)
        raise
    result.checks = checks.items
    say("validating the restored database")
    validate_restored(engine, actor, result)
    engine.finish_swap()  # the replaced database, dropped meanwhile
    result.duration_ms = to_ms(time.monotonic() - t0)
    return result


def _load_check_swap(engine, path, manifest, force, migrate, confirm, actor, checks, result, safety, say) -> None:
    """The load and its checks, the confirmation, then (logged) the swap stage."""
    database = engine.alias
    say("loading into a scratch database")
    with (
        loaded_scratch(engine, path, manifest, checks, defer_integrity=engine.scratch_readable_during_swap) as scratch,
        scratch_alias(database, scratch.name) as alias,
    ):
        say("checking the scratch database")
        backup_counts, pending = check_loaded(alias, scratch, path, manifest, force, checks)
        validation = None
        if scratch.pending_integrity is not None:
            # SQLite's integrity check of the file as it came is still running: validate
            # the same content on the other core meanwhile (the migrations, if any, first).
            if not (migrate and pending):
                validation = start_validation(engine, scratch.name)

            def quiesce() -> None:
                if validation is not None:
                    wait([validation])
                connections[alias].close()

            say("waiting for the integrity check of the scratch database")
            try:
                if settle_integrity(engine, scratch, path, manifest, checks, quiesce):
                    validation = None  # of the file before its indexes were rebuilt
            except BaseException:
                if validation is not None:
                    wait([validation])  # no thread left reading a refused file
                raise
        result.rows_before = live_counts(engine)
        if confirm is not None:
            plan = RestorePlan(
                database=database,
                target=engine.describe(),
                path=str(path),
                backup_created_at=result.backup_created_at,
                backup_reason=result.backup_reason,
                rows_now=result.rows_before,
                rows_backup=backup_counts,
                pending_migrations=pending if migrate else [],
                safety_backup=safety is not None,
                backup_of=backups.foreign_source_note(manifest, engine) or "",
            )
            if not confirm(plan):
                raise RestoreRefused("restore cancelled; nothing was changed")
        # From here on the live database is written to (the safety backup's entry
        # first), so the restore is logged too, whatever its outcome.
        with record_operation("restore", database=database, actor=actor) as record:
            record.file = str(path)
            record.checksum = manifest_field(manifest, "sha256") or ""
            swap_stage(
                engine,
                alias,
                scratch.name,
                pending,
                migrate=migrate,
                safety=safety,
                result=result,
                say=say,
                integrity_checked=scratch.integrity_checked,
                validation=validation,
            )
            record.details = {
                "backup_of": backups.source_of(manifest),
                "safety_backup": result.safety_backup,
                "migrations_applied": result.migrations_applied,
                "rows_after": result.rows_after,
            }
            foreign = backups.foreign_source_note(manifest, engine)
            record.message = f"restored {path.name}" + (f" ({foreign})" if foreign else "")


def _journal_refusal(path: Path, database: str, actor: str | None, outcome: str, exc, t0: float) -> None:
    record = OperationRecord(
        operation="restore", database=database, actor=actor or os_user(), file=str(path), message=str(exc)
    )
    record.outcome = outcome
    seconds = time.monotonic() - t0
    append_journal(record, timezone.now() - timedelta(seconds=seconds), seconds)
