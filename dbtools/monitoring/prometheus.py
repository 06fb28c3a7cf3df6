"""The statistics as Prometheus text, for node exporter's textfile collector (``dbstats --format prometheus``).

One gauge per figure, labelled by database and engine; sizes in bytes, latencies and
ages in seconds, as Prometheus names them.
"""

from .stats import DatabaseStats


def render(stats: DatabaseStats) -> str:
    """The text of every gauge of ``stats``; figures the engine does not have are left out."""
    db = _label_value(stats.database)
    engine = _label_value(stats.engine)
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
        [(f'{base},table="{_label_value(t)}"', n) for t, n in stats.table_counts.items()],
    )
    size = stats.database_size
    gauge("database_size_bytes", "Size of the database in bytes.", [(base, size.get("total_bytes"))])
    if "wal_bytes" in size:
        gauge("sqlite_wal_bytes", "Size of the SQLite write-ahead log.", [(base, size["wal_bytes"])])
    gauge(
        "table_size_bytes",
        "Bytes per table (with indexes) where the engine reports it.",
        [(f'{base},table="{_label_value(t)}"', n) for t, n in (stats.table_sizes or {}).items()],
    )
    gauge(
        "server_connections",
        "Connections open on the database server.",
        [(base, stats.connection_info.get("server_connections"))],
    )
    perf = stats.performance_metrics
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
        [(base, stats.migrations.get("unapplied"))],
    )
    gauge(
        "migrations_unknown",
        "Migrations recorded in the database that the code does not know.",
        [(base, stats.migrations.get("unknown"))],
    )
    backup = stats.backup
    newest = backup.get("newest") or {}
    gauge("backups", "Backups in the backup directory.", [(base, backup.get("count"))])
    gauge(
        "backup_bad_entries",
        "Entries of the backup directory that are not sound backups (bad or missing manifest).",
        [(base, len(backup.get("bad") or []))],
    )
    gauge("backup_newest_age_seconds", "Age of the newest backup.", [(base, newest.get("age_seconds"))])
    gauge(
        "backup_newest_verified",
        "1 when the newest backup passed verification.",
        [(base, None if not newest else int(newest.get("verified") is True))],
    )
    verified = backup.get("newest_verified") or {}
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
