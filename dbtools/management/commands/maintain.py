"""``manage.py maintain [--analyze] [--vacuum] [--reindex] [--dry-run]``: the engine's housekeeping.

No option: all three. Exit status: 0 done, 1 failed, 2 could not run (a backup holds the lock).
"""

import json

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS

from dbtools.checks import OPERATIONS_CHECKS
from dbtools.errors import DbtoolsError
from dbtools.maintenance import maintain_database


class Command(BaseCommand):
    help = "Refresh statistics, reclaim free space and rebuild broken indexes, under the backup lock."
    requires_system_checks = OPERATIONS_CHECKS

    def add_arguments(self, parser):
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="Database alias (default: %(default)s).")
        parser.add_argument("--analyze", action="store_true", help="Refresh the planner's statistics.")
        parser.add_argument(
            "--vacuum", action="store_true", help="Reclaim free space (SQLite: only above a threshold)."
        )
        parser.add_argument("--reindex", action="store_true", help="Rebuild indexes (PostgreSQL: the invalid ones).")
        parser.add_argument("--dry-run", action="store_true", help="Say what would be done; change nothing.")
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args, **options):
        chosen = {k: options[k] for k in ("analyze", "vacuum", "reindex")}
        if not any(chosen.values()):
            chosen = dict.fromkeys(chosen, True)
        try:
            result = maintain_database(options["database"], dry_run=options["dry_run"], **chosen)
        except DbtoolsError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from None
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), indent=2))
            return
        for step in result.steps:
            self.stdout.write(f"  {'would run' if result.dry_run else 'ran'}: {step}")
        self.stdout.write(
            self.style.SUCCESS(
                f"{result.engine} database '{result.database}': {result.size_before:,} bytes before, "
                f"{result.size_after:,} after, {result.duration_ms} ms."
            )
        )
