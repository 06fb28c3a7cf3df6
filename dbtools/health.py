"""The health checks, as django-health-check (v4) checks over dbtools.monitor.

Each check runs one function of ``dbtools.monitor`` (the same ones the dashboard and
``DatabaseMonitor.check_database_health()`` use) and turns its verdict into what
django-health-check understands: nothing for healthy, ``ServiceWarning`` for degraded,
``ServiceUnavailable`` for unhealthy. Messages carry no secrets (no URLs, no paths).
"""

import dataclasses
import datetime

from django.db import DEFAULT_DB_ALIAS, connections
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable, ServiceWarning

from . import monitor


@dataclasses.dataclass
class DbtoolsCheck(HealthCheck):
    """Base: run ``monitor_check`` for ``database`` and raise by its status."""

    database: str = DEFAULT_DB_ALIAS
    timeout = datetime.timedelta(seconds=10)

    monitor_check = None  # set by each subclass: a function of dbtools.monitor
    name = ""

    def result(self) -> monitor.CheckResult:
        try:
            return monitor.run_check(type(self).monitor_check, self.database)
        finally:
            # django-health-check runs sync checks in executor threads: close what this
            # thread opened, or every request would leave a connection behind.
            connection = connections[self.database]
            if not connection.in_atomic_block:
                connection.close()

    def run(self) -> None:
        result = self.last = self.result()
        if result.status == monitor.UNHEALTHY:
            raise ServiceUnavailable(result.message)
        if result.status == monitor.DEGRADED:
            raise ServiceWarning(result.message)


@dataclasses.dataclass
class DatabaseConnection(DbtoolsCheck):
    monitor_check = staticmethod(monitor.check_connection)
    name = "connection"


@dataclasses.dataclass
class DataIntegrity(DbtoolsCheck):
    monitor_check = staticmethod(monitor.check_data_integrity)
    name = "data_integrity"


@dataclasses.dataclass
class SchemaAndMigrations(DbtoolsCheck):
    monitor_check = staticmethod(monitor.check_schema)
    name = "schema"


@dataclasses.dataclass
class Performance(DbtoolsCheck):
    monitor_check = staticmethod(monitor.check_performance)
    name = "performance"


@dataclasses.dataclass
class BackupFreshness(DbtoolsCheck):
    monitor_check = staticmethod(monitor.check_backup_freshness)
    name = "backup_freshness"


@dataclasses.dataclass
class BackupFreeSpace(DbtoolsCheck):
    monitor_check = staticmethod(monitor.check_free_space)
    name = "free_space"


CHECKS = (
    DatabaseConnection,
    DataIntegrity,
    SchemaAndMigrations,
    Performance,
    BackupFreshness,
    BackupFreeSpace,
)
