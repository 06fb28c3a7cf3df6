#!/usr/bin/env python
"""Django's command-line utility for mcmanager."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcmanager.settings")
    from django.core.management import execute_from_command_line
    from django.db import DatabaseError

    from dbtools.formatting import first_line
    from dbtools.management.pipes import guard_standard_streams

    guard_standard_streams()  # `manage.py backup --list | head -1`: no traceback, the work goes on
    try:
        execute_from_command_line(sys.argv)
    except DatabaseError as exc:
        # What escapes every command's own handling: Django's system checks connect before a
        # command runs (MariaDB's model checks do, for `migrate`), so a database that is not
        # there would otherwise end in a traceback. One line and exit 2, as our commands do.
        if "--traceback" in sys.argv:
            raise
        sys.stderr.write(f"CommandError: the database cannot be used: {first_line(exc)}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
