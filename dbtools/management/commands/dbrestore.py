"""``manage.py dbrestore``: django-dbbackup's command name, running mcmanager's guarded restore.

Everything ``manage.py restore`` does happens: the lock, the checks of the file before
anything is touched, the test load into a scratch database, the safety backup, the
atomic swap, validation. django-dbbackup's common options are accepted; the others
(decryption, schemas, pg_restore options, --no-drop) are refused by the parser (exit 2).
"""

from django.core.management.base import CommandError
from django.db import DEFAULT_DB_ALIAS

from dbtools.backups import backup_directory

from . import restore


class Command(restore.Command):
    help = (
        "django-dbbackup's name for `manage.py restore`: the same guarded restore (checks first, safety backup, "
        "atomic swap). Accepts dbbackup's -d, -i, -I, --noinput and -q; without -i/-I the newest verified backup."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "-d", "--database", default=DEFAULT_DB_ALIAS, help="The database alias to restore (default: %(default)s)."
        )
        source = parser.add_mutually_exclusive_group()
        source.add_argument(
            "-i", "--input-filename", metavar="NAME", help="A backup's file name in the backup directory."
        )
        source.add_argument("-I", "--input-path", metavar="PATH", help="A backup file's path.")
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Do not ask for confirmation (scripts).",
        )
        parser.add_argument("-q", "--quiet", action="store_true", help="Print nothing on success (as -v 0).")

    def handle(self, *args, **options):
        name = options["input_filename"]
        if name is not None and ("/" in name or name in ("", ".", "..")):
            raise CommandError(
                f"dbrestore -i {name}: a file name in the backup directory; give a path with -I", returncode=2
            )
        source = options["input_path"] or (str(backup_directory() / name) if name else None)
        # restore's own defaults for every option it has, then what dbrestore's mean.
        defaults = vars(restore.Command().create_parser("manage.py", "restore").parse_args([]))
        super().handle(
            **{
                **defaults,
                "file": source,
                "latest": source is None,
                "database": options["database"],
                "interactive": options["interactive"],
                "verbosity": 0 if options["quiet"] else options["verbosity"],
            }
        )
