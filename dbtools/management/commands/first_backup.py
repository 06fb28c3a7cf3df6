"""``manage.py first_backup``: a verified backup when this database has none yet.

``make run`` runs it after ``migrate``, so a new installation starts with a backup and the
health check says healthy from the first page, instead of "no backup at all". With a
backup of this database already there it does nothing, so running it again costs nothing.
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS

from dbtools.backups import create_backup, latest_verified_backup
from dbtools.checks import OPERATIONS_CHECKS
from dbtools.errors import DbtoolsError


class Command(BaseCommand):
    help = (
        "Take a verified backup (reason first-run) when the backup directory holds none of this "
        "database yet; otherwise do nothing. make run calls it."
    )
    requires_system_checks = OPERATIONS_CHECKS

    def add_arguments(self, parser):
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="Database alias (default: %(default)s).")

    def handle(self, *args, **options):
        database = options["database"]
        try:
            existing = latest_verified_backup(database=database)
            if existing is not None:
                if options["verbosity"] >= 1:
                    self.stdout.write(f"Newest verified backup: {existing.name}")
                return
            result = create_backup(database=database, reason="first-run")
        except DbtoolsError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from None
        if options["verbosity"] >= 1:
            self.stdout.write(f"Took a first backup, so the health check starts healthy: {result.path.name}")
