"""``manage.py dbbackup``: django-dbbackup's command name, running mcmanager's guarded backup.

django-dbbackup is not an installed app here (its connectors are used as a library), so
its own commands are not offered; scripts written for it get ``manage.py backup``'s
backup under this name: locked, verified, atomic, with a manifest, in the backup
directory, retention applied. Its common options are accepted; the others are refused
by the parser (exit 2) rather than silently ignored.
"""

from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

from dbtools.backups import RetentionPolicy

from . import backup

# django-dbbackup's default for --clean (DBBACKUP_CLEANUP_KEEP).
DBBACKUP_CLEANUP_KEEP = 10


class Command(backup.Command):
    help = (
        "django-dbbackup's name for `manage.py backup`: the same locked, verified backup with a manifest. "
        "Accepts dbbackup's -c, -z, -d, -O, --noinput and -q; `manage.py backup --help` has every option."
    )

    def add_arguments(self, parser):
        parser.add_argument("-d", "--database", help="Database alias(es), comma-separated (default: every database).")
        parser.add_argument(
            "-c",
            "--clean",
            action="store_true",
            help="Apply retention after the backup: MCMANAGER_KEEP_*, or keep the newest "
            f"{DBBACKUP_CLEANUP_KEEP} verified backups (DBBACKUP_CLEANUP_KEEP) when no policy is set.",
        )
        parser.add_argument(
            "-z",
            "--compress",
            action="store_true",
            help="Compress: backups always are, as MCMANAGER_BACKUP_COMPRESSION says (gzip when that is 'none').",
        )
        parser.add_argument(
            "-O",
            "--output-path",
            metavar="DIR",
            help="The backup directory (default: MCMANAGER_BACKUP_DIR); mcmanager names the files itself.",
        )
        parser.add_argument(
            "--noinput", "--no-input", action="store_false", dest="interactive", help="Accepted: a backup asks nothing."
        )
        parser.add_argument("-q", "--quiet", action="store_true", help="Print nothing on success (as -v 0).")

    def handle(self, *args, **options):
        keep_last = None
        if options["clean"] and RetentionPolicy.from_settings().is_empty:
            keep_last = getattr(settings, "DBBACKUP_CLEANUP_KEEP", DBBACKUP_CLEANUP_KEEP)
        compress = settings.MCMANAGER_BACKUP_COMPRESSION
        if options["compress"] and compress == "none":
            compress = "gzip"
        # backup's own defaults for every option it has (a new one needs no change here),
        # then what dbbackup's options mean.
        defaults = vars(backup.Command().create_parser("manage.py", "backup").parse_args([]))
        for alias in database_aliases(options["database"]):
            super().handle(
                **{
                    **defaults,
                    "database": alias,
                    "output_dir": output_directory(options["output_path"]),
                    "compress": compress,
                    "reason": "dbbackup",
                    "keep_last": keep_last,
                    "verbosity": 0 if options["quiet"] else options["verbosity"],
                }
            )


def database_aliases(value: str | None) -> list[str]:
    """dbbackup's -d: aliases separated by commas, every database when absent."""
    if not value:
        return list(settings.DATABASES)
    aliases = [alias.strip() for alias in value.split(",") if alias.strip()]
    unknown = [alias for alias in aliases if alias not in settings.DATABASES]
    if unknown or not aliases:
        raise CommandError(f"no database {', '.join(unknown) or repr(value)} in DATABASES", returncode=2)
    return aliases


def output_directory(value: str | None) -> Path | None:
    """dbbackup's -O, which names a file there; here a directory (our names carry date, engine and manifest)."""
    if value is None:
        return None
    if "://" in value:
        raise CommandError(
            f"dbbackup -O {value}: remote storage is not written by dbbackup here; give a local directory",
            returncode=2,
        )
    path = Path(value).expanduser()
    if not (path.is_dir() or value.endswith("/")):
        raise CommandError(
            f"dbbackup -O {value}: give a directory, not a file name: mcmanager names its backups itself "
            "(db_backup_YYYYMMDD_HHMMSS.<ext> with a manifest beside it); see python manage.py backup --help",
            returncode=2,
        )
    return path
