"""The health verdict: the one registry of health checks, and the report they make.

``CHECKS`` is the registry: each entry has a name (the key in ``/health/``'s JSON), a
title (what people read), the function that judges, and the class name django-health-check
shows. ``dbtools.health`` (the django-health-check classes), the dashboard, ``/health/`` and
``dbtools.api.DatabaseMonitor`` all read it; nothing else lists the checks.

A check function takes a database alias and returns a ``Verdict`` (status, one line, how
to fix it, figures); ``RegisteredCheck.run`` names it (a ``CheckResult``) and turns a
database that stops answering into an unhealthy result, never a crash. Data integrity
comes from the last stored validation report: a full validation is never redone per request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.utils import timezone

from ..engines import get_engine
from ..formatting import first_line, format_bytes, human_age
from ..schema_state import migration_state
from ..validation import checked_models, last_report
from .stats import backup_dir_free_bytes, backup_state, measure_latency

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
_RANK = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}

# Latency thresholds (milliseconds): a round trip or an indexed lookup slower than
# these makes the panel sluggish (degraded) or unusable (unhealthy).
ROUND_TRIP_DEGRADED_MS = 100
ROUND_TRIP_UNHEALTHY_MS = 1000
INDEXED_QUERY_DEGRADED_MS = 250
INDEXED_QUERY_UNHEALTHY_MS = 2000

# Problems in these categories mean rows the application cannot trust: unhealthy.
# Anything else a validation finds (ports, case, clocks) degrades.
SERIOUS_CATEGORIES = {
    "foreign_key_violations",
    "constraint_violations",
    "orphaned_records",
    "missing_tables",
    "missing_columns",
    "schema_inconsistencies",
}


def worst(statuses) -> str:
    return max(statuses, key=lambda s: _RANK[s], default=HEALTHY)


@dataclass
class Verdict:
    """What a check function finds: its status (healthy/degraded/unhealthy), one line, how to
    fix it, and the figures behind it. The registry entry gives it a name and a title."""

    status: str
    message: str
    recommendation: str = ""
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class CheckResult:
    """One health check's verdict, named: what the report, the dashboard and /health/ show."""

    name: str
    title: str
    status: str
    message: str
    recommendation: str = ""
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class HealthReport:
    database: str
    status: str
    checked_at: datetime
    checks: list[CheckResult]

    def check(self, name: str) -> CheckResult | None:
        """The result of the check ``name`` (a registry name), or None when it did not run."""
        return next((c for c in self.checks if c.name == name), None)

    @property
    def issues(self) -> list[str]:
        return [f"{c.title}: {c.message}" for c in self.checks if c.status != HEALTHY]

    @property
    def recommendations(self) -> list[str]:
        return [c.recommendation for c in self.checks if c.status != HEALTHY and c.recommendation]

    def as_dict(self) -> dict:
        return {
            "database": self.database,
            "status": self.status,
            "checked_at": self.checked_at.isoformat(),
            "checks": [c.as_dict() for c in self.checks],
            "issues": self.issues,
            "recommendations": self.recommendations,
        }


# --- the checks ---------------------------------------------------------------------


def check_connection(database: str = DEFAULT_DB_ALIAS) -> Verdict:
    try:
        connections[database].ensure_connection()
        with connections[database].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return Verdict(
            UNHEALTHY,
            f"the database does not answer ({exc.__class__.__name__})",
            "Check that the database server is running and DATABASE_URL points at it.",
            {"error": first_line(exc)},
        )
    return Verdict(HEALTHY, f"{get_engine(database).display_name} answers")


def check_data_integrity(database: str = DEFAULT_DB_ALIAS) -> Verdict:
    """From the last stored full validation report: never a full validation per request."""
    stored = last_report(database)
    if stored is None:
        return Verdict(
            HEALTHY,
            "not validated yet: nothing known to be wrong",
            "Run python manage.py validate (nightly, after the backup) to check the data.",
            {"report_age_seconds": None},
        )
    age = int((timezone.now() - stored.created_at).total_seconds())
    details = {"report_age_seconds": age, "report_at": stored.created_at.isoformat()}
    if stored.ok:
        return Verdict(HEALTHY, f"the last validation ({human_age(age)} ago) found no problems", "", details)
    problems = stored.report.get("problems", {})
    counts = {category: len(items) for category, items in problems.items() if items}
    details["problems_by_category"] = counts
    status = UNHEALTHY if SERIOUS_CATEGORIES & set(counts) else DEGRADED
    summary = ", ".join(f"{n} {category.replace('_', ' ')}" for category, n in sorted(counts.items()))
    return Verdict(
        status,
        f"the last validation ({human_age(age)} ago) found {summary}",
        "Run python manage.py validate to see each problem, its rows and how to fix it.",
        details,
    )


def check_schema(database: str = DEFAULT_DB_ALIAS) -> Verdict:
    """Migrations applied and known, and every model's table present (cheap, live)."""
    state = migration_state(database)
    connection = connections[database]
    with connection.cursor() as cursor:
        existing = set(connection.introspection.table_names(cursor))
    missing = sorted(m._meta.db_table for m in checked_models(database) if m._meta.db_table not in existing)
    details = {"unapplied": state["unapplied"], "unknown": state["unknown"], "missing_tables": len(missing)}
    if missing:
        return Verdict(
            UNHEALTHY,
            f"{len(missing)} tables are missing",
            "Run python manage.py migrate, or restore the newest verified backup.",
            details,
        )
    if state["unapplied"]:
        return Verdict(
            UNHEALTHY,
            f"{state['unapplied']} migrations are not applied",
            "Run python manage.py migrate (it takes a backup first).",
            details,
        )
    if state["unknown"]:
        return Verdict(
            DEGRADED,
            f"{state['unknown']} migrations in the database are unknown to this code (the database is newer)",
            "Deploy the code that matches the database, or restore a backup made with this code.",
            details,
        )
    return Verdict(HEALTHY, f"all {state['applied']} migrations applied", "", details)


def check_performance(database: str = DEFAULT_DB_ALIAS) -> Verdict:
    latency = measure_latency(database)
    rt, iq = latency["round_trip_ms"], latency["indexed_query_ms"] or 0.0
    message = f"round trip {rt:.2f} ms, indexed lookup {iq:.2f} ms"
    if rt > ROUND_TRIP_UNHEALTHY_MS or iq > INDEXED_QUERY_UNHEALTHY_MS:
        status = UNHEALTHY
    elif rt > ROUND_TRIP_DEGRADED_MS or iq > INDEXED_QUERY_DEGRADED_MS:
        status = DEGRADED
    else:
        status = HEALTHY
    recommendation = (
        "" if status == HEALTHY else "Check the database server's load and the missing_indexes of manage.py validate."
    )
    # Shown beside the check (the dashboard) without changing its status: maintenance
    # that would pay is advice, not an outage.
    advice = get_engine(database).maintenance_advice()
    if advice:
        latency["maintenance_advice"] = advice
        recommendation = " ".join([recommendation, *(f"Maintenance would pay: {a}." for a in advice)]).strip()
    return Verdict(status, message, recommendation, latency)


def check_backup_freshness(database: str = DEFAULT_DB_ALIAS) -> Verdict:
    max_hours = settings.MCMANAGER_BACKUP_MAX_AGE_HOURS
    state = backup_state(database=database)
    verified = state["newest_verified"]
    bad = state["bad"]
    details = {"max_age_hours": max_hours, "backups": state["count"], "bad_entries": bad}
    # Bad entries are shown, not fatal: the verdict is about the newest good backup.
    aside = f"; {len(bad)} bad {'entry' if len(bad) == 1 else 'entries'} in the backup directory" if bad else ""
    if verified is None:
        message = ("no verified, signed backup" if state["count"] else "no backup at all") + aside
        if state["newest_unsigned"]:
            # Verified but not signed by this installation: often a key that moved or cannot be
            # read. The status only (no path: /health/ is public).
            message += f" (the newest verified one: signature {state['newest_unsigned']['signature']})"
        return Verdict(UNHEALTHY, message, "Run python manage.py backup, and schedule it nightly (cron).", details)
    details["newest_verified_age_hours"] = verified["age_hours"]
    if verified["age_seconds"] > max_hours * 3600:
        return Verdict(
            UNHEALTHY,
            f"the newest verified backup is {human_age(verified['age_seconds'])} old (limit {max_hours} h){aside}",
            "Run python manage.py backup, and check that the nightly cron job runs.",
            details,
        )
    offsite = state["offsite"]
    details["offsite"] = offsite
    message = f"newest verified backup {human_age(verified['age_seconds'])} old{aside}"
    trouble = _offsite_trouble(offsite, max_hours)
    if trouble:
        # The local backups are fresh: the data is safe from everything but the machine's loss.
        return Verdict(
            DEGRADED,
            f"{message}; {trouble}",
            "Check the offsite store (MCMANAGER_OFFSITE_URL, AWS_*), then python manage.py backup --sync.",
            details,
        )
    if offsite["newest"]:
        message += f"; newest offsite copy {human_age(offsite['newest']['age_seconds'])} old"
    return Verdict(
        HEALTHY, message, "python manage.py backup --list shows the bad entries and why." if bad else "", details
    )


def _offsite_trouble(offsite: dict, max_hours: float) -> str:
    """Why the offsite copies are not what they should be ("" when fine or not configured)."""
    if not offsite["configured"]:
        return ""
    if not offsite["ok"]:
        return "the offsite store does not answer"  # no URL or reason: /health/ is public
    if offsite["newest"] is None:
        return "no offsite copy"
    if offsite["newest"]["age_seconds"] > max_hours * 3600:
        return f"the newest offsite copy is {human_age(offsite['newest']['age_seconds'])} old"
    return ""


def check_free_space(database: str = DEFAULT_DB_ALIAS) -> Verdict:
    minimum = settings.MCMANAGER_BACKUP_MIN_FREE_MB * 1024 * 1024  # the setting is in MiB
    free = backup_dir_free_bytes()
    details = {"free_bytes": free, "min_free_bytes": minimum}
    if free < minimum:
        return Verdict(
            DEGRADED,
            f"{format_bytes(free)} free where backups go (want {format_bytes(minimum)})",
            "Free disk space or prune old backups (python manage.py backup --prune).",
            details,
        )
    return Verdict(HEALTHY, f"{format_bytes(free)} free where backups go", "", details)


# --- the registry -------------------------------------------------------------------


@dataclass(frozen=True)
class RegisteredCheck:
    """One entry of the registry.

    ``name``: the key in /health/'s JSON and the dashboard's row; ``title``: what people
    read; ``function``: judges one database; ``class_name``: the django-health-check class
    (what ``manage.py health_check`` prints); ``without_database``: it still runs when the
    database does not answer (the backup files and the disk need no database).
    """

    name: str
    title: str
    function: Callable[[str], Verdict]
    class_name: str
    without_database: bool = False

    def run(self, database: str = DEFAULT_DB_ALIAS) -> CheckResult:
        """The named result; a database that stops answering makes it unhealthy, never a crash."""
        try:
            verdict = self.function(database)
        except DatabaseError as exc:
            verdict = Verdict(
                UNHEALTHY,
                f"could not run: the database failed ({exc.__class__.__name__})",
                "Check the database connection.",
                {"error": first_line(exc)},
            )
        return CheckResult(
            self.name, self.title, verdict.status, verdict.message, verdict.recommendation, verdict.details
        )


CONNECTION = "connection"

CHECKS: tuple[RegisteredCheck, ...] = (
    RegisteredCheck(CONNECTION, "Database connection", check_connection, "DatabaseConnection"),
    RegisteredCheck("data_integrity", "Data integrity", check_data_integrity, "DataIntegrity"),
    RegisteredCheck("schema", "Schema and migrations", check_schema, "SchemaAndMigrations"),
    RegisteredCheck("performance", "Performance", check_performance, "Performance"),
    RegisteredCheck(
        "backup_freshness", "Backup freshness", check_backup_freshness, "BackupFreshness", without_database=True
    ),
    RegisteredCheck("free_space", "Free space for backups", check_free_space, "BackupFreeSpace", without_database=True),
)


def registered(name: str) -> RegisteredCheck:
    """The registry entry called ``name``; KeyError for a name the registry does not have."""
    for check in CHECKS:
        if check.name == name:
            return check
    raise KeyError(name)


def health_report(database: str = DEFAULT_DB_ALIAS) -> HealthReport:
    """Every registered check and the overall verdict: the worst of them.

    The connection check runs first; when the database does not answer, only the checks
    that need no database run beside it.
    """
    connection = registered(CONNECTION).run(database)
    connected = connection.status != UNHEALTHY
    checks = [connection] + [
        check.run(database) for check in CHECKS if check.name != CONNECTION and (connected or check.without_database)
    ]
    return HealthReport(
        database=database,
        status=worst(c.status for c in checks),
        checked_at=timezone.now(),
        checks=checks,
    )
