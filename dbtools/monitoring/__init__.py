"""Monitoring: statistics, the health verdict, Prometheus text, the dashboard's snapshot.

- ``stats``: counts, sizes, connections, latencies, migrations, backups (``collect_stats``);
- ``checks``: the one registry of health checks (``CHECKS``) and the verdict (``health_report``);
- ``prometheus``: the statistics as Prometheus text (``render_prometheus``);
- ``snapshot``: what the admin dashboard shows (``build_snapshot``).

Commands, views, the django-health-check classes and ``dbtools.api`` import from here.
"""

from .checks import (
    CHECKS,
    DEGRADED,
    HEALTHY,
    UNHEALTHY,
    CheckResult,
    HealthReport,
    RegisteredCheck,
    Verdict,
    check_backup_freshness,
    check_connection,
    check_data_integrity,
    check_free_space,
    check_performance,
    check_schema,
    health_report,
    registered,
    worst,
)
from .prometheus import render as render_prometheus
from .snapshot import Snapshot, build_snapshot
from .stats import (
    DatabaseStats,
    backup_state,
    collect_stats,
    connection_info,
    measure_latency,
    table_counts,
)

__all__ = [
    "CHECKS",
    "DEGRADED",
    "HEALTHY",
    "UNHEALTHY",
    "CheckResult",
    "DatabaseStats",
    "HealthReport",
    "RegisteredCheck",
    "Snapshot",
    "Verdict",
    "backup_state",
    "build_snapshot",
    "check_backup_freshness",
    "check_connection",
    "check_data_integrity",
    "check_free_space",
    "check_performance",
    "check_schema",
    "collect_stats",
    "connection_info",
    "health_report",
    "measure_latency",
    "registered",
    "render_prometheus",
    "table_counts",
    "worst",
]
