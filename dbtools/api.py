"""The seed's Python names, as thin wrappers over the service functions.

Each class only adapts a service (dbtools.backups, dbtools.restore, dbtools.validation,
dbtools.monitoring) to the names and return shapes the seed promised. The seed calls them on
the classes (``DatabaseBackup.create_backup()``, ``DatabaseMonitor.check_database_health()``):
every public method works on the class (on the default database, or ``database=ALIAS``) and
on an instance (on the instance's database). ``db_manager`` is a ready DatabaseManager.

Imported outside ``manage.py`` (``python -c "from dbtools.api import ..."``), the module
configures Django itself with mcmanager's settings, as ``manage.py`` would.
"""

import functools
import logging
import os
import re

import django
from django.apps import apps

if not apps.ready and not apps.loading:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcmanager.settings")
    django.setup()

# The imports below need Django set up (they import models): hence after the lines above.
from django.core.management import call_command  # noqa: E402
from django.db import DEFAULT_DB_ALIAS, connections  # noqa: E402
from django.db.migrations.recorder import MigrationRecorder  # noqa: E402

from .backups import create_backup  # noqa: E402
from .errors import DbtoolsError  # noqa: E402
from .monitoring import collect_stats, health_report, registered  # noqa: E402
from .restore import restore_backup  # noqa: E402
from .schema_state import known_migrations, migration_plan, pending_migrations  # noqa: E402
from .validation import DATA_CATEGORIES, SCHEMA_CATEGORIES, validate_database  # noqa: E402


class either_way:  # noqa: N801 (used as a decorator, like classmethod)
    """A method callable on an instance, or on the class for ``cls(database)``.

    ``DatabaseBackup.create_backup()`` runs on the default database,
    ``DatabaseBackup.create_backup(database="other")`` on another one, and
    ``DatabaseBackup("other").create_backup()`` as before.
    """

    def __init__(self, func) -> None:
        self.func = func
        functools.update_wrapper(self, func)

    def __get__(self, instance, owner):
        if instance is not None:
            return self.func.__get__(instance, owner)

        @functools.wraps(self.func)
        def on_class(*args, database: str = DEFAULT_DB_ALIAS, **kwargs):
            return self.func(owner(database), *args, **kwargs)

        return on_class


class DatabaseManager:
    """Migrations: create, apply, roll back, inspect (on Django's migration machinery)."""

    def __init__(self, database: str = DEFAULT_DB_ALIAS) -> None:
        self.database = database

    @either_way
    def create_migration(self, message: str, app_label: str | None = None) -> list[str]:
        """``makemigrations --name <message>``; returns the new migrations as "app.name" (empty: no changes)."""
        name = re.sub(r"[^0-9a-zA-Z_]+", "_", message.strip().lower()).strip("_")[:60] or "auto"
        before = known_migrations()
        args = [app_label] if app_label else []
        call_command("makemigrations", *args, name=name, interactive=False, verbosity=0)
        after = known_migrations()
        return sorted(f"{app}.{migration}" for app, migration in after - before)

    @either_way
    def upgrade_database(self, backup: bool = True) -> list[str]:
        """Apply every pending migration (after a pre-migrate backup); returns what was applied."""
        pending = self.get_pending_migrations()
        call_command("migrate", database=self.database, interactive=False, verbosity=0, no_backup=not backup)
        return pending

    @either_way
    def downgrade_database(self, app: str, target: str, backup: bool = True) -> list[str]:
        """Migrate ``app`` back to ``target`` ("zero" for none), after a backup; returns what was unapplied."""
        plan = migration_plan(self.database, app, target)
        call_command(
            "migrate", app, target, database=self.database, interactive=False, verbosity=0, no_backup=not backup
        )
        return [f"{m.app_label}.{m.name}" for m, backwards in plan if backwards]

    @either_way
    def get_current_revision(self) -> dict[str, str]:
        """The applied head per app: {app: newest applied migration name}."""
        heads: dict[str, str] = {}
        for row in self._applied_rows():
            heads[row.app] = row.name
        return heads

    @either_way
    def get_migration_history(self) -> list[dict]:
        """Every applied migration in the order applied: app, name, applied (ISO time)."""
        return [
            {"app": row.app, "name": row.name, "applied": row.applied.isoformat() if row.applied else None}
            for row in self._applied_rows()
        ]

    @either_way
    def get_pending_migrations(self) -> list[str]:
        """Migrations ``upgrade_database`` would apply, in order, as "app.name"."""
        return pending_migrations(self.database)

    def _applied_rows(self):
        recorder = MigrationRecorder(connections[self.database])
        if not recorder.has_table():
            return []
        return list(recorder.migration_qs.order_by("applied", "id"))


class DatabaseBackup:
    """Create and restore backups."""

    def __init__(self, database: str = DEFAULT_DB_ALIAS) -> None:
        self.database = database

    @either_way
    def create_backup(self, output_dir=None, *, verify: str = "quick", reason: str = "manual") -> str:
        """Write a verified backup and return the new file's path (raises dbtools.errors on failure)."""
        return str(create_backup(database=self.database, output_dir=output_dir, verify=verify, reason=reason).path)

    @either_way
    def restore_backup(self, backup_path, *, force: bool = False, safety_backup: bool = True) -> bool:
        """Restore ``backup_path`` (a path or a name in the backup directory) over this database.

        True when restored; False when refused or failed (the reason is logged to
        ``dbtools.restore``; the live database is then unchanged unless the log says
        otherwise). The seed's name over dbtools.restore.restore_backup, which raises.
        """
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

    @either_way
    def validate_data_integrity(self) -> dict:
        """Problems per data category: foreign_key_violations, constraint_violations,
        data_inconsistencies, orphaned_records (each a list of problem dicts)."""
        report = validate_database(self.database, data=True, schema=False)
        return report.by_category(DATA_CATEGORIES)

    @either_way
    def validate_schema(self) -> dict:
        """Problems per schema category: missing_tables, missing_columns, schema_inconsistencies,
        missing_indexes, missing_constraints, unapplied_migrations, unknown_migrations."""
        report = validate_database(self.database, data=False, schema=True)
        return report.by_category(SCHEMA_CATEGORIES)

    @either_way
    def validate(self) -> dict:
        """A full validation, stored for /health/ and the dashboard; the report as a dict."""
        return validate_database(self.database).as_dict()


# The seed's four checks, as entries of the one registry (dbtools.monitoring.CHECKS). When
# the database does not answer, only connection_status is there (the others cannot run).
SEED_CHECKS = {
    "connection_status": registered("connection"),
    "data_integrity": registered("data_integrity"),
    "schema_integrity": registered("schema"),
    "performance": registered("performance"),
}


class DatabaseMonitor:
    """Statistics and the overall health verdict."""

    def __init__(self, database: str = DEFAULT_DB_ALIAS) -> None:
        self.database = database

    @either_way
    def get_database_stats(self) -> dict:
        """table_counts (users, servers, configurations), database_size, connection_info,
        performance_metrics, plus table_sizes, migrations and backup."""
        return collect_stats(self.database).as_dict()

    @either_way
    def check_database_health(self) -> dict:
        """status (healthy, degraded or unhealthy), the seed's four checks (connection_status,
        data_integrity, schema_integrity, performance: each with its status and message),
        issues and recommendations. Every check (backups, disk space too) is in health_report().

        The four are always there: one that did not run (the database does not answer) is
        status "unknown", message "not checked: the database is unreachable"."""
        report = health_report(self.database)
        results = {seed_name: report.check(entry.name) for seed_name, entry in SEED_CHECKS.items()}
        not_checked = {"status": "unknown", "message": "not checked: the database is unreachable"}
        return {
            "status": report.status,
            "checks": {
                seed_name: {"status": result.status, "message": result.message} if result else dict(not_checked)
                for seed_name, result in results.items()
            },
            "issues": report.issues,
            "recommendations": report.recommendations,
        }

    @either_way
    def health_report(self) -> dict:
        """The full health report: every check with its status, message and recommendation."""
        return health_report(self.database).as_dict()


# The seed's ready instance: ``from dbtools.api import db_manager; db_manager.upgrade_database()``.
db_manager = DatabaseManager()
