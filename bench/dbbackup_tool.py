"""django-dbbackup's own ``dbbackup`` command, for the benchmarks' comparison only.

mcmanager does not install django-dbbackup as an app (``manage.py dbbackup`` runs our
guarded backup), so the bench runs the package's command class directly:
``python bench/dbbackup_tool.py --noinput -q -O FILE``, with the same settings as manage.py.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcmanager.settings")


def main() -> None:
    import django
    from django.core.management import call_command

    django.setup()
    from dbbackup.management.commands.dbbackup import Command

    call_command(Command(), *sys.argv[1:])


if __name__ == "__main__":
    main()
