"""Database statistics: counts, sizes, connections, latencies, migrations and backups.

What ``dbstats`` prints, ``/health/`` judges and the dashboard shows. Everything here is
cheap enough for every request: counts, sizes and latencies are single queries (or the
server's own estimates), and the engine answers the vendor-specific questions.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.utils import timezone

from accounts.models import User
from servers.models import Configuration, Server

from ..backups import belongs_to, list_backups, offsite_state
from ..engines import Engine, get_engine
from ..schema_state import migration_state
from ..validation import ensure_reachable, reading


@dataclass
class DatabaseStats:
    """One snapshot of the database: counts, sizes, connections, latencies, migrations, backups.

    Sizes are integer bytes; latencies are milliseconds (floats: a local round trip is a
    fraction of one).
    """

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


def project_tables() -> dict[str, str]:
    """The tables the figures count, by the names people use: users, servers, configurations."""
    return {
        "users": User._meta.db_table,
        "servers": Server._meta.db_table,
        "configurations": Configuration._meta.db_table,
    }


def connection_info(database: str = DEFAULT_DB_ALIAS) -> dict:
    """Django's connection settings (never the password), plus what the server says."""
    return _connection_info(get_engine(database))


def _connection_info(engine: Engine) -> dict:
    s = engine.settings_dict
    return {
        "vendor": engine.vendor,
        "engine": engine.display_name,
        "name": str(s.get("NAME") or ""),
        "host": s.get("HOST") or "",
        "port": str(s.get("PORT") or ""),
        "user": s.get("USER") or "",
        "conn_max_age": s.get("CONN_MAX_AGE"),
        "conn_health_checks": s.get("CONN_HEALTH_CHECKS", False),
        "description": engine.describe(),
        "server_connections": engine.server_connections(),
        "pool": engine.pool_stats(),
    }


def measure_latency(database: str = DEFAULT_DB_ALIAS) -> dict:
    """Round trip (best of three SELECT 1) and an indexed lookup on the servers table, in ms."""
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


def backup_state(directory: Path | None = None, database: str = DEFAULT_DB_ALIAS, listed=None) -> dict:
    """The newest backup of ``database`` and its newest verified, signed one, with their ages.

    Only backups whose manifest says they are of this database count (backup.belongs_to:
    its engine and its database, not the alias), whatever else shares the directory. Bad
    entries (no manifest, a manifest that is unreadable or wrong, a file that differs from
    it) are listed apart, with their problems, and count for nothing else. ``listed``: the
    directory's listing when the caller has it already (the dashboard lists it once).
    Sizes are integer bytes.
    """
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
        # The newest offsite copy and its age (offsite_state caches the listing for a minute).
        "offsite": offsite_state(now),
    }


def table_counts(database: str = DEFAULT_DB_ALIAS, *, exact: bool = True) -> tuple[dict[str, int], bool]:
    """Rows in users, servers and configurations; estimates when not ``exact`` and the engine has them."""
    return _table_counts(get_engine(database), exact=exact)


def _table_counts(engine: Engine, *, exact: bool) -> tuple[dict[str, int], bool]:
    tables = project_tables()
    if not exact:
        estimates = engine.estimated_row_counts(list(tables.values()))
        if estimates is not None:
            return {key: estimates[table] for key, table in tables.items()}, False
    connection = engine.connection
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
    ensure_reachable(database)
    engine = get_engine(database)
    counts, counts_exact = _table_counts(engine, exact=exact)
    performance = measure_latency(database)
    performance.update(engine.performance_extras())
    performance["maintenance_advice"] = engine.maintenance_advice()
    return DatabaseStats(
        database=database,
        engine=engine.display_name,
        server_version=_server_version(engine),
        collected_at=timezone.now(),
        table_counts=counts,
        counts_exact=counts_exact,
        database_size=engine.database_size(),
        table_sizes=engine.table_sizes(list(project_tables().values())),
        connection_info=_connection_info(engine),
        performance_metrics=performance,
        migrations=migration_state(database),
        backup=backup_state(database=database),
    )


def _server_version(engine: Engine) -> str:
    """The server's version as Django parsed it ("16.4", "10.11.6"), "" when it cannot."""
    connection = engine.connection
    connection.ensure_connection()
    try:
        return ".".join(str(part) for part in connection.get_database_version())
    except Exception:  # a version we cannot parse is no reason to fail the statistics
        return ""


def backup_dir_free_bytes(directory: Path | None = None) -> int:
    """Free bytes on the disk of the backup directory (or its nearest existing parent)."""
    path = Path(directory or settings.MCMANAGER_BACKUP_DIR)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free
