"""The seed's Python names, as thin wrappers over the service functions.

Each class only adapts a service (dbtools.backup, dbtools.restore, dbtools.validation,
dbtools.monitor) to the names and return shapes the seed promised.
"""

from django.db import DEFAULT_DB_ALIAS


class DatabaseManager:
    """Migrations: create, apply, roll back, inspect (on Django's migration machinery)."""

    def __init__(self, database: str = DEFAULT_DB_ALIAS) -> None:
        self.database = database


class DatabaseBackup:
    """Create and restore backups."""

    def __init__(self, database: str = DEFAULT_DB_ALIAS) -> None:
        self.database = database

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
