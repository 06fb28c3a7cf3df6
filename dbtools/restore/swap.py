"""The part of a restore that changes the live database: the safety backup, the scratch made
ready (pending migrations, the operations log carried in), the engine's atomic swap, the
integrity check of the result (the safety backup put back when it fails), and the validation
of the restored database.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import partial
from pathlib import Path

from django.db import DatabaseError, connections

from .. import backups
from ..engines import Engine
from ..errors import DbtoolsError, RestoreFailed
from ..formatting import first_line
from ..manifest import manifest_path
from ..oplog import deferred_operation, write_entry
from ..validation import run_validation, validate_database
from .results import Progress, RestoreResult
from .scratch import carry_operations_log, migrate_scratch, scratch_alias

logger = logging.getLogger("dbtools.restore")


def live_counts(engine: Engine) -> dict[str, int]:
    """Row counts of the live database; {} when it cannot be counted."""
    try:
        return engine.count_rows()
    except Exception as exc:  # a damaged live database is a reason to restore, not to stop
        logger.warning("could not count the rows of the live database: %s", exc)
        return {}


def swap_stage(
    engine: Engine,
    alias: str,
    scratch: str,
    pending: list[str],
    *,
    migrate: bool,
    safety: SafetyBackup | None,
    result: RestoreResult,
    say: Progress,
    integrity_checked: bool = False,
    validation: Future | None = None,
) -> None:
    """Safety backup (joined and logged), migrations and log on the scratch (``alias``), then
    the swap. Raises RestoreFailed.

    ``integrity_checked``: the engine's full integrity check passed on the scratch as it was
    loaded; it is not run again unless migrations have since rewritten the scratch (the
    operations log's few rows are written by the engine itself). ``validation``: the
    scratch's validation, started earlier (start_validation) on this same content."""
    if safety is not None:
        result.safety_backup = safety.keep()
    if migrate and pending:
        say(f"applying {len(pending)} pending migration(s) to the scratch database")
        try:
            result.migrations_applied = migrate_scratch(alias)
        except Exception as exc:
            raise RestoreFailed(f"the pending migrations failed on the backup, nothing was changed: {exc}") from exc
    say("carrying the operations log over")
    try:
        result.operations_carried = carry_operations_log(engine, alias)
    except DatabaseError as exc:
        message = f"the operations log was not carried over ({first_line(exc)}); it is in the safety backup"
        logger.info(message)
        result.warnings.append(message)
    connections[alias].close()
    checking = integrity = None
    # Proven before the swap, and not rewritten since by migrations: not checked again.
    proven = engine.scratch_readable_during_swap and integrity_checked and not result.migrations_applied
    if engine.scratch_readable_during_swap:
        # The swap only reads the scratch and makes the live database a copy of it: validate
        # that same content and run the engine's full integrity check of it meanwhile, on the
        # other core, rather than on the live database after the swap. Joined before the
        # scratch is removed, whatever happens to the swap.
        try:
            engine.prepare_swap(scratch)
        except Exception as exc:
            raise RestoreFailed(f"the swap failed, the live database is unchanged: {exc}") from exc
        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="restore-validate")
        checking = validation if validation is not None else pool.submit(_validate_scratch, engine, scratch)
        if not proven:
            integrity = pool.submit(engine.integrity_of_scratch, scratch)
        pool.shutdown(wait=False)
    elif engine.validate_scratch_before_swap:
        # The swap moves the scratch whole (its content unchanged): validate it now, while
        # prepare_swap() does whatever the engine needs (MariaDB: nothing; PostgreSQL's
        # statistics are gathered after the swap), rather than the live database after.
        say("validating the scratch database before the swap")
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="restore-validate")
        checking = pool.submit(_validate_scratch, engine, scratch)
        pool.shutdown(wait=False)
        try:
            engine.prepare_swap(scratch)
        except Exception as exc:
            raise RestoreFailed(f"the swap failed, the live database is unchanged: {exc}") from exc
        finally:
            wait([checking])  # its connections to the scratch closed before the swap moves it
    say("swapping")
    try:
        engine.swap_in(scratch)
    except Exception as exc:
        raise RestoreFailed(f"the swap failed, the live database is unchanged: {exc}") from exc
    finally:
        if checking is not None and engine.scratch_readable_during_swap:
            wait([f for f in (checking, integrity) if f is not None])
    _close_live_connections(engine)
    say("swapped")
    say("checking the restored database")
    if integrity is not None:
        damage = integrity.result()
    elif proven:
        damage = []  # the swap copied exactly the proven scratch in
    else:
        damage = engine.integrity_after_swap()
    if damage:
        _put_back(engine, result.safety_backup, damage)
    result.rows_after = live_counts(engine)
    if checking is not None:
        try:
            result.scratch_validation = checking.result()
        except Exception as exc:  # validated again after the swap, as on the other engines
            logger.info("validating the scratch during the swap failed: %s", exc)


class SafetyBackup:
    """The safety backup of the live database, taken on a thread of its own while the backup
    loads into the scratch (the dump tool and the loader then use the two cores at once).

    Until the restore goes ahead the live database must stay as it was, so the backup's
    operations-log entry is held back (``oplog.deferred_operation``) and written by
    ``keep``; a restore refused or cancelled before the swap calls ``discard``, which waits
    for the thread and removes the copy it made (nothing of it is logged: the refusal is
    in the journal). The copy is of the live database as it was while the backup loaded.
    """

    def __init__(self, engine: Engine, actor: str | None, say: Progress) -> None:
        self.database = engine.alias
        self._say = say
        self.entries: list = []
        self.kept = False
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="restore-safety")
        self._future = pool.submit(self._take, actor, say)
        pool.shutdown(wait=False)

    def _take(self, actor: str | None, say: Progress):
        say("taking a safety backup of the live database (alongside the load)")
        try:
            # No retention here: a restore must not prune backups (the one being restored among them).
            # Not checked row by row against the CHECK constraints: informative only, and
            # about rows this restore is replacing (a third of a backup's time on SQLite).
            backup = backups.create_backup(
                database=self.database,
                reason="pre-restore",
                actor=actor,
                take_lock=False,  # the restore holds it
                retention=backups.RetentionPolicy(),
                check_rows=False,
                offsite=False,  # a restore neither waits for nor depends on the store
                log=partial(deferred_operation, self.entries),
            )
        finally:
            connections.close_all()  # this thread's own connections
        say("safety backup taken")
        return backup

    def keep(self) -> str:
        """Wait for the backup, log it in the live database; its path. Raises RestoreFailed."""
        self.kept = True
        if not self._future.done():
            self._say("waiting for the safety backup to finish")
        try:
            backup = self._future.result()
        except DbtoolsError as exc:
            raise RestoreFailed(
                f"the safety backup failed, nothing was changed: {exc} "
                "(--no-safety-backup restores without one, e.g. over a database that is beyond saving)"
            ) from exc
        finally:
            for record, started, seconds in self.entries:
                write_entry(record, started, seconds, self.database)
        return str(backup.path)

    def discard(self) -> None:
        """The restore did not go ahead: wait for the backup and remove it, unlogged."""
        if self.kept:
            return
        try:
            backup = self._future.result()
        except Exception:  # nothing was kept by a failed backup
            return
        for leftover in (Path(backup.path), manifest_path(backup.path)):
            leftover.unlink(missing_ok=True)


def _close_live_connections(engine: Engine) -> None:
    """Close this thread's connections to the live database: the next query sees the swapped-in one."""
    for conn in connections.all(initialized_only=True):
        if conn.alias == engine.alias:
            conn.close()


def _put_back(engine: Engine, safety_backup: str | None, damage: list[str]) -> None:
    """The restored database failed the engine's integrity check: put the safety backup back. Raises RestoreFailed."""
    what = f"the restored database fails the engine's integrity check ({damage[0]})"
    if not safety_backup:
        raise RestoreFailed(f"{what}; no safety backup was taken: restore another backup")
    try:
        with backups.open_dump(Path(safety_backup)) as stream, engine.load_into_scratch(stream) as scratch:
            engine.prepare_swap(scratch.name)
            engine.swap_in(scratch.name)
    except Exception as exc:
        raise RestoreFailed(f"{what}, and putting back the safety backup {safety_backup} failed: {exc}") from exc
    finally:
        _close_live_connections(engine)
    raise RestoreFailed(f"{what}; the safety backup {Path(safety_backup).name} was put back")


def start_validation(engine: Engine, scratch: str) -> Future:
    """The validation of the scratch, on a thread of its own (joined by swap_stage)."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="restore-validate")
    try:
        return pool.submit(_validate_scratch, engine, scratch)
    finally:
        pool.shutdown(wait=False)


def _validate_scratch(engine: Engine, scratch: str):
    with scratch_alias(engine.alias, scratch) as alias:
        # The engine's own check already passed on the scratch, and what its load built
        # from the rows (PostgreSQL's unique indexes and foreign keys) needs no second proof.
        return run_validation(alias, engine_check=False, built_by_load=True)


def validate_restored(engine: Engine, actor: str | None, result: RestoreResult) -> None:
    """Validate the restored live database into ``result`` (a warning when validation cannot run)."""
    try:
        # The engine's own check (SQLite quick_check: most of a restore's time at scale)
        # already passed on the scratch; the swap copied exactly that content in, and
        # on SQLite the data rules ran on it during the swap.
        report = validate_database(engine.alias, actor=actor, engine_check=False, report=result.scratch_validation)
    except Exception as exc:
        message = f"validation could not run after the restore: {exc}"
        logger.info(message)
        result.warnings.append(message)
        return
    result.validation_ok = report.ok
    result.validation = report.as_dict()
