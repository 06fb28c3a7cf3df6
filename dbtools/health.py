"""The health checks, as django-health-check (v4) checks: one class per entry of the registry.

``dbtools.monitoring.checks.CHECKS`` is the one registry; each entry becomes a
``DbtoolsCheck`` subclass named by its ``class_name`` (the name ``manage.py health_check``
and the package's pages show). A check runs its entry and turns the verdict into what
django-health-check understands: nothing for healthy, ``ServiceWarning`` for degraded,
``ServiceUnavailable`` for unhealthy. Messages carry no secrets (no URLs, no paths).
"""

import dataclasses
import datetime
from typing import ClassVar

from django.db import DEFAULT_DB_ALIAS, connections
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable, ServiceWarning

from .monitoring import CHECKS as REGISTRY
from .monitoring import DEGRADED, UNHEALTHY, CheckResult, RegisteredCheck


@dataclasses.dataclass
class DbtoolsCheck(HealthCheck):
    """Base: run the registry entry ``entry`` for ``database`` and raise by its status."""

    database: str = DEFAULT_DB_ALIAS
    timeout = datetime.timedelta(seconds=10)

    entry: ClassVar[RegisteredCheck | None] = None  # set on each generated subclass
    name: ClassVar[str] = ""
    last = None  # the CheckResult of this instance's last run (None until it ran, or when it timed out)

    def result(self) -> CheckResult:
        try:
            return type(self).entry.run(self.database)
        finally:
            # django-health-check runs sync checks in executor threads: close what this
            # thread opened, or every request would leave a connection behind.
            connection = connections[self.database]
            if not connection.in_atomic_block:
                connection.close()

    def run(self) -> None:
        result = self.last = self.result()
        if result.status == UNHEALTHY:
            raise ServiceUnavailable(result.message)
        if result.status == DEGRADED:
            raise ServiceWarning(result.message)


def check_class(entry: RegisteredCheck) -> type[DbtoolsCheck]:
    """The django-health-check class of one registry entry (a dataclass, as the package wants)."""
    namespace = {"entry": entry, "name": entry.name, "__module__": __name__, "__qualname__": entry.class_name}
    return dataclasses.dataclass(type(entry.class_name, (DbtoolsCheck,), namespace))


CHECKS: tuple[type[DbtoolsCheck], ...] = tuple(check_class(entry) for entry in REGISTRY)
