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


class DatabaseMonitor:
    """Statistics and the overall health verdict."""

    def __init__(self, database: str = DEFAULT_DB_ALIAS) -> None:
        self.database = database
