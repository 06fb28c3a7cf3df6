#!/usr/bin/env python
"""Django's command-line utility for mcmanager."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcmanager.settings")
    from django.core.management import execute_from_command_line

    from dbtools.management.pipes import guard_standard_streams

    guard_standard_streams()  # `manage.py backup --list | head -1`: no traceback, the work goes on
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
