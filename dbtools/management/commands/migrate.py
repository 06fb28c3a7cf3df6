"""``manage.py migrate``, with a backup first.

Django's migrate, preceded by a pre-migrate backup (reason "pre-migrate") whenever there
are migrations to apply or unapply and the database already holds tables. A failed
backup stops the command before anything changes (exit 1, or 2 when it could not run).
``--no-backup`` skips it; a fresh, empty database migrates without one. Every migrate
that runs migrations is in the operations log ("applied N migrations", "unapplied N ...").
"""

from django.core.management.base import CommandError
from django.core.management.commands.migrate import Command as DjangoMigrateCommand

from dbtools.backups import pre_migrate_backup
from dbtools.errors import DbtoolsError
from dbtools.oplog import record_operation
from dbtools.schema_state import migration_plan


class Command(DjangoMigrateCommand):
    help = DjangoMigrateCommand.help + " Takes a verified backup first when there is something to migrate."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--no-backup",
            action="store_true",
            help="Do not take the pre-migrate backup (it is taken when there are migrations to run).",
        )

    def handle(self, *args, **options):
        database = options["database"]
        backup = plan = None
        if not (options["no_backup"] or options["plan"] or options["check_unapplied"]):
            try:
                backup, plan = pre_migrate_backup(
                    database, app_label=options["app_label"], migration_name=options["migration_name"]
                )
            except DbtoolsError as exc:
                raise CommandError(
                    f"pre-migrate backup failed, nothing was migrated: {exc}", returncode=exc.exit_code
                ) from None
            if backup is not None and options["verbosity"] >= 1:
                self.stdout.write(f"Pre-migrate backup: {backup.path}")
            if backup is not None and backup.offsite and not backup.offsite["uploaded"]:
                # The local backup protects this migration; the missing offsite copy is for backup --sync.
                self.stderr.write(f"warning: the pre-migrate backup's offsite upload failed: {backup.offsite['error']}")
        if plan is None and not (options["plan"] or options["check_unapplied"]):
            # --no-backup, or a fresh, empty database (no backup, but logged all the same: the
            # entry is written after the migration, once the log's table exists).
            try:
                plan = migration_plan(database, options["app_label"], options["migration_name"])
            except Exception:  # a bad app label or migration name: Django's migrate says it better
                plan = None
        if not plan:
            return super().handle(*args, **options)
        with record_operation("migrate", database=database) as record:
            record.details["plan"] = [f"{m.app_label}.{m.name}{' (unapply)' if back else ''}" for m, back in plan]
            if backup is not None:
                record.file = str(backup.path)
                record.checksum = backup.manifest.sha256
            record.message = plan_message(plan)
            return super().handle(*args, **options)


def plan_message(plan) -> str:
    """ "applied 3 migrations", "unapplied 1 migration" (both, when a plan has both)."""
    backwards = sum(1 for _, back in plan if back)
    counts = (("applied", len(plan) - backwards), ("unapplied", backwards))
    return ", ".join(f"{verb} {n} migration{'' if n == 1 else 's'}" for verb, n in counts if n)
