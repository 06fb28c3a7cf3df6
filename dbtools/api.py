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


class DatabaseValidator:
    """Data and schema validation."""

    def __init__(self, database: str = DEFAULT_DB_ALIAS) -> None:
        self.database = database


class DatabaseMonitor:
    """Statistics and the overall health verdict."""

    def __init__(self, database: str = DEFAULT_DB_ALIAS) -> None:
        self.database = database
