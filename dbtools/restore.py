"""Guarded restore: a backup is proven good before anything touches the live database.

The pipeline (``restore_backup``), in order:

1. the lock of the database (a backup or restore running: LockHeld at once, exit 2);
2. file checks: readable, manifest present (or ``--force``), engine matches, applied
   migrations not newer than the code;
3. a load into a scratch database (never the live one), hashing the file on the way:
   the checksum against the manifest, the structure checks of backup verification,
   an mcmanager database (not a Flask-era file, not another application's), applied
   migrations known to the code, row counts equal to the manifest's;
4. the operator's confirmation (interactive runs), saying what is replaced by what;
5. a safety backup of the live database (reason pre-restore), taken on a thread while
   step 3 loads (the two use different cores and tools); its operations-log entry is
   written only now, and a restore refused in steps 3-4 removes it (``_SafetyBackup``);
6. on the scratch: pending migrations applied, the operations log of the live database
   carried over (so the log of what happened before the restore survives it);
7. the atomic swap (``Engine.swap_in``: SQLite backup API, PostgreSQL database rename in
   one transaction, MariaDB one RENAME TABLE statement);
8. validation of the restored database, the restore logged, a summary returned.

Until step 7 the live database is not written to (refusals go to the operations journal
beside the backups, not to the live database's operations log, so a refused restore
leaves a SQLite file byte-for-byte as it was; the next logged operation moves them in).
``check_restore`` runs steps 2, 3 and the migrations of 6 on a scratch database and
stops there.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.utils import timezone

from . import backup as backups
from . import signing
from .engines import Engine, get_engine
from .errors import CouldNotRun, DbtoolsError, ForeignContent, RestoreFailed, RestoreRefused, VerificationFailed
from .locks import database_lock
from .manifest import manifest_path
from .oplog import deferred_operation, journal_operation, record_operation, write_entry
from .retention import RetentionPolicy
from .streams import Check, NotRegularFile, open_regular

logger = logging.getLogger("dbtools.restore")

# A mcmanager database of this version has these, whatever its age (created by the
# first migrations of each app).
REQUIRED_TABLES = ("django_migrations", "accounts_user", "servers_server", "servers_configuration")
# The Flask application this project replaced kept its data in these tables.
FLASK_TABLES = frozenset({"user", "server", "configuration"})
# Tables shown in the confirmation and the summary (the others are Django's own).
SHOWN_PREFIXES = ("accounts_", "servers_", "dbtools_")

Progress = Callable[[str], None]


@dataclass
class RestoreCheckResult:
    """What ``restore --check`` found: would this backup restore?"""

    path: str
    database: str
    engine: str
    ok: bool = False
    reason: str = ""
    checks: list[Check] = field(default_factory=list)
    backup_created_at: str | None = None
    row_counts: dict[str, int] = field(default_factory=dict)
    pending_migrations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "reason": self.reason,
            "notes": self.notes,
            "path": self.path,
            "database": self.database,
            "engine": self.engine,
            "backup_created_at": self.backup_created_at,
            "checks": [c.as_dict() for c in self.checks],
            "row_counts": self.row_counts,
            "pending_migrations": self.pending_migrations,
            "duration_s": round(self.duration_s, 3),
        }


@dataclass
class RestoreResult:
    """What a restore did."""

    path: str
    database: str
    engine: str
    backup_created_at: str | None = None
    backup_reason: str | None = None
    safety_backup: str | None = None
    swap: str = ""
    rows_before: dict[str, int] = field(default_factory=dict)
    rows_after: dict[str, int] = field(default_factory=dict)
    migrations_applied: list[str] = field(default_factory=list)
    operations_carried: int = 0
    validation_ok: bool | None = None
    validation: dict | None = None
    checks: list[Check] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    # The validation of the scratch run during the swap (SQLite), stored as the live database's.
    scratch_validation: object = field(default=None, repr=False)

    def as_dict(self) -> dict:
        return {
            "ok": True,
            "path": self.path,
            "database": self.database,
            "engine": self.engine,
            "backup_created_at": self.backup_created_at,
            "backup_reason": self.backup_reason,
            "safety_backup": self.safety_backup,
            "swap": self.swap,
            "rows_before": self.rows_before,
            "rows_after": self.rows_after,
            "migrations_applied": self.migrations_applied,
            "operations_carried": self.operations_carried,
            "validation_ok": self.validation_ok,
            "validation": self.validation,
            "checks": [c.as_dict() for c in self.checks],
            "warnings": self.warnings,
            "duration_s": round(self.duration_s, 3),
        }


@dataclass
class RestorePlan:
    """What an interactive restore asks the operator to confirm."""

    database: str
    target: str
    path: str
    backup_created_at: str | None
    backup_reason: str | None
    rows_now: dict[str, int]
    rows_backup: dict[str, int]
    pending_migrations: list[str]
    safety_backup: bool

    def describe(self) -> str:
        created = self.backup_created_at or "unknown time (no manifest)"
        reason = f", reason {self.backup_reason}" if self.backup_reason else ""
        lines = [
            f"Restore will REPLACE database '{self.database}' ({self.target}).",
            f"  now:    {format_counts(self.rows_now)}",
            f"  backup: {Path(self.path).name}, made {created}{reason}",
            f"          {format_counts(self.rows_backup)}",
        ]
        if self.pending_migrations:
            lines.append(f"  then {len(self.pending_migrations)} pending migration(s) are applied to it")
        if self.safety_backup:
            lines.append("A safety backup of the current database is taken first.")
        else:
            lines.append("NO safety backup is taken (--no-safety-backup): the current data will be gone.")
        return "\n".join(lines)


def format_counts(counts: dict[str, int]) -> str:
    shown = {t: n for t, n in sorted(counts.items()) if t.startswith(SHOWN_PREFIXES)}
    if not shown:
        return "no mcmanager tables"
    return ", ".join(f"{t} {n}" for t, n in shown.items())


class _Checks:
    """The checks done so far; ``refuse`` records the failing one and raises."""

    def __init__(self) -> None:
        self.items: list[Check] = []

    def passed(self, name: str, detail: str = "") -> None:
        self.items.append(Check(name, True, detail))

    def refuse(self, name: str, message: str, error: type[DbtoolsError] = RestoreRefused):
        self.items.append(Check(name, False, message))
        raise error(message)


# --- helpers -----------------------------------------------------------------------


def _engine_classes():
    from .engines.mysql import MySQLEngine
    from .engines.postgresql import PostgreSQLEngine
    from .engines.sqlite import SQLiteEngine

    return (SQLiteEngine, PostgreSQLEngine, MySQLEngine)


def _display(vendor: str | None) -> str:
    """A vendor ("mysql", as manifests store it) as people say it ("MariaDB")."""
    for engine_class in _engine_classes():
        if engine_class.vendor == (vendor or "").lower():
            return engine_class.display_name
    return vendor or "unknown"


def _manifest_field(manifest, name: str, default=None):
    """A field of the manifest, or ``default`` for a file restored without one (--force)."""
    return default if manifest is None else getattr(manifest, name, default)


def _isoformat(value) -> str | None:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


# --- finding the backup -------------------------------------------------------------


def resolve_source(source: str | os.PathLike | None, *, latest: bool, database: str) -> Path:
    """The backup file to restore: a path, a name in the backup directory, or the newest verified one."""
    if latest and source:
        raise CouldNotRun("give either a backup file or --latest, not both")
    if not latest and not source:
        raise CouldNotRun("say which backup to restore: a file, a name in the backup directory, or --latest")
    engine = get_engine(database)
    if latest:
        usable = [i for i in backups.list_backups() if i.verified and i.signed and not i.problem]
        newest = backups.newest_to_restore(usable, database)
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


@contextmanager
def fetched_source(source, *, latest: bool, database: str, force: bool = False) -> Iterator[Path]:
    """``resolve_source``, reaching for the offsite store (MCMANAGER_OFFSITE_URL) when needed.

    A name missing here, or (``latest``) an offsite backup newer than the newest local
    one, is downloaded into a private temporary directory: manifest first (signature
    checked), then the file (size and sha256 checked as it streams); the normal pipeline
    then runs on that copy, and the directory goes when the block ends, whatever happens.
    """
    from . import offsite

    store = offsite.OffsiteStore.from_settings()
    if store is None:
        yield resolve_source(source, latest=latest, database=database)
        return
    with offsite.private_download_dir() as tmp:
        yield _local_or_offsite(store, Path(tmp), source, latest, database, force)


def _local_or_offsite(store, tmp: Path, source, latest: bool, database: str, force: bool) -> Path:
    from . import offsite

    if latest and not source:
        usable = [i for i in backups.list_backups() if i.verified and i.signed and not i.problem]
        local = backups.newest_to_restore(usable, database)
        try:
            fetched = offsite.fetch_latest(store, tmp, database, local)
        except CouldNotRun as exc:
            if local is None:
                raise CouldNotRun(f"no verified, signed backup here, and {exc}") from None
            logger.warning("restore --latest: offsite copies not considered: %s", exc)
            fetched = None
        return fetched or resolve_source(None, latest=True, database=database)
    try:
        return resolve_source(source, latest=latest, database=database)
    except CouldNotRun:
        name = str(source or "")
        if not name or latest or Path(name).name != name:
            raise
        fetched = offsite.fetch_named(store, tmp, name, force)
        if fetched is None:
            raise CouldNotRun(
                f"no such backup: {name} (neither a file, a name in {backups.backup_directory()}, "
                f"nor a copy at {store.url})"
            ) from None
        return fetched


# --- checks on the file -------------------------------------------------------------


def _looks_like_flask(path: Path) -> bool:
    """A Flask-era mcmanager database: a SQLite file with tables user, server, configuration."""
    import sqlite3

    try:
        with open_regular(path) as fh:
            if fh.read(16) != b"SQLite format 3\x00":
                return False
        conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
        try:
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except (OSError, sqlite3.Error):
        return False
    return FLASK_TABLES <= names and "django_migrations" not in names


FLASK_MESSAGE = (
    "{name} is a Flask-era mcmanager database (tables user, server, configuration), "
    "not a backup of this version; bring it in with: python manage.py import_legacy {name} --dry-run"
)


def code_migrations() -> set[tuple[str, str]]:
    """Every migration the code has, as (app, name)."""
    from django.db.migrations.loader import MigrationLoader

    return set(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)


def unknown_migrations(applied) -> list[str]:
    """Applied migrations of our apps that the code does not have: the backup is newer than the code."""
    code = code_migrations()
    apps = {app for app, _ in code}
    return sorted(f"{app}.{name}" for app, name in applied if app in apps and (app, name) not in code)


def _manifest_migrations(manifest) -> list[tuple[str, str]]:
    migrations = _manifest_field(manifest, "migrations") or {}
    return [(app, name) for app, names in migrations.items() for name in names]


def _check_file(path: Path, engine: Engine, database: str, force: bool, checks: _Checks):
    """The checks that need only the file. Returns its manifest (None when forced without one)."""
    name = path.name
    try:
        with open_regular(path) as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.read(1)
    except NotRegularFile as exc:
        checks.refuse("readable", str(exc))
    except OSError as exc:
        checks.refuse("readable", f"cannot read {path}: {exc.strerror or exc}")
    if size == 0:
        checks.refuse("readable", f"{name} is empty (0 bytes)")
    checks.passed("readable", f"{size} bytes")

    try:
        manifest = backups.read_manifest(path)
    except VerificationFailed as exc:
        if _looks_like_flask(path):
            checks.refuse("mcmanager database", FLASK_MESSAGE.format(name=name))
        if not force:
            checks.refuse(
                "manifest",
                f"{exc}; a copy made by hand is restored only with --force",
            )
        checks.passed("manifest", f"none ({exc}); going on because of --force")
        manifest = None
    else:
        checks.passed(
            "manifest",
            f"{_manifest_field(manifest, 'reason')} backup of {_display(_manifest_field(manifest, 'engine'))}",
        )
        _check_signature(manifest, name, force, checks)

    if manifest is not None:
        backup_engine = (_manifest_field(manifest, "engine") or "").lower()
        if backup_engine != engine.vendor:
            checks.refuse(
                "engine",
                f"{name} is a {_display(backup_engine)} backup; database '{database}' is {engine.display_name}",
            )
        checks.passed("engine", engine.display_name)
        newer = unknown_migrations(_manifest_migrations(manifest))
        if newer:
            message = (
                f"{name} was made by a newer version: migrations {', '.join(newer[:5])}"
                f"{' ...' if len(newer) > 5 else ''} are unknown to this code"
            )
            if not force:
                checks.refuse("migrations", message + " (use --force to restore it anyway)")
            checks.passed("migrations", message + "; going on because of --force")
        else:
            checks.passed("migrations", "none newer than the code")
    else:
        # No manifest: at least the file must be a dump of this engine.
        kind = dump_vendor(path)
        if kind is None:
            checks.refuse("structure", f"{name} is not a database dump of any engine mcmanager knows")
        if kind != engine.vendor:
            checks.refuse(
                "engine",
                f"{name} is a {_display(kind)} dump; database '{database}' is {engine.display_name}",
            )
        checks.passed("engine", engine.display_name)
        # The structural checks of backup verification (SQLite header and quick_check,
        # the whole pg_dump archive parses, the MariaDB dump is complete).
        try:
            with backups.open_dump(path) as stream:
                found, _ = engine.check_dump(stream, level="quick")
        except ForeignContent as exc:
            checks.refuse("content", f"{name} {exc}")
        except Exception as exc:
            found = [Check("structure", False, (str(exc).strip().splitlines() or [repr(exc)])[0])]
        failed = [c for c in found if not c.ok]
        if failed:
            checks.refuse("structure", f"{name} is not a sound dump: {failed[0].name}: {failed[0].detail}")
        checks.passed("structure", ", ".join(c.name for c in found))
    return manifest


def _check_signature(manifest, name: str, force: bool, checks: _Checks) -> None:
    """A backup is ours only when its manifest is signed by this installation's key; else --force."""
    authenticity = manifest.authenticity
    if manifest.signed:
        checks.passed("signature", authenticity.detail)
    elif not force:
        checks.refuse("signature", signing.refusal(name, authenticity))
    else:
        checks.passed("signature", f"{authenticity.detail}; going on because of --force")


def dump_vendor(path: Path) -> str | None:
    """Which engine's dump the file holds (after decompression), or None."""
    try:
        stream = backups.open_dump(path)
        try:
            head = stream.read(4096)
        finally:
            stream.close()
    except Exception:  # unreadable, or a compressed stream that is not one
        return None
    for engine_class in _engine_classes():
        if engine_class.looks_like_dump(head):
            return engine_class.vendor
    return None


# --- the scratch database -----------------------------------------------------------


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


def _check_loaded(alias: str, scratch, path: Path, manifest, force: bool, checks: _Checks):
    """Checks on the loaded scratch: ours, migrations known, row counts as in the manifest."""
    name = path.name
    connection = connections[alias]
    tables = set(connection.introspection.table_names())
    if FLASK_TABLES <= tables and "django_migrations" not in tables:
        checks.refuse("mcmanager database", FLASK_MESSAGE.format(name=name))
    missing = [t for t in REQUIRED_TABLES if t not in tables]
    if missing:
        checks.refuse(
            "mcmanager database",
            f"{name} is not a mcmanager database: table{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing",
        )
    checks.passed("mcmanager database", f"{len(tables)} tables")

    from django.db.migrations.recorder import MigrationRecorder

    newer = unknown_migrations(MigrationRecorder(connection).applied_migrations())
    if newer and not force:
        checks.refuse(
            "migrations",
            f"{name} has migrations this code does not have: {', '.join(newer[:5])} (use --force to restore it anyway)",
        )

    counts = dict(scratch.row_counts)
    expected = _manifest_field(manifest, "row_counts")
    if manifest is not None:  # read_manifest proved row_counts an object of counts
        wrong = [
            f"{table} {counts.get(table)} (manifest {n})"
            for table, n in sorted(expected.items())
            if counts.get(table) != n
        ]
        if wrong:
            checks.refuse("row counts", f"{name} does not load as its manifest says: {', '.join(wrong[:5])}")
        checks.passed("row counts", f"{len(expected)} tables as in the manifest")
    return counts, pending_migrations(alias)


def pending_migrations(alias: str) -> list[str]:
    """Migrations of the code not applied in the database ``alias``, in the order they would run."""
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections[alias])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{m.app_label}.{m.name}" for m, backwards in plan if not backwards]


def migrate_scratch(alias: str) -> list[str]:
    """Apply the code's pending migrations to the scratch database; the names applied."""
    from django.core.management.sql import emit_post_migrate_signal
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections[alias])
    targets = executor.loader.graph.leaf_nodes()
    plan = executor.migration_plan(targets)
    applied = [f"{m.app_label}.{m.name}" for m, backwards in plan if not backwards]
    if plan:
        executor.migrate(targets, plan=plan)
    # What `migrate` does after: content types and permissions for new models.
    emit_post_migrate_signal(0, False, alias)
    return applied


def carry_operations_log(database: str, alias: str) -> int:
    """Copy the live database's operations log into the scratch (merged with the backup's own).

    The restored database then holds every entry written before the restore, including
    the safety backup's. Raises DatabaseError when the scratch cannot take them (its
    dbtools tables are older than the code and were not migrated).
    """
    from .models import OperationLog

    fields = [f.attname for f in OperationLog._meta.concrete_fields if f.attname != "id"]

    def key(row: dict) -> tuple:
        return (row["started_at"], row["operation"], row["actor"], row["database"], row["file"], row["outcome"])

    if OperationLog._meta.db_table not in connections[database].introspection.table_names():
        return 0  # a live database without a log (empty, or older than dbtools): nothing to keep
    live_rows = list(OperationLog.objects.using(database).order_by("started_at", "id").values(*fields))
    with transaction.atomic(using=alias):
        backup_rows = list(OperationLog.objects.using(alias).order_by("started_at", "id").values(*fields))
        known = {key(row) for row in live_rows}
        rows = live_rows + [row for row in backup_rows if key(row) not in known]
        rows.sort(key=lambda row: row["started_at"])
        OperationLog.objects.using(alias).all().delete()
        OperationLog.objects.using(alias).bulk_create([OperationLog(**row) for row in rows], batch_size=500)
    from django.core.management.color import no_style

    connection = connections[alias]
    statements = connection.ops.sequence_reset_sql(no_style(), [OperationLog])
    if statements:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    return len(rows)


@contextmanager
def _loaded_scratch(engine: Engine, path: Path, manifest, checks: _Checks) -> Iterator:
    """Load the backup into a scratch database, checking it on the way; yields the ScratchDatabase.

    One pass over the file: its bytes are hashed as they are decompressed into the
    scratch, then the hash is compared with the manifest's. The structure checks are the
    loader's (SQLite: header, page count, quick_check; PostgreSQL: pg_restore of the
    whole archive; MariaDB: the whole dump loads). The scratch is removed on exit.
    """
    from .streams import HashingReader

    name = path.name
    prefix = f"{name} failed verification: " if manifest is not None else f"{name} does not load: "
    try:
        raw = open_regular(path)
    except OSError as exc:  # replaced since _check_file by a FIFO, a directory, or nothing
        checks.refuse("readable", str(exc))
    scratch_cm = scratch = stream = None
    try:
        reader = HashingReader(raw)
        try:
            if manifest is not None:
                stream = backups.plaintext_reader(
                    reader, _manifest_field(manifest, "compression") or "none", _manifest_field(manifest, "encryption")
                )
            else:
                stream = backups.open_dump(path)
        except DbtoolsError as exc:  # encrypted, and no key (or an unreadable one) to decrypt it
            checks.refuse("decryption", f"{name} cannot be read: {exc}")
        load_error = foreign = None
        try:
            # Nothing vouches for a file without a manifest: it gets the engine's full check.
            scratch_cm = (
                engine.load_into_scratch(stream, level="full") if manifest is None else engine.load_into_scratch(stream)
            )
            scratch = scratch_cm.__enter__()
        except ForeignContent as exc:
            scratch_cm, foreign = None, exc
        except CouldNotRun:
            scratch_cm = None
            raise  # the loader itself cannot run (a client without --sandbox): exit 2, not the file's fault
        except Exception as exc:  # a broken dump breaks a loader in many ways; each one means "refuse"
            scratch_cm = None
            load_error = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        finally:
            stream.close()
        if manifest is not None:
            try:
                reader.drain()  # the hash covers the whole file, whatever the loader read
            except OSError as exc:
                load_error = load_error or str(exc)
            digest = reader.sha256.hexdigest()
            expected, size = _manifest_field(manifest, "sha256"), _manifest_field(manifest, "size")
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


# --- the service functions ----------------------------------------------------------


def check_restore(source, database: str = DEFAULT_DB_ALIAS, *, force: bool = False, progress: Progress | None = None):
    """Every check of a restore plus a test restore into a scratch database; the live one is not touched.

    Returns a RestoreCheckResult (``ok`` says whether the backup would restore). Raises
    CouldNotRun when the check itself cannot run (no such file, database unreachable).
    The verdict goes to the operations journal (the live database is not written to).
    ``source`` None is the newest verified backup, here or offsite (``fetched_source``).
    """
    if database not in connections:
        raise CouldNotRun(f"no database '{database}' in DATABASES")
    get_engine(database).check_live_database()  # exit 2 before any download
    with journal_operation("restore-check", database=database) as record:
        record.file = str(source or "--latest")
        with fetched_source(source, latest=not source, database=database, force=force) as path:
            result = _check_restore_at(path, database, force=force, progress=progress)
        record.file = result.path
        record.outcome = "success" if result.ok else "refused"
        record.message = result.reason
    return result


def _check_restore_at(path: Path, database: str, *, force: bool, progress: Progress | None):
    say = progress or (lambda message: None)
    t0 = time.monotonic()
    if database not in connections:
        raise CouldNotRun(f"no database '{database}' in DATABASES")
    engine = get_engine(database)
    note = engine.check_live_database()  # exit 2 when it cannot take a restore
    backups.clean_scratch_leftovers(database)
    result = RestoreCheckResult(path=str(path), database=database, engine=engine.display_name)
    if note:
        result.notes.append(note)
    checks = _Checks()
    try:
        say("checking the file")
        manifest = _check_file(path, engine, database, force, checks)
        result.backup_created_at = _isoformat(_manifest_field(manifest, "created_at"))
        say("loading into a scratch database")
        with _loaded_scratch(engine, path, manifest, checks) as scratch, scratch_alias(database, scratch.name) as alias:
            result.row_counts, result.pending_migrations = _check_loaded(alias, scratch, path, manifest, force, checks)
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
    result.duration_s = time.monotonic() - t0
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
    if database not in connections:
        raise CouldNotRun(f"no database '{database}' in DATABASES")
    get_engine(database).check_live_database()  # exit 2 before any download
    with fetched_source(source, latest=latest, database=database, force=force) as path:
        return _restore_from(
            path,
            database=database,
            force=force,
            safety_backup=safety_backup,
            migrate=migrate,
            confirm=confirm,
            actor=actor,
            progress=progress,
        )


def _restore_from(
    path: Path,
    *,
    database: str,
    force: bool,
    safety_backup: bool,
    migrate: bool,
    confirm: Callable[[RestorePlan], bool] | None,
    actor: str | None,
    progress: Progress | None,
) -> RestoreResult:
    say = progress or (lambda message: None)
    t0 = time.monotonic()
    if database not in connections:
        raise CouldNotRun(f"no database '{database}' in DATABASES")
    engine = get_engine(database)
    engine.check_live_database()
    checks = _Checks()
    try:
        with database_lock(database, "restore"):
            for name in engine.drop_swap_leftovers():
                logger.info("dropped %s, left behind by an interrupted restore", name)
            backups.clean_scratch_leftovers(database)
            say("checking the file")
            manifest = _check_file(path, engine, database, force, checks)
            result = RestoreResult(
                path=str(path),
                database=database,
                engine=engine.display_name,
                backup_created_at=_isoformat(_manifest_field(manifest, "created_at")),
                backup_reason=_manifest_field(manifest, "reason"),
                swap=engine.swap_description(),
            )
            safety = _SafetyBackup(database, actor, say) if safety_backup else None
            try:
                _load_check_swap(
                    engine, database, path, manifest, force, migrate, confirm, actor, checks, result, safety, say
                )
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
    _validate(database, actor, result)
    engine.finish_swap()  # the replaced database, dropped meanwhile
    result.duration_s = time.monotonic() - t0
    return result


def _load_check_swap(engine, database, path, manifest, force, migrate, confirm, actor, checks, result, safety, say):
    """Steps 3 to 7: the load and its checks, the confirmation, then (logged) the swap stage."""
    say("loading into a scratch database")
    with (
        _loaded_scratch(engine, path, manifest, checks) as scratch,
        scratch_alias(database, scratch.name) as alias,
    ):
        say("checking the scratch database")
        backup_counts, pending = _check_loaded(alias, scratch, path, manifest, force, checks)
        result.rows_before = _live_counts(database)
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
            )
            if not confirm(plan):
                raise RestoreRefused("restore cancelled; nothing was changed")
        # From here on the live database is written to (the safety backup's entry
        # first), so the restore is logged too, whatever its outcome.
        with record_operation("restore", database=database, actor=actor) as record:
            record.file = str(path)
            record.checksum = _manifest_field(manifest, "sha256") or ""
            _swap_stage(engine, database, alias, scratch.name, pending, migrate, safety, result, say)
            record.details = {
                "safety_backup": result.safety_backup,
                "migrations_applied": result.migrations_applied,
                "rows_after": result.rows_after,
            }
            record.message = f"restored {path.name}"


def _journal_refusal(path: Path, database: str, actor: str | None, outcome: str, exc, t0: float) -> None:
    from .oplog import OperationRecord, append_journal, os_user

    record = OperationRecord(
        operation="restore", database=database, actor=actor or os_user(), file=str(path), message=str(exc)
    )
    record.outcome = outcome
    seconds = time.monotonic() - t0
    append_journal(record, timezone.now() - timedelta(seconds=seconds), seconds)


def _live_counts(database: str) -> dict[str, int]:
    try:
        return backups.count_rows(database)
    except Exception as exc:  # a damaged live database is a reason to restore, not to stop
        logger.warning("could not count the rows of the live database: %s", exc)
        return {}


class _SafetyBackup:
    """The safety backup of the live database, taken on a thread of its own while the backup
    loads into the scratch (the dump tool and the loader then use the two cores at once).

    Until the restore goes ahead the live database must stay as it was, so the backup's
    operations-log entry is held back (``oplog.deferred_operation``) and written by
    ``keep``; a restore refused or cancelled before the swap calls ``discard``, which waits
    for the thread and removes the copy it made (nothing of it is logged: the refusal is
    in the journal). The copy is of the live database as it was while the backup loaded.
    """

    def __init__(self, database: str, actor: str | None, say: Progress) -> None:
        self.database = database
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
                retention=RetentionPolicy(),
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


def _swap_stage(engine, database, alias, scratch, pending, migrate, safety, result, say) -> None:
    """Safety backup (joined and logged), migrations and log on the scratch, then the swap. Raises RestoreFailed."""
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
        result.operations_carried = carry_operations_log(database, alias)
    except DatabaseError as exc:
        message = f"the operations log was not carried over ({str(exc).splitlines()[0]}); it is in the safety backup"
        logger.info(message)
        result.warnings.append(message)
    connections[alias].close()
    checking = integrity = None
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
        checking = pool.submit(_validate_scratch, database, scratch)
        integrity = pool.submit(engine.integrity_of_scratch, scratch)
        pool.shutdown(wait=False)
    elif engine.validate_scratch_before_swap:
        # The swap moves the scratch whole (its content unchanged): validate it while
        # prepare_swap() gathers its statistics, on the other core, rather than after.
        say("validating the scratch database before the swap")
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="restore-validate")
        checking = pool.submit(_validate_scratch, database, scratch)
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
        if integrity is not None:
            wait([checking, integrity])
    for conn in connections.all(initialized_only=True):
        if conn.alias == database:
            conn.close()
    say("swapped")
    say("checking the restored database")
    damage = integrity.result() if integrity is not None else engine.integrity_after_swap()
    if damage:
        _put_back(engine, result.safety_backup, damage)
    result.rows_after = _live_counts(database)
    if checking is not None:
        try:
            result.scratch_validation = checking.result()
        except Exception as exc:  # validated again after the swap, as on the other engines
            logger.info("validating the scratch during the swap failed: %s", exc)


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
        for conn in connections.all(initialized_only=True):
            if conn.alias == engine.alias:
                conn.close()
    raise RestoreFailed(f"{what}; the safety backup {Path(safety_backup).name} was put back")


def _validate_scratch(database: str, scratch: str):
    from .validation import run_validation

    with scratch_alias(database, scratch) as alias:
        # The engine's own check already passed on the scratch.
        return run_validation(alias, engine_check=False)


def _validate(database: str, actor: str | None, result: RestoreResult) -> None:
    from .validation import validate_database

    try:
        # The engine's own check (SQLite quick_check: most of a restore's time at scale)
        # already passed on the scratch; the swap copied exactly that content in, and
        # on SQLite the data rules ran on it during the swap.
        report = validate_database(database, actor=actor, engine_check=False, report=result.scratch_validation)
    except Exception as exc:
        message = f"validation could not run after the restore: {exc}"
        logger.info(message)
        result.warnings.append(message)
        return
    result.validation_ok = report.ok
    result.validation = report.as_dict()
