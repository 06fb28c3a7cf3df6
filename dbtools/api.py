"""The seed's Python names, as thin wrappers over the service functions.

Each class only adapts a service (dbtools.backup, dbtools.restore, dbtools.validation,
dbtools.monitor) to the names and return shapes the seed promised.
"""

from django.db import DEFAULT_DB_ALIAS


class DatabaseManager:
    """Migrations: create, apply, roll back, inspect (on Django's migration machinery)."""

    def __init__(self, database: str = DEFAULT_DB_ALIAS) -> None:
        self.database = database

    def create_migration(self, message: str, app_label: str | None = None) -> list[str]:
        """``makemigrations --name <message>``; returns the new migrations as "app.name" (empty: no changes)."""
        import re

        from django.core.management import call_command
        from django.db.migrations.loader import MigrationLoader

        name = re.sub(r"[^0-9a-zA-Z_]+", "_", message.strip().lower()).strip("_")[:60] or "auto"
        before = set(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)
        args = [app_label] if app_label else []
        call_command("makemigrations", *args, name=name, interactive=False, verbosity=0)
        after = set(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)
        return sorted(f"{app}.{migration}" for app, migration in after - before)

    def upgrade_database(self, backup: bool = True) -> list[str]:
        """Apply every pending migration (after a pre-migrate backup); returns what was applied."""
        from django.core.management import call_command

        pending = self.get_pending_migrations()
        call_command("migrate", database=self.database, interactive=False, verbosity=0, no_backup=not backup)
        return pending

    def downgrade_database(self, app: str, target: str, backup: bool = True) -> list[str]:
        """Migrate ``app`` back to ``target`` ("zero" for none), after a backup; returns what was unapplied."""
        from django.core.management import call_command

        from .backup import migration_plan

        plan = migration_plan(self.database, app, target)
        call_command(
            "migrate", app, target, database=self.database, interactive=False, verbosity=0, no_backup=not backup
        )
        return [f"{m.app_label}.{m.name}" for m, backwards in plan if backwards]

    def get_current_revision(self) -> dict[str, str]:
        """The applied head per app: {app: newest applied migration name}."""
        heads: dict[str, str] = {}
        for row in self._applied_rows():
            heads[row.app] = row.name
        return heads

    def get_migration_history(self) -> list[dict]:
        """Every applied migration in the order applied: app, name, applied (ISO time)."""
        return [
            {"app": row.app, "name": row.name, "applied": row.applied.isoformat() if row.applied else None}
            for row in self._applied_rows()
        ]

    def get_pending_migrations(self) -> list[str]:
        """Migrations ``upgrade_database`` would apply, in order, as "app.name"."""
        from .backup import migration_plan

        return [f"{m.app_label}.{m.name}" for m, backwards in migration_plan(self.database) if not backwards]

    def _applied_rows(self):
        from django.db import connections
        from django.db.migrations.recorder import MigrationRecorder

        recorder = MigrationRecorder(connections[self.database])
        if not recorder.has_table():
            return []
        return list(recorder.migration_qs.order_by("applied", "id"))


class DatabaseBackup:
    """Create and restore backups."""

    def __init__(self, database: str = DEFAULT_DB_ALIAS) -> None:
        self.database = database

    def create_backup(self, output_dir=None, *, verify: str = "quick", reason: str = "manual") -> str:
        """Write a verified backup and return the new file's path (raises dbtools.errors on failure)."""
        from .backup import create_backup

        return str(create_backup(database=self.database, output_dir=output_dir, verify=verify, reason=reason).path)

    def restore_backup(self, backup_path, *, force: bool = False, safety_backup: bool = True) -> bool:
        """Restore ``backup_path`` (a path or a name in the backup directory) over this database.

        True when restored; False when refused or failed (the reason is logged to
        ``dbtools.restore``; the live database is then unchanged unless the log says
        otherwise). The seed's name over dbtools.restore.restore_backup, which raises.
        """
        import logging

        from .errors import DbtoolsError
        from .restore import restore_backup

        try:
            restore_backup(backup_path, database=self.database, force=force, safety_backup=safety_backup)
        except DbtoolsError as exc:
            logging.getLogger("dbtools.restore").error("restore of %s not done: %s", backup_path, exc)
            return False
        return True


class DatabaseValidator:
    """Data and schema validation."""

    def __init__(self, database: str = DEFAULT_DB_ALIAS) -> None:
        self.database = database

    def validate_data_integrity(self) -> dict:
        """Problems per data category: foreign_key_violations, constraint_violations,
        data_inconsistencies, orphaned_records (each a list of problem dicts)."""
        from .validation import DATA_CATEGORIES, validate_database

        report = validate_database(self.database, data=True, schema=False)
        return report.by_category(DATA_CATEGORIES)

    def validate_schema(self) -> dict:
        """Problems per schema category: missing_tables, missing_columns, schema_inconsistencies,
        missing_indexes, missing_constraints, unapplied_migrations, unknown_migrations."""
        from .validation import SCHEMA_CATEGORIES, validate_database

        report = validate_database(self.database, data=False, schema=True)
        return report.by_category(SCHEMA_CATEGORIES)

    def validate(self) -> dict:
        """A full validation, stored for /health/ and the dashboard; the report as a dict."""
        from .validation import validate_database

        return validate_database(self.database).as_dict()


class DatabaseMonitor:
    """Statistics and the overall health verdict."""

    def __init__(self, database: str = DEFAULT_DB_ALIAS) -> None:
        self.database = database

    def get_database_stats(self) -> dict:
        """table_counts (users, servers, configurations), database_size, connection_info,
        performance_metrics, plus table_sizes, migrations and backup."""
        from .monitor import collect_stats

        return collect_stats(self.database).as_dict()

    def check_database_health(self) -> dict:
        """status (healthy, degraded or unhealthy), issues and recommendations, plus each check."""
        from .monitor import health_report

        report = health_report(self.database).as_dict()
        return {
            "status": report["status"],
            "issues": report["issues"],
            "recommendations": report["recommendations"],
        }

    def health_report(self) -> dict:
        """The full health report: every check with its status, message and recommendation."""
        from .monitor import health_report

        return health_report(self.database).as_dict()
