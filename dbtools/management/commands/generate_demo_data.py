"""``manage.py generate_demo_data``: fill a migrated database with realistic, valid demo data."""

import json
import sys
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, DatabaseError

from dbtools.demo.generator import generate
from dbtools.demo.result import GenerationError
from dbtools.errors import CouldNotRun, DbtoolsError
from dbtools.formatting import first_line


class Command(BaseCommand):
    help = (
        "Add realistic demo users, servers and configuration entries (valid by every rule "
        "validate checks) to a migrated database. The same --seed gives the same data."
    )

    def add_arguments(self, parser):
        parser.add_argument("--users", type=int, default=100, help="users to add (default 100)")
        parser.add_argument("--servers", type=int, default=500, help="servers to add (default 500)")
        parser.add_argument("--configs", type=int, default=50, help="configuration entries to add (default 50)")
        parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        parser.add_argument("--batch-size", type=int, default=50_000, help="rows per transaction (default 50000)")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="database alias (default: default)")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def handle(self, *args, **options):
        verbosity = options["verbosity"]
        progress = _ProgressPrinter(sys.stderr) if verbosity >= 1 and not options["json"] else None
        try:
            result = generate(
                database=options["database"],
                users=options["users"],
                servers=options["servers"],
                configs=options["configs"],
                seed=options["seed"],
                batch_size=options["batch_size"],
                progress=progress,
            )
        except GenerationError as exc:
            raise CommandError(str(exc), returncode=CouldNotRun.exit_code) from None
        except DatabaseError as exc:
            raise CommandError(
                f"could not add the demo data: {first_line(exc)}", returncode=DbtoolsError.exit_code
            ) from None
        finally:
            if progress:
                progress.finish()
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), indent=2))
        elif verbosity >= 1:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Added {result.users:,} users, {result.servers:,} servers "
                    f"({result.active_servers:,} running or starting) and {result.configs:,} "
                    f"configuration entries to {result.database!r} ({result.vendor}) in "
                    f"{result.duration_ms / 1000:.1f} s, {result.rows_per_second:,.0f} rows/s, seed {result.seed}."
                )
            )


class _ProgressPrinter:
    """One self-overwriting line on a terminal, a line every few seconds otherwise (logs, CI)."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.perf_counter()
        self.last = 0.0
        self.dirty = False

    def __call__(self, table: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if done < total and now - self.last < (0.2 if self.tty else 5.0):
            return
        self.last = now
        line = f"{table}: {done:,}/{total:,} ({100 * done // max(total, 1)}%), {now - self.started:.1f} s"
        if self.tty:
            self.stream.write("\r\033[K" + line)
            self.dirty = True
        elif total >= 100_000:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.dirty:
            self.stream.write("\n")
            self.stream.flush()
