"""Statistics and the health verdict: what ``dbstats``, ``/health/`` and the dashboard show.

Everything here is cheap enough to run on every request: counts, sizes and latencies
are single queries, and data integrity comes from the last stored validation report
(a full validation of a million rows is never redone per request).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.utils import timezone

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


def _project_tables() -> dict[str, str]:
    from accounts.models import User
    from servers.models import Configuration, Server

    return {
        "users": User._meta.db_table,
        "servers": Server._meta.db_table,
        "configurations": Configuration._meta.db_table,
    }


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]


# --- statistics -------------------------------------------------------------------


@dataclass
class DatabaseStats:
    """One snapshot of the database: counts, sizes, connections, latencies, migrations, backups."""

    database: str
    engine: str
    server_version: str
    collected_at: datetime
    table_counts: dict[str, int]
    counts_exact: bool
    database_size: dict
    table_sizes: dict[str, int] | None
    connection_info: dict
    performance_metrics: dict
    migrations: dict
    backup: dict

    def as_dict(self) -> dict:
        data = asdict(self)
        data["collected_at"] = self.collected_at.isoformat()
        return data

    def as_prometheus(self) -> str:
        """Text for node exporter's textfile collector (one gauge per figure, labelled by database)."""
        db = _label_value(self.database)
        engine = _label_value(self.engine)
        lines: list[str] = []

        def gauge(name: str, help_text: str, samples: list[tuple[str, float | int | None]]) -> None:
            samples = [(labels, value) for labels, value in samples if value is not None]
            if not samples:
                return
            lines.append(f"# HELP mcmanager_{name} {help_text}")
            lines.append(f"# TYPE mcmanager_{name} gauge")
            for labels, value in samples:
                lines.append(f"mcmanager_{name}{{{labels}}} {_number(value)}")

        base = f'database="{db}",engine="{engine}"'
        gauge(
            "table_rows",
            "Rows per table.",
            [(f'{base},table="{_label_value(t)}"', n) for t, n in self.table_counts.items()],
        )
        gauge("database_size_bytes", "Size of the database in bytes.", [(base, self.database_size.get("total_bytes"))])
        if "wal_bytes" in self.database_size:
            gauge("sqlite_wal_bytes", "Size of the SQLite write-ahead log.", [(base, self.database_size["wal_bytes"])])
        gauge(
            "table_size_bytes",
            "Bytes per table (with indexes) where the engine reports it.",
            [(f'{base},table="{_label_value(t)}"', n) for t, n in (self.table_sizes or {}).items()],
        )
        gauge(
            "server_connections",
            "Connections open on the database server.",
            [(base, self.connection_info.get("server_connections"))],
        )
        perf = self.performance_metrics
        gauge("round_trip_seconds", "Round trip of SELECT 1.", [(base, _seconds(perf.get("round_trip_ms")))])
        gauge(
            "indexed_query_seconds",
            "Latency of an indexed lookup on the servers table.",
            [(base, _seconds(perf.get("indexed_query_ms")))],
        )
        gauge("sqlite_free_pages", "Free pages in the SQLite file.", [(base, perf.get("free_pages"))])
        gauge("cache_hit_ratio", "PostgreSQL buffer cache hit ratio.", [(base, perf.get("cache_hit_ratio"))])
        gauge(
            "migrations_unapplied",
            "Migrations of the code not applied to the database.",
            [(base, self.migrations.get("unapplied"))],
        )
        gauge(
            "migrations_unknown",
            "Migrations recorded in the database that the code does not know.",
            [(base, self.migrations.get("unknown"))],
        )
        newest = self.backup.get("newest") or {}
        gauge("backups", "Backups in the backup directory.", [(base, self.backup.get("count"))])
        gauge(
            "backup_bad_entries",
            "Entries of the backup directory that are not sound backups (bad or missing manifest).",
            [(base, len(self.backup.get("bad") or []))],
        )
        gauge(
            "backup_newest_age_seconds",
            "Age of the newest backup.",
            [(base, newest.get("age_seconds"))],
        )
        gauge(
            "backup_newest_verified",
            "1 when the newest backup passed verification.",
            [(base, None if not newest else int(newest.get("verified") is True))],
        )
        verified = self.backup.get("newest_verified") or {}
        gauge(
            "backup_newest_verified_age_seconds",
            "Age of the newest verified backup.",
            [(base, verified.get("age_seconds"))],
        )
        return "\n".join(lines) + "\n"


def _label_value(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _seconds(ms):
    return None if ms is None else ms / 1000


def connection_info(database: str = DEFAULT_DB_ALIAS) -> dict:
    """Django's connection settings (never the password), plus what the server says."""
    from .engines import get_engine

    engine = get_engine(database)
    s = connections[database].settings_dict
    info = {
        "vendor": connections[database].vendor,
        "engine": engine.display_name,
        "name": str(s.get("NAME") or ""),
        "host": s.get("HOST") or "",
        "port": str(s.get("PORT") or ""),
        "user": s.get("USER") or "",
        "conn_max_age": s.get("CONN_MAX_AGE"),
        "conn_health_checks": s.get("CONN_HEALTH_CHECKS", False),
        "description": engine.describe(),
        "server_connections": engine.server_connections(),
    }
    pool = getattr(engine, "pool_stats", None)
    info["pool"] = pool() if pool else None
    return info


def measure_latency(database: str = DEFAULT_DB_ALIAS) -> dict:
    """Round trip (best of three SELECT 1) and an indexed lookup on the servers table, in ms."""
    from servers.models import Server

    from .validation import reading

    connection = connections[database]
    connection.ensure_connection()
    round_trips = []
    with connection.cursor() as cursor:
        for _ in range(3):
            t0 = time.perf_counter()
            cursor.execute("SELECT 1")
            cursor.fetchone()
            round_trips.append((time.perf_counter() - t0) * 1000)
    sql, params = (
        # server_name is unique-indexed: what the panel does on every page of a server.
        Server._base_manager.using(database)
        .filter(server_name="mcmanager-latency-probe")
        .values_list("pk")[:1]
        .query.sql_with_params()
    )
    indexed = None
    try:
        with reading(database), connection.cursor() as cursor:
            t0 = time.perf_counter()
            cursor.execute(sql, params)
            cursor.fetchall()
            indexed = round((time.perf_counter() - t0) * 1000, 3)
    except DatabaseError:  # no servers table (not migrated): no figure rather than a failure
        pass
    return {"round_trip_ms": round(min(round_trips), 3), "indexed_query_ms": indexed}


def migration_state(database: str = DEFAULT_DB_ALIAS) -> dict:
    """Counts of applied, unapplied and unknown migrations, with the names of the latter two."""
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections[database])
    loader = executor.loader
    plan = executor.migration_plan(loader.graph.leaf_nodes())
    unapplied = [f"{m.app_label}.{m.name}" for m, backwards in plan if not backwards]
    known = set(loader.migrated_apps)
    unknown = sorted(
        f"{app}.{name}"
        for app, name in loader.applied_migrations
        if app in known and (app, name) not in loader.disk_migrations
    )
    return {
        "applied": len(loader.applied_migrations),
        "unapplied": len(unapplied),
        "unknown": len(unknown),
        "unapplied_names": unapplied,
        "unknown_names": unknown,
    }


def backup_state(directory: Path | None = None, database: str = DEFAULT_DB_ALIAS, listed=None) -> dict:
    """The newest backup of ``database`` and its newest verified, signed one, with their ages.

    Only backups whose manifest says they are of this database count (backup.belongs_to:
    its engine and its database, not the alias), whatever else shares the directory. Bad
    entries (no manifest, a manifest that is unreadable or wrong, a file that differs from
    it) are listed apart, with their problems, and count for nothing else. ``listed``: the
    directory's listing when the caller has it already (the dashboard lists it once).
    """
    try:
        from .backups import list_backups
    except ImportError:  # the backup module is not there (yet): say so, do not fail
        return {
            "available": False,
            "count": 0,
            "newest": None,
            "newest_verified": None,
            "recent": [],
            "newest_unsigned": None,
            "bad": [],
        }
    from .backups import belongs_to

    listed = list_backups(directory) if listed is None else listed
    backups = [b for b in listed if not b.problem and belongs_to(b.manifest, database)]
    others = sum(1 for b in listed if not b.problem and not belongs_to(b.manifest, database))
    bad = [{"name": b.name, "problem": b.problem} for b in listed if b.problem]
    now = timezone.now()

    def describe(info) -> dict:
        age = (now - info.created_at).total_seconds()
        return {
            "name": info.name,
            "created_at": info.created_at.isoformat(),
            "age_seconds": int(age),
            "age_hours": round(age / 3600, 2),
            "size": info.size,
            "engine": info.engine,
            "reason": info.reason,
            "verified": info.verified,
            "verification_level": info.verification_level,
            "signed": info.signed,
            "signature": info.manifest.authenticity.status if info.manifest else "",
        }

    verified = next((b for b in backups if b.verified is True and b.signed), None)
    unsigned = next((b for b in backups if b.verified is True and not b.signed), None)
    return {
        "available": True,
        "count": len(backups),
        "newest": describe(backups[0]) if backups else None,
        "newest_verified": describe(verified) if verified else None,
        "recent": [describe(b) for b in backups[:5]],
        "newest_unsigned": describe(unsigned) if unsigned else None,
        "bad": bad,
        "other_databases": others,
        "offsite": _offsite_state(),
    }


def _offsite_state() -> dict:
    """The newest offsite copy and its age (dbtools.offsite.offsite_state: cached for a minute)."""
    from .backups import offsite_state

    return offsite_state(timezone.now())


def table_counts(database: str = DEFAULT_DB_ALIAS, *, exact: bool = True) -> tuple[dict[str, int], bool]:
    """Rows in users, servers and configurations; estimates when not ``exact`` and the engine has them."""
    from .engines import get_engine

    tables = _project_tables()
    if not exact:
        estimates = get_engine(database).estimated_row_counts(list(tables.values()))
        if estimates is not None:
            return {key: estimates[table] for key, table in tables.items()}, False
    connection = connections[database]
    counts: dict[str, int | None] = {}
    with connection.cursor() as cursor:
        existing = set(connection.introspection.table_names(cursor))
        for key, table in tables.items():
            if table not in existing:  # not migrated yet: no rows to count
                counts[key] = None
                continue
            cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)}")
            counts[key] = int(cursor.fetchone()[0])
    return counts, True


def collect_stats(database: str = DEFAULT_DB_ALIAS, *, exact: bool = True) -> DatabaseStats:
    """Counts, sizes, connections, latencies, migration state and the newest backup.

    ``exact=False`` takes the server's row estimates (PostgreSQL, MariaDB) where
    COUNT(*) over a million rows would cost more than a page view should.
    Raises DatabaseUnreachable when the database does not answer.
    """
    from .engines import get_engine
    from .validation import ensure_reachable

    ensure_reachable(database)
    engine = get_engine(database)
    counts, counts_exact = table_counts(database, exact=exact)
    performance = measure_latency(database)
    performance.update(engine.performance_extras())
    performance["maintenance_advice"] = engine.maintenance_advice()
    return DatabaseStats(
        database=database,
        engine=engine.display_name,
        server_version=_server_version(database),
        collected_at=timezone.now(),
        table_counts=counts,
        counts_exact=counts_exact,
        database_size=engine.database_size(),
        table_sizes=engine.table_sizes(list(_project_tables().values())),
        connection_info=connection_info(database),
        performance_metrics=performance,
        migrations=migration_state(database),
        backup=backup_state(database=database),
    )


def _server_version(database: str) -> str:
    connection = connections[database]
    connection.ensure_connection()
    version = getattr(connection, "get_database_version", None)
    try:
        return ".".join(str(part) for part in version()) if version else ""
    except Exception:  # a version we cannot parse is no reason to fail the statistics
        return ""


# --- health -------------------------------------------------------------------------


@dataclass
class CheckResult:
    """One health check: its status (healthy/degraded/unhealthy), one line, and how to fix it."""

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


def check_connection(database: str = DEFAULT_DB_ALIAS) -> CheckResult:
    from .engines import get_engine

    title = "Database connection"
    try:
        connections[database].ensure_connection()
        with connections[database].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return CheckResult(
            "connection",
            title,
            UNHEALTHY,
            f"the database does not answer ({exc.__class__.__name__})",
            "Check that the database server is running and DATABASE_URL points at it.",
            {"error": _first_line(exc)},
        )
    return CheckResult("connection", title, HEALTHY, f"{get_engine(database).display_name} answers")


def check_data_integrity(database: str = DEFAULT_DB_ALIAS) -> CheckResult:
    """From the last stored full validation report: never a full validation per request."""
    from .validation import last_report

    title = "Data integrity"
    stored = last_report(database)
    if stored is None:
        return CheckResult(
            "data_integrity",
            title,
            HEALTHY,
            "not validated yet: nothing known to be wrong",
            "Run python manage.py validate (nightly, after the backup) to check the data.",
            {"report_age_seconds": None},
        )
    age = int((timezone.now() - stored.created_at).total_seconds())
    details = {"report_age_seconds": age, "report_at": stored.created_at.isoformat()}
    if stored.ok:
        return CheckResult(
            "data_integrity",
            title,
            HEALTHY,
            f"the last validation ({human_age(age)} ago) found no problems",
            "",
            details,
        )
    problems = stored.report.get("problems", {})
    counts = {category: len(items) for category, items in problems.items() if items}
    details["problems_by_category"] = counts
    status = UNHEALTHY if SERIOUS_CATEGORIES & set(counts) else DEGRADED
    summary = ", ".join(f"{n} {category.replace('_', ' ')}" for category, n in sorted(counts.items()))
    return CheckResult(
        "data_integrity",
        title,
        status,
        f"the last validation ({human_age(age)} ago) found {summary}",
        "Run python manage.py validate to see each problem, its rows and how to fix it.",
        details,
    )


def check_schema(database: str = DEFAULT_DB_ALIAS) -> CheckResult:
    """Migrations applied and known, and every model's table present (cheap, live)."""
    from .validation import checked_models

    title = "Schema and migrations"
    state = migration_state(database)
    connection = connections[database]
    with connection.cursor() as cursor:
        existing = set(connection.introspection.table_names(cursor))
    missing = sorted(m._meta.db_table for m in checked_models(database) if m._meta.db_table not in existing)
    details = {"unapplied": state["unapplied"], "unknown": state["unknown"], "missing_tables": len(missing)}
    if missing:
        return CheckResult(
            "schema",
            title,
            UNHEALTHY,
            f"{len(missing)} tables are missing",
            "Run python manage.py migrate, or restore the newest verified backup.",
            details,
        )
    if state["unapplied"]:
        return CheckResult(
            "schema",
            title,
            UNHEALTHY,
            f"{state['unapplied']} migrations are not applied",
            "Run python manage.py migrate (it takes a backup first).",
            details,
        )
    if state["unknown"]:
        return CheckResult(
            "schema",
            title,
            DEGRADED,
            f"{state['unknown']} migrations in the database are unknown to this code (the database is newer)",
            "Deploy the code that matches the database, or restore a backup made with this code.",
            details,
        )
    return CheckResult("schema", title, HEALTHY, f"all {state['applied']} migrations applied", "", details)


def check_performance(database: str = DEFAULT_DB_ALIAS) -> CheckResult:
    from .engines import get_engine

    title = "Performance"
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
    return CheckResult("performance", title, status, message, recommendation, latency)


def check_backup_freshness(database: str = DEFAULT_DB_ALIAS) -> CheckResult:
    title = "Backup freshness"
    max_hours = settings.MCMANAGER_BACKUP_MAX_AGE_HOURS
    state = backup_state(database=database)
    verified = state["newest_verified"]
    bad = state["bad"]
    details = {"max_age_hours": max_hours, "backups": state["count"], "bad_entries": bad}
    # Bad entries are shown, not fatal: the verdict is about the newest good backup.
    aside = f"; {len(bad)} bad {'entry' if len(bad) == 1 else 'entries'} in the backup directory" if bad else ""
    if not state["available"]:
        return CheckResult("backup_freshness", title, UNHEALTHY, "the backup module is not installed", "", details)
    if verified is None:
        message = ("no verified, signed backup" if state["count"] else "no backup at all") + aside
        if state["newest_unsigned"]:
            # Verified but not signed by this installation: often a key that moved or cannot be
            # read. The status only (no path: /health/ is public).
            message += f" (the newest verified one: signature {state['newest_unsigned']['signature']})"
        return CheckResult(
            "backup_freshness",
            title,
            UNHEALTHY,
            message,
            "Run python manage.py backup, and schedule it nightly (cron).",
            details,
        )
    details["newest_verified_age_hours"] = verified["age_hours"]
    if verified["age_seconds"] > max_hours * 3600:
        return CheckResult(
            "backup_freshness",
            title,
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
        return CheckResult(
            "backup_freshness",
            title,
            DEGRADED,
            f"{message}; {trouble}",
            "Check the offsite store (MCMANAGER_OFFSITE_URL, AWS_*), then python manage.py backup --sync.",
            details,
        )
    if offsite["newest"]:
        message += f"; newest offsite copy {human_age(offsite['newest']['age_seconds'])} old"
    return CheckResult(
        "backup_freshness",
        title,
        HEALTHY,
        message,
        "python manage.py backup --list shows the bad entries and why." if bad else "",
        details,
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


def backup_dir_free_mb(directory: Path | None = None) -> int:
    """Free megabytes on the disk of the backup directory (or its nearest existing parent)."""
    path = Path(directory or settings.MCMANAGER_BACKUP_DIR)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free // (1024 * 1024)


def check_free_space(database: str = DEFAULT_DB_ALIAS) -> CheckResult:
    title = "Free space for backups"
    minimum = settings.MCMANAGER_BACKUP_MIN_FREE_MB
    free = backup_dir_free_mb()
    details = {"free_mb": free, "min_free_mb": minimum}
    if free < minimum:
        return CheckResult(
            "free_space",
            title,
            DEGRADED,
            f"{free} MB free where backups go (want {minimum} MB)",
            "Free disk space or prune old backups (python manage.py backup --prune).",
            details,
        )
    return CheckResult("free_space", title, HEALTHY, f"{free} MB free where backups go", "", details)


CHECKS = (
    check_connection,
    check_data_integrity,
    check_schema,
    check_performance,
    check_backup_freshness,
    check_free_space,
)


def run_check(check, database: str = DEFAULT_DB_ALIAS) -> CheckResult:
    """Run one check; a database that stops answering makes it unhealthy, never a crash."""
    try:
        return check(database)
    except DatabaseError as exc:
        name = check.__name__.removeprefix("check_")
        return CheckResult(
            name,
            name.replace("_", " ").capitalize(),
            UNHEALTHY,
            f"could not run: the database failed ({exc.__class__.__name__})",
            "Check the database connection.",
            {"error": _first_line(exc)},
        )


def health_report(database: str = DEFAULT_DB_ALIAS) -> HealthReport:
    """All checks and the overall verdict: the worst of them."""
    first = run_check(check_connection, database)
    if first.status == UNHEALTHY:
        # Nothing else can answer without the database; the backup checks still can.
        checks = [first, run_check(check_backup_freshness, database), run_check(check_free_space, database)]
    else:
        checks = [first] + [run_check(check, database) for check in CHECKS[1:]]
    return HealthReport(
        database=database,
        status=worst(c.status for c in checks),
        checked_at=timezone.now(),
        checks=checks,
    )


def human_age(seconds: int) -> str:
    """45 s, 12 min, 3.5 h, 2.0 days."""
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
