"""``manage.py salvage [FILE] [--output OUT] [--compare-with BACKUP]``: every readable row of a
damaged SQLite file, in a new file ready for ``restore --force``.

Exit status: 0 every row recovered, 1 rows lost or set aside (the output is still
written), 2 could not run.
"""

import json

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS

from dbtools.errors import DbtoolsError
from dbtools.salvage import compare_with_backup, salvage_database


class Command(BaseCommand):
    help = "Recover the readable rows of a damaged SQLite database into a new file (the damaged one is only read)."
    requires_system_checks: list = []  # the database may be too damaged for the checks to run

    def add_arguments(self, parser):
        parser.add_argument("file", nargs="?", help="The damaged SQLite file (default: the database's own file).")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="Database alias (default: %(default)s).")
        parser.add_argument("--output", help="Where to write the salvaged database (default: the backup directory).")
        parser.add_argument("--compare-with", metavar="BACKUP", help="Compare the salvaged rows with this backup.")
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args, **options):
        try:
            result = salvage_database(options["file"], output=options["output"], database=options["database"])
            comparison = None
            if options["compare_with"]:
                comparison = compare_with_backup(result.output, options["compare_with"], options["database"])
        except DbtoolsError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from None
        if options["json"]:
            data = result.as_dict()
            if comparison is not None:
                data["comparison"] = [vars(c) for c in comparison]
            self.stdout.write(json.dumps(data, indent=2))
        else:
            self.print_result(result, comparison)
        if not result.complete:
            raise CommandError(
                f"salvage is incomplete: rows were lost or set aside; the readable rows are in {result.output}",
                returncode=1,
            )

    def print_result(self, result, comparison) -> None:
        self.stdout.write(f"Salvaged {result.source} into {result.output} ({result.method}, {result.duration_ms} ms).")
        for t in result.tables:
            if t.unreadable:
                self.stdout.write(self.style.ERROR(f"  {t.table}: unreadable ({t.unreadable})"))
                continue
            line = f"  {t.table}: {t.recovered} recovered"
            if t.lost_ranges:
                line += f", lost rowids {t.lost_text}"
            if t.set_aside:
                line += f", {t.set_aside} set aside"
            self.stdout.write(line)
        if any(t.set_aside for t in result.tables):
            self.stdout.write(f"Rows that broke a rule: {result.set_aside_file}")
        if comparison is not None:
            self.stdout.write("Compared with the backup (by id):")
            for c in comparison:
                self.stdout.write(
                    f"  {c.table}: {c.only_in_salvage} only in the salvage {c.sample_only_in_salvage}, "
                    f"{c.only_in_backup} only in the backup {c.sample_only_in_backup}, "
                    f"{c.differing} differing {c.sample_differing}"
                )
        self.stdout.write(f"Next: manage.py restore --force {result.output}")
