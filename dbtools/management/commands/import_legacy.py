"""``manage.py import_legacy``: bring a Flask-era mcServerManager database in.

Exit 0 imported (or, with --dry-run, would import); 1 invalid rows without
--skip-invalid, collisions, or the database refused the rows (nothing written);
2 could not run (source unreadable or not the old schema, target unmigrated).
"""

import json
import sys
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS

from dbtools.checks import OPERATIONS_CHECKS
from dbtools.errors import DbtoolsError
from dbtools.formatting import format_duration
from dbtools.legacy import LEGACY_TABLES, ImportRefused, import_legacy


class Command(BaseCommand):
    help = (
        "Import a Flask-era mcServerManager database (a SQLite file, or a postgres:// or mysql:// URL, "
        "only ever read) into this one: rows checked first, ids kept, passwords kept."
    )
    requires_system_checks = OPERATIONS_CHECKS

    def add_arguments(self, parser):
        parser.add_argument("source", help="the old database: a SQLite file, or postgres://... / mysql://...")
        parser.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help="import the valid rows; write the invalid ones (and rows depending on them) to a quarantine file",
        )
        parser.add_argument(
            "--report-dir", help="where the report and quarantine file go (default: <backup dir>/imports)"
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="database alias (default: %(default)s)")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args, **options):
        progress = _Progress(sys.stderr) if sys.stderr.isatty() and not options["json"] else None
        try:
            report = import_legacy(
                options["source"],
                database=options["database"],
                dry_run=options["dry_run"],
                skip_invalid=options["skip_invalid"],
                report_dir=options["report_dir"],
                progress=progress,
            )
        except ImportRefused as exc:
            self.print_report(exc.report, options)
            raise CommandError(str(exc), returncode=exc.exit_code) from None
        except DbtoolsError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from None
        finally:
            if progress:
                progress.finish()
        self.print_report(report, options)

    def print_report(self, report, options) -> None:
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2, default=str))
            return
        out = self.stdout.write
        out(f"Source: {report.source}, Alembic revision {report.revision or 'none (no alembic_version table)'}")
        for problem in report.problems:
            out(self.style.ERROR(f"invalid: {problem.line()}"))
        for collision in report.collisions:
            out(self.style.ERROR(f"collision: {collision.line()}"))
        for name, why in report.not_carried.items():
            out(f"not carried over: {name}: {why}")
        verb = "would import" if report.dry_run or not report.written else "imported"
        for table in LEGACY_TABLES:
            out(
                f"{table}: {report.source_rows.get(table, 0):,} in the source, {verb} "
                f"{report.imported.get(table, 0):,}, quarantined {report.quarantined.get(table, 0):,}"
            )
        if report.dry_run:
            out(
                "Dry run: nothing was changed."
                + (" A pre-import backup would be taken first." if not report.collisions else "")
            )
        if report.backup:
            out(f"Backup before the import: {report.backup}")
        if report.quarantine_file:
            out(f"Quarantined rows: {report.quarantine_file}")
        if report.report_file:
            out(f"Report: {report.report_file}")
        if report.written:
            out(
                self.style.SUCCESS(
                    f"Imported {sum(report.imported.values()):,} rows in {format_duration(report.duration_ms)}."
                )
            )


class _Progress:
    """One self-overwriting line on the terminal (only used when stderr is one)."""

    def __init__(self, stream):
        self.stream = stream
        self.started = time.perf_counter()
        self.last = 0.0
        self.dirty = False

    def __call__(self, table: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if done < total and now - self.last < 0.2:
            return
        self.last = now
        self.stream.write(
            f"\r\033[K{table}: {done:,}/{total:,} ({100 * done // max(total, 1)}%), {now - self.started:.1f} s"
        )
        self.stream.flush()
        self.dirty = True

    def finish(self) -> None:
        if self.dirty:
            self.stream.write("\n")
            self.stream.flush()
