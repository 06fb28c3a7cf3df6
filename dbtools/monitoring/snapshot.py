"""What the admin dashboard shows, gathered once: the view builds a ``Snapshot``, the
template (admin/dbtools/health.html) reads it.

The verdict and every check, the figures (counts, size, connections), the backups, the
30-day trend, the last stored validation and the recent operations. Nothing here redoes a
full validation; the backup directory is listed once for the figures and the chart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import DEFAULT_DB_ALIAS, DatabaseError

from .. import trends
from ..backups import belongs_to, list_backups
from ..engines import get_engine
from ..formatting import to_ms
from ..models import OperationLog, StoredReport
from ..oplog import pending_journal
from ..validation import last_report
from .checks import CONNECTION, UNHEALTHY, HealthReport, health_report
from .stats import backup_state, connection_info, table_counts

OPERATIONS_SHOWN = 12
FAILURES_CHARTED = 500


@dataclass
class Trend:
    """The last 30 days of backups (manifests) and failed backups (operations log), as SVG."""

    points: int
    summary: dict
    backups_svg: str
    rows_svg: str


@dataclass
class Snapshot:
    """Everything the dashboard page shows about one database, in plain values: sizes in
    integer bytes, ages in seconds, durations in milliseconds (the template's filters format them)."""

    database: str
    health: HealthReport
    backups: dict
    trend: Trend
    started: float = field(default_factory=time.perf_counter, repr=False)
    counts: dict | None = None
    counts_exact: bool = True
    size: dict | None = None
    connection: dict | None = None
    last_report: StoredReport | None = None
    operations: list = field(default_factory=list)

    @property
    def last_report_age_seconds(self) -> int | None:
        if self.last_report is None:
            return None
        return int((self.health.checked_at - self.last_report.created_at).total_seconds())

    @property
    def problems(self) -> list[dict]:
        """The problems of the last validation, one row each, with a readable category."""
        report = self.last_report.report if self.last_report is not None else None
        return [
            {**item, "category_label": category.replace("_", " ")}
            for category, items in (report or {}).get("problems", {}).items()
            for item in items
        ]

    def render_ms(self) -> int:
        """Milliseconds since the snapshot began (the template asks last: the page's build time)."""
        return to_ms(time.perf_counter() - self.started)


def build_snapshot(database: str = DEFAULT_DB_ALIAS) -> Snapshot:
    """The dashboard's snapshot of ``database``; what needs the database is left out when it does not answer."""
    started = time.perf_counter()
    health = health_report(database)
    listed = list_backups()  # once: the backup figures and the trend chart read it
    connected = health.check(CONNECTION).status != UNHEALTHY
    snapshot = Snapshot(
        database=database,
        health=health,
        backups=backup_state(database=database, listed=listed),
        trend=backup_trend(database, health.checked_at, connected, listed),
        started=started,
    )
    if connected:
        try:
            snapshot.counts, snapshot.counts_exact = table_counts(database, exact=False)
            snapshot.size = get_engine(database).database_size()
            snapshot.connection = connection_info(database)
            snapshot.last_report = last_report(database)
            snapshot.operations = recent_operations(database)
        except DatabaseError:
            pass
    return snapshot


def recent_operations(database: str) -> list:
    """The newest operations: the log's rows and the journal's entries (dicts), newest first.

    Refused restores and checks wait in the journal until the next logged operation.
    """
    logged = list(OperationLog.objects.using(database).order_by("-started_at", "-id")[:OPERATIONS_SHOWN])
    merged = logged + pending_journal(database)
    return sorted(merged, key=lambda op: _field(op, "started_at"), reverse=True)[:OPERATIONS_SHOWN]


def _field(op, name: str):
    """A field of an OperationLog row or of a journal entry (a dict)."""
    return op[name] if isinstance(op, dict) else getattr(op, name)


def backup_trend(database: str, now: datetime, connected: bool, listed) -> Trend:
    """The chart of this database's backups of the last ``trends.DAYS`` days, failures marked."""
    failures = []
    if connected:
        try:
            failures = list(
                OperationLog.objects.using(database).filter(
                    operation="backup",
                    outcome=OperationLog.Outcome.FAILURE,
                    started_at__gte=now - timedelta(days=trends.DAYS),
                )[:FAILURES_CHARTED]
            )
        except DatabaseError:
            pass
    points = trends.collect([b for b in listed if belongs_to(b.manifest, database)], failures, now)
    return Trend(
        points=len(points),
        summary=trends.summary(points),
        backups_svg=trends.backups_svg(points, now),
        rows_svg=trends.rows_svg(points, now),
    )
