"""``manage.py dbstats``: counts, sizes, connections, latencies, migrations and the newest backup."""

import json

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS

from dbtools.checks import OPERATIONS_CHECKS
from dbtools.errors import DbtoolsError
from dbtools.monitor import collect_stats


def human_bytes(n) -> str:
    if n is None:
        return "n/a"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


class Command(BaseCommand):
    help = "Show database statistics; --json for machines, --format prometheus for node exporter's textfile collector."
    requires_system_checks = OPERATIONS_CHECKS

    def add_arguments(self, parser):
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="Database alias (default: %(default)s).")
        parser.add_argument("--json", action="store_true", help="Print the statistics as JSON.")
        parser.add_argument(
            "--format",
            choices=["text", "json", "prometheus"],
            default="text",
            help="Output format (default: text; --json is --format json).",
        )

    def handle(self, *args, **options):
        try:
            stats = collect_stats(options["database"])
        except DbtoolsError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from None
        fmt = "json" if options["json"] else options["format"]
        if fmt == "json":
            self.stdout.write(json.dumps(stats.as_dict(), indent=2))
        elif fmt == "prometheus":
            self.stdout.write(stats.as_prometheus(), ending="")
        else:
            self.print_text(stats)

    def print_text(self, stats) -> None:
        w = self.stdout.write
        info = stats.connection_info
        w(self.style.MIGRATE_HEADING(f"{info['description']} ({stats.engine} {stats.server_version})"))
        w(
            "Rows:      "
            + ", ".join(f"{key} {'(no table)' if n is None else f'{n:,}'}" for key, n in stats.table_counts.items())
        )
        size = stats.database_size
        line = f"Size:      {human_bytes(size.get('total_bytes'))}"
        if "wal_bytes" in size:
            line += f" (file {human_bytes(size['file_bytes'])}, WAL {human_bytes(size['wal_bytes'])})"
        w(line)
        if stats.table_sizes:
            w("Tables:    " + ", ".join(f"{t} {human_bytes(n)}" for t, n in sorted(stats.table_sizes.items())))
        conns = info.get("server_connections")
        w(
            f"Connect:   CONN_MAX_AGE={info['conn_max_age']}"
            + (f", {conns} connections open on the server" if conns is not None else "")
            + (f", pool {info['pool']}" if info.get("pool") else "")
        )
        perf = stats.performance_metrics
        extras = []
        if perf.get("free_pages") is not None:
            extras.append(f"free pages {perf['free_pages']}")
        if perf.get("cache_hit_ratio") is not None:
            extras.append(f"cache hit ratio {perf['cache_hit_ratio']:.2%}")
        w(
            f"Latency:   round trip {perf['round_trip_ms']:.2f} ms"
            + (f", indexed lookup {perf['indexed_query_ms']:.2f} ms" if perf["indexed_query_ms"] is not None else "")
            + (", " + ", ".join(extras) if extras else "")
        )
        for advice in perf.get("maintenance_advice") or []:
            w(self.style.WARNING(f"Maintain:  {advice}"))
        mig = stats.migrations
        w(f"Migrations: {mig['applied']} applied, {mig['unapplied']} unapplied, {mig['unknown']} unknown")
        newest = stats.backup.get("newest")
        if newest:
            verified = {True: "verified", False: "FAILED verification", None: "not verified"}[newest["verified"]]
            w(f"Backup:    {newest['name']}, {newest['age_hours']:.1f} h old, {verified}")
        else:
            w(self.style.WARNING("Backup:    none"))
        for entry in stats.backup.get("bad") or []:
            w(self.style.WARNING(f"Bad entry: {entry['name']}: {entry['problem']}"))
