"""The scratch database of a restore: the backup loaded and checked on the way, a connection
alias to it, the code's pending migrations applied to it, the live operations log carried in.

The live database is not touched by anything here (``carry_operations_log`` only reads it).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.core.management.color import no_style
from django.core.management.sql import emit_post_migrate_signal
from django.db import connections, transaction
from django.db.migrations.executor import MigrationExecutor

from .. import backups
from ..engines import Engine
from ..errors import CouldNotRun, DbtoolsError, ForeignContent
from ..formatting import first_line
from ..models import OperationLog
from ..streams import HashingReader, open_regular
from .checks import Checks, manifest_field


@contextmanager
def scratch_alias(database: str, name: str) -> Iterator[str]:
    """A temporary connection alias to the scratch database ``name`` (a file path for SQLite).

    With it the ORM, the migration executor and the introspection work on the scratch
    exactly as on the live database, through the same settings. The connection is
    registered for this thread only and never added to settings.DATABASES (a
    "dynamically created connection", as Django's test framework calls them).
    """
    alias = f"__restore_scratch_{os.getpid()}_{secrets.token_hex(3)}"
    base = connections[database]
    settings_dict = dict(base.settings_dict)
    settings_dict["NAME"] = name
    wrapper = base.__class__(settings_dict, alias=alias)
    connections[alias] = wrapper
    try:
        yield alias
    finally:
        try:
            wrapper.close()
        finally:
            del connections[alias]


def migrate_scratch(alias: str) -> list[str]:
    """Apply the code's pending migrations to the scratch database; the names applied."""
    executor = MigrationExecutor(connections[alias])
    targets = executor.loader.graph.leaf_nodes()
    plan = executor.migration_plan(targets)
    applied = [f"{m.app_label}.{m.name}" for m, backwards in plan if not backwards]
    if plan:
        executor.migrate(targets, plan=plan)
    # What `migrate` does after: content types and permissions for new models.
    emit_post_migrate_signal(0, False, alias)
    return applied


def carry_operations_log(engine: Engine, alias: str) -> int:
    """Copy the live database's operations log into the scratch ``alias`` (merged with the backup's own).

    The restored database then holds every entry written before the restore, including
    the safety backup's. Raises DatabaseError when the scratch cannot take them (its
    dbtools tables are older than the code and were not migrated).
    """
    database = engine.alias
    fields = [f.attname for f in OperationLog._meta.concrete_fields if f.attname != "id"]

    def key(row: dict) -> tuple:
        return (row["started_at"], row["operation"], row["actor"], row["database"], row["file"], row["outcome"])

    if OperationLog._meta.db_table not in engine.connection.introspection.table_names():
        return 0  # a live database without a log (empty, or older than dbtools): nothing to keep
    live_rows = list(OperationLog.objects.using(database).order_by("started_at", "id").values(*fields))
    with transaction.atomic(using=alias):
        backup_rows = list(OperationLog.objects.using(alias).order_by("started_at", "id").values(*fields))
        known = {key(row) for row in live_rows}
        rows = live_rows + [row for row in backup_rows if key(row) not in known]
        rows.sort(key=lambda row: row["started_at"])
        OperationLog.objects.using(alias).all().delete()
        OperationLog.objects.using(alias).bulk_create([OperationLog(**row) for row in rows], batch_size=500)
    connection = connections[alias]
    statements = connection.ops.sequence_reset_sql(no_style(), [OperationLog])
    if statements:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    return len(rows)


@contextmanager
def loaded_scratch(engine: Engine, path: Path, manifest, checks: Checks, defer_integrity: bool = False) -> Iterator:
    """Load the backup into a scratch database, checking it on the way; yields the ScratchDatabase.

    One pass over the file: its bytes are hashed as they are decompressed into the
    scratch, then the hash is compared with the manifest's. The structure checks are the
    loader's (SQLite: header, page count, integrity_check or quick_check and a rebuild;
    PostgreSQL: pg_restore of the whole archive; MariaDB: the whole dump loads). The scratch
    is removed on exit. ``defer_integrity`` (a file with a manifest): the engine may leave its
    integrity check running; settle_integrity() joins it.
    """
    name = path.name
    prefix = f"{name} failed verification: " if manifest is not None else f"{name} does not load: "
    try:
        raw = open_regular(path)
    except OSError as exc:  # replaced since check_file by a FIFO, a directory, or nothing
        checks.refuse("readable", str(exc))
    scratch_cm = scratch = stream = None
    try:
        reader = HashingReader(raw)
        try:
            if manifest is not None:
                stream = backups.plaintext_reader(
                    reader, manifest_field(manifest, "compression") or "none", manifest_field(manifest, "encryption")
                )
            else:
                stream = backups.open_dump(path)
        except DbtoolsError as exc:  # encrypted, and no key (or an unreadable one) to decrypt it
            checks.refuse("decryption", f"{name} cannot be read: {exc}")
        load_error = foreign = None
        try:
            # Nothing vouches for a file without a manifest: it gets the engine's full check.
            scratch_cm = (
                engine.load_into_scratch(stream, level="full")
                if manifest is None
                else engine.load_into_scratch(stream, defer_integrity=defer_integrity)
            )
            scratch = scratch_cm.__enter__()
        except ForeignContent as exc:
            scratch_cm, foreign = None, exc
        except CouldNotRun:
            scratch_cm = None
            raise  # the loader itself cannot run (a client without --sandbox): exit 2, not the file's fault
        except Exception as exc:  # a broken dump breaks a loader in many ways; each one means "refuse"
            scratch_cm = None
            load_error = first_line(exc)
        finally:
            stream.close()
        if manifest is not None:
            try:
                reader.drain()  # the hash covers the whole file, whatever the loader read
            except OSError as exc:
                load_error = load_error or str(exc)
            digest = reader.sha256.hexdigest()
            expected, size = manifest_field(manifest, "sha256"), manifest_field(manifest, "size")
            if digest != expected or reader.size != size:
                checks.refuse(
                    "checksum",
                    f"{prefix}checksum: sha256 {digest[:16]}... of {reader.size} bytes, "
                    f"the manifest says {str(expected)[:16]}... of {size} bytes",
                )
            checks.passed("checksum", f"sha256 {digest[:16]}... as in the manifest")
        if foreign is not None:
            checks.refuse("content", f"{name} {foreign}")
        if load_error is not None:
            checks.refuse("structure", prefix + load_error)
        failed = [c for c in scratch.checks if not c.ok]
        if failed:
            checks.refuse("structure", f"{prefix}{failed[0].name}: {failed[0].detail}")
        checks.passed("structure", "loaded into a scratch database: " + ", ".join(c.name for c in scratch.checks))
        yield scratch
    except BaseException as exc:
        if scratch_cm is not None:
            scratch_cm.__exit__(type(exc), exc, exc.__traceback__)
        raise
    else:
        scratch_cm.__exit__(None, None, None)
    finally:
        raw.close()


def settle_integrity(engine: Engine, scratch, path: Path, manifest, checks: Checks, quiesce) -> bool:
    """Join the integrity check a deferred load left running; refuse the backup when it fails
    and the engine cannot rebuild the scratch from its rows. Returns whether it was rebuilt."""
    if scratch.pending_integrity is None:
        return False
    prefix = f"{path.name} failed verification: " if manifest is not None else f"{path.name} does not load: "
    try:
        rebuilt = engine.settle_scratch(scratch, quiesce)
    except DbtoolsError as exc:
        checks.refuse("structure", f"{prefix}{exc}")
    checks.passed(
        "integrity",
        "indexes rebuilt from the rows, which were sound" if rebuilt else "every index agrees with its rows",
    )
    return rebuilt
