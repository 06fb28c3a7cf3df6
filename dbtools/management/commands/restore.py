"""``manage.py restore FILE | --latest``: replace the database with a backup proven good first.

``restore --check FILE`` runs every check and a test restore into a scratch database
and leaves the live database alone: exit 0 when the backup would restore (for cron).
Exit status: 0 restored (or would restore), 1 refused or failed, 2 could not run.
"""

import json
import sys

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS

from dbtools.checks import OPERATIONS_CHECKS
from dbtools.errors import DbtoolsError
from dbtools.heartbeat import heartbeat
from dbtools.restore import check_restore, format_counts, restore_backup


class Command(BaseCommand):
    help = "Restore the database from a backup, after proving the backup good; or --check a backup."
    requires_system_checks = OPERATIONS_CHECKS

    def add_arguments(self, parser):
        parser.add_argument("file", nargs="?", help="A backup file: a path, or a name in the backup directory.")
        parser.add_argument("--latest", action="store_true", help="Restore the newest signed, verified backup.")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="The database alias to restore.")
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Do not ask for confirmation (scripts).",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help=(
                "Restore a file without a manifest, not signed by this installation's key, or made by a "
                "newer version (the other checks still run)."
            ),
        )
        parser.add_argument(
            "--no-safety-backup",
            action="store_false",
            dest="safety_backup",
            help="Do not back up the current database first.",
        )
        parser.add_argument(
            "--no-migrate",
            action="store_false",
            dest="migrate",
            help="Leave the backup's pending migrations unapplied.",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Only check: every check plus a test restore into a scratch database; nothing is replaced.",
        )
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args, **options):
        verbosity = options["verbosity"]
        progress = self._progress if verbosity >= 2 else None
        try:
            if options["check"]:
                if options["latest"] and options["file"]:
                    raise CommandError("give either a backup file or --latest, not both", returncode=2)
                if not options["latest"] and not options["file"]:
                    raise CommandError("restore --check needs a backup file or --latest", returncode=2)
                # A cron job's proof that the backups restore: it sends heartbeats too.
                with heartbeat("restore --check"):
                    result = check_restore(
                        options["file"], database=options["database"], force=options["force"], progress=progress
                    )
                    self._print_check(result, options["json"], verbosity)
                    if not result.ok:
                        raise CommandError(result.reason, returncode=1)
                return
            # With --json the question goes to stderr, so stdout stays one JSON document.
            self._ask_on = self.stderr if options["json"] else self.stdout
            confirm = self._confirm if options["interactive"] else None
            result = restore_backup(
                options["file"],
                latest=options["latest"],
                database=options["database"],
                force=options["force"],
                safety_backup=options["safety_backup"],
                migrate=options["migrate"],
                confirm=confirm,
                progress=progress,
            )
        except DbtoolsError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from None
        self._print_restore(result, options["json"], verbosity)

    def _progress(self, message: str) -> None:
        self.stdout.write(f"restore: {message}")
        self.stdout.flush()

    def _confirm(self, plan) -> bool:
        self._ask_on.write(plan.describe())
        self._ask_on.write("Type 'yes' to replace the database: ", ending="")
        self._ask_on.flush()
        answer = sys.stdin.readline()  # "" at EOF: nobody to answer, so no restore (scripts use --noinput)
        return answer.strip().lower() == "yes"

    def _print_check(self, result, as_json: bool, verbosity: int) -> None:
        if as_json:
            self.stdout.write(json.dumps(result.as_dict(), indent=2))
            return
        if verbosity >= 1 or not result.ok:
            for check in result.checks:
                if verbosity >= 2 or not check.ok:
                    mark = "ok  " if check.ok else "FAIL"
                    self.stdout.write(f"  {mark} {check.name}: {check.detail}")
        if verbosity >= 1:
            for note in result.notes:
                self.stdout.write(f"  note: {note}")
        if result.ok and verbosity >= 1:
            pending = (
                f"; {len(result.pending_migrations)} pending migration(s) applied" if result.pending_migrations else ""
            )
            self.stdout.write(
                self.style.SUCCESS(
                    f"{result.path} would restore: {len(result.checks)} checks passed, test restore into a scratch "
                    f"database matches the manifest{pending}"
                )
            )

    def _print_restore(self, result, as_json: bool, verbosity: int) -> None:
        if as_json:
            self.stdout.write(json.dumps(result.as_dict(), indent=2))
            return
        if verbosity < 1:
            return
        if result.safety_backup:
            self.stdout.write(f"Safety backup of the replaced database: {result.safety_backup}")
        self.stdout.write(
            self.style.SUCCESS(f"Restored {result.path} into database '{result.database}' ({result.engine}).")
        )
        self.stdout.write(f"  before: {format_counts(result.rows_before)}")
        self.stdout.write(f"  after:  {format_counts(result.rows_after)}")
        if result.migrations_applied:
            self.stdout.write(f"  migrations applied: {', '.join(result.migrations_applied)}")
        self.stdout.write(f"  operations log carried over: {result.operations_carried} entries")
        self.stdout.write(f"  swap: {result.swap}")
        if result.validation_ok is True:
            self.stdout.write("  validation: no problems found")
        elif result.validation_ok is False:
            count = (result.validation or {}).get("problem_count", "some")
            self.stdout.write(
                self.style.WARNING(f"  validation: {count} problem(s) found; see python manage.py validate")
            )
        for warning in result.warnings:
            self.stdout.write(self.style.WARNING(f"  warning: {warning}"))
