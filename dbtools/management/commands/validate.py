"""``manage.py validate``: find what the constraints missed. Exit 0 clean, 1 problems, 2 could not run."""

import json

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS

from dbtools.checks import OPERATIONS_CHECKS
from dbtools.errors import DbtoolsError
from dbtools.repair import repair_database
from dbtools.validation import validate_database


class Command(BaseCommand):
    help = "Validate the data and schema of a database; exit 0 when clean, 1 when problems are found, 2 when it cannot run."
    requires_system_checks = OPERATIONS_CHECKS

    def add_arguments(self, parser):
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="Database alias (default: %(default)s).")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
        parser.add_argument(
            "--deep",
            action="store_true",
            help="Also run the engine's slowest integrity check (SQLite: integrity_check, "
            "tens of seconds at a million rows, instead of quick_check).",
        )
        parser.add_argument(
            "--fix",
            action="store_true",
            help="Plan the safe repairs (a dry run); with --yes, back up (reason pre-fix) and apply them.",
        )
        parser.add_argument("--yes", action="store_true", help="With --fix: apply the plan.")
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument("--data-only", action="store_true", help="Only the data rules.")
        scope.add_argument("--schema-only", action="store_true", help="Only the schema and migration checks.")

    def handle(self, *args, **options):
        if options["yes"] and not options["fix"]:
            raise CommandError("--yes applies a --fix plan: give both", returncode=2)
        if options["fix"]:
            return self.fix(options)
        try:
            report = validate_database(
                options["database"],
                data=not options["schema_only"],
                schema=not options["data_only"],
                deep=options["deep"],
            )
        except DbtoolsError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from None
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            self.print_report(report, options["verbosity"])
        if not report.ok:
            raise CommandError(
                f"validation found {report.summary} in {report.engine} database '{report.database}'",
                returncode=1,
            )

    def print_report(self, report, verbosity: int) -> None:
        summary = f"{report.rules_run} rules in {report.duration_ms} ms"
        if report.ok:
            if verbosity >= 1:
                self.stdout.write(self.style.SUCCESS(f"No problems found ({summary})."))
            return
        for problem in report.problems:
            where = f"{problem.table}: " if problem.table else ""
            self.stdout.write(self.style.ERROR(f"[{problem.category}] {where}{problem.rule}"))
            self.stdout.write(f"  {problem.message}")
            if problem.sample_ids:
                label = "ids" if all(isinstance(i, int) for i in problem.sample_ids) else "items"
                more = " ..." if problem.count > len(problem.sample_ids) else ""
                self.stdout.write(f"  {label}: {', '.join(str(i) for i in problem.sample_ids)}{more}")
            self.stdout.write(f"  fix: {problem.fix}")
        self.stdout.write(f"{report.summary[0].upper()}{report.summary[1:]}; {summary}.")

    def fix(self, options) -> None:
        """The repair plan (and with --yes its outcome), then a validation of the result."""
        try:
            result = repair_database(options["database"], apply=options["yes"])
            after = validate_database(options["database"], schema=False) if result.applied else None
        except DbtoolsError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from None
        if options["json"]:
            data = result.as_dict()
            data["after"] = after.as_dict() if after is not None else None
            self.stdout.write(json.dumps(data, indent=2, default=str))
        else:
            self.print_plan(result, after)
        remaining = after.problems if after is not None else result.plans
        if remaining:
            raise CommandError(
                f"{len(remaining)} problem classes {'remain' if result.applied else 'found'} "
                f"in database '{result.database}'",
                returncode=1,
            )

    def print_plan(self, result, after) -> None:
        if not result.plans:
            self.stdout.write(self.style.SUCCESS("No problems found: nothing to fix."))
            return
        for plan in result.plans:
            self.stdout.write(self.style.ERROR(f"{plan.table}: {plan.rule}: {plan.count} rows"))
            if plan.sample_ids:
                self.stdout.write(f"  ids: {', '.join(str(i) for i in plan.sample_ids)}")
            done = plan.fixable and result.applied
            self.stdout.write(f"  {'done' if done else 'fix'}: {plan.action}")
            for line in plan.manual:
                self.stdout.write(f"    {line}")
        if result.applied:
            self.stdout.write(f"Applied in one transaction after the backup {result.backup}.")
            self.stdout.write(f"Validation afterwards: {after.summary}.")
        elif result.fixable:
            self.stdout.write("Dry run: nothing changed. Run with --fix --yes to apply (a backup is taken first).")
