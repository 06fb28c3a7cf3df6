"""``import_legacy``: read the whole source, check it, and only then write, logged as one operation."""

from __future__ import annotations

import gc
import time
from pathlib import Path

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.utils import timezone

from ..backups import create_backup
from ..engines.legacy import open_legacy_source
from ..errors import CouldNotRun, DbtoolsError
from ..formatting import first_line, to_ms
from ..locks import database_lock
from ..oplog import record_operation
from .report import LEGACY_COLUMNS, LEGACY_TABLES, ImportRefused, ImportReport, Progress
from .rules import Checker, check_configs, check_servers, check_users, jsonable
from .store import collisions, report_directory, require_schema, write_report_files, write_rows

# --- reading and recognising the source ---------------------------------------------


def recognise(source) -> str | None:
    """Check the Flask schema is there; return its Alembic revision (None without the table)."""
    tables = source.tables()
    missing = [t for t in LEGACY_TABLES if t not in tables]
    if missing:
        raise CouldNotRun(
            f"{source.describe()} is not a Flask-era mcServerManager database: "
            f"table{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing"
        )
    if "django_migrations" in tables:
        raise CouldNotRun(f"{source.describe()} is a mcmanager (Django) database, not a Flask-era one: use restore")
    for table in LEGACY_TABLES:
        present = set(source.columns(table))
        lacking = [c for c in LEGACY_COLUMNS[table] if c not in present]
        if lacking:
            raise CouldNotRun(
                f"{source.describe()} is not a Flask-era mcServerManager database: "
                f"table {table} lacks column{'s' if len(lacking) > 1 else ''} {', '.join(lacking)}"
            )
    if "alembic_version" not in tables:
        return None
    return ", ".join(str(row[0]) for row in source.rows("alembic_version", ["version_num"], order_by=None)) or None


# --- the service ------------------------------------------------------------------------


def import_legacy(
    source: str,
    *,
    database: str = DEFAULT_DB_ALIAS,
    dry_run: bool = False,
    skip_invalid: bool = False,
    report_dir=None,
    progress: Progress | None = None,
    actor: str | None = None,
) -> ImportReport:
    """Import a Flask-era database (a SQLite path or a URL) into ``database``.

    Raises CouldNotRun (exit 2: the source cannot be read or is not the old schema, the
    target is unreachable or unmigrated) or ImportRefused (exit 1: invalid rows without
    ``skip_invalid``, or collisions; nothing was written). The report is also on the
    exception (``exc.report``) so the command can print it.
    """

    started = time.monotonic()
    if database not in connections:
        raise CouldNotRun(f"no database '{database}' in DATABASES")
    require_schema(database)
    # Millions of new tuples would set off the cyclic garbage collector again and again for nothing.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        if dry_run:
            return _import(source, database, dry_run, skip_invalid, report_dir, progress, actor, started)
        # Every real import is logged with its counts, a refused one too (outcome failure).
        with record_operation("import_legacy", database=database, actor=actor) as record:
            try:
                report = _import(source, database, dry_run, skip_invalid, report_dir, progress, actor, started)
            except ImportRefused as exc:
                _log_details(record, exc.report)
                raise
            _log_details(record, report)
            record.message = (
                f"imported {sum(report.imported.values())} rows, quarantined {report.invalid_rows} from {report.source}"
            )
            return report
    finally:
        if gc_was_enabled:
            gc.enable()


def _log_details(record, report: ImportReport) -> None:
    record.file = report.source  # the source as describe() says it: never a URL's password
    record.details = {
        "source": report.source,
        "revision": report.revision,
        "source_rows": report.source_rows,
        "imported": report.imported if report.written else {t: 0 for t in LEGACY_TABLES},
        "quarantined": report.quarantined,
        "problems": len(report.problems),
        "collisions": len(report.collisions),
        "backup": report.backup,
        "quarantine_file": report.quarantine_file,
        "report_file": report.report_file,
    }


def _import(source, database, dry_run, skip_invalid, report_dir, progress, actor, started) -> ImportReport:
    # Rows are checked as they stream in: the source's own tuples never sit in memory whole.
    with open_legacy_source(source) as src:
        report = ImportReport(source=src.describe(), database=database, dry_run=dry_run, skip_invalid=skip_invalid)
        report.revision = recognise(src)
        checker = Checker(timezone.now())
        users = check_users(src.rows("user", LEGACY_COLUMNS["user"]), checker)
        user_ids = {r[0] for r in users}
        servers = check_servers(src.rows("server", LEGACY_COLUMNS["server"]), checker, user_ids)
        configs = check_configs(src.rows("configuration", LEGACY_COLUMNS["configuration"]), checker, user_ids)
        order = {t: i for i, t in enumerate(LEGACY_TABLES)}
        report.problems = sorted(
            (p for problems in checker.problems.values() for p in problems),
            key=lambda p: (order[p.table], str(type(p.id)), p.id),
        )
        # The quarantine file holds the source's rows as they are: read again, those only.
        raw = {t: _bad_rows(src, t, checker) for t in LEGACY_TABLES}
    report.source_rows = {"user": len(users), "server": len(servers), "configuration": len(configs)}

    good = {
        "user": [r for r in users if not checker.is_bad("user", r[0])],
        "server": [r for r in servers if not checker.is_bad("server", r[0])],
        "configuration": [r for r in configs if not checker.is_bad("configuration", r[0])],
    }
    report.imported = {t: len(rows) for t, rows in good.items()}
    report.quarantined = {t: report.source_rows[t] - report.imported[t] for t in LEGACY_TABLES}
    report.collisions = collisions(database, good["user"], good["server"], good["configuration"])
    report.duration_ms = to_ms(time.monotonic() - started)
    if report.collisions:
        raise ImportRefused(
            f"{len(report.collisions)} rows collide with rows already in database '{database}'; nothing was imported",
            report,
        )
    if report.problems and not skip_invalid:
        raise ImportRefused(
            f"{report.invalid_rows} rows break our rules ({len(report.problems)} problems); nothing was imported "
            "(--skip-invalid imports the others and quarantines these)",
            report,
        )
    if dry_run:
        return report
    _run_import(report, raw, checker, good, database, report_dir, progress, actor)
    report.duration_ms = to_ms(time.monotonic() - started)
    return report


def _bad_rows(src, table: str, checker: Checker) -> list[tuple]:
    bad = {row_id for t, row_id in checker.problems if t == table}
    return [row for row in src.rows(table, LEGACY_COLUMNS[table]) if row[0] in bad] if bad else []


def _run_import(report, raw, checker, good, database, report_dir, progress, actor) -> None:

    quarantined = [
        {
            "table": table,
            "id": row[0],
            "problems": [p.as_dict() for p in checker.problems[(table, row[0])]],
            "row": {c: jsonable(v) for c, v in zip(LEGACY_COLUMNS[table], row, strict=True)},
        }
        for table in LEGACY_TABLES
        for row in raw[table]
    ]
    with database_lock(database, "import"):
        backup = create_backup(database=database, reason="pre-import", actor=actor, take_lock=False)
        report.backup = str(backup.path)
        try:
            with transaction.atomic(using=database):
                write_rows(database, good["user"], good["server"], good["configuration"], progress)
                # Inside the transaction: no import without its quarantine file and report.
                report.written = True
                write_report_files(report, quarantined, report_directory(report_dir))
        except DatabaseError as exc:
            report.written = False
            for path in (report.report_file, report.quarantine_file):
                if path:
                    Path(path).unlink(missing_ok=True)
            first = first_line(exc)
            raise DbtoolsError(f"the database refused the import ({first}); nothing was imported") from None
