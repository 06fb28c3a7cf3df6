"""``manage.py dbstats``: counts, sizes, connections, latencies, migrations and the newest backup."""

import json

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS

from dbtools.checks import OPERATIONS_CHECKS
from dbtools.errors import DbtoolsError
from dbtools.formatting import format_bytes, human_age
from dbtools.monitoring import collect_stats, render_prometheus


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
            self.stdout.write(render_prometheus(stats), ending="")
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
        line = f"Size:      {format_bytes(size.get('total_bytes'))}"
        if "wal_bytes" in size:
            line += f" (file {format_bytes(size['file_bytes'])}, WAL {format_bytes(size['wal_bytes'])})"
        w(line)
        if stats.table_sizes:
            w("Tables:    " + ", ".join(f"{t} {format_bytes(n)}" for t, n in sorted(stats.table_sizes.items())))
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
            w(f"Backup:    {newest['name']}, {human_age(newest['age_seconds'])} old, {verified}")
        else:
            w(self.style.WARNING("Backup:    none"))
        for entry in stats.backup.get("bad") or []:
            w(self.style.WARNING(f"Bad entry: {entry['name']}: {entry['problem']}"))
