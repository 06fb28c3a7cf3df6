"""The expected failures of dbtools. Each carries the exit status of DESIGN.md.

Commands turn these into ``CommandError(str(exc), returncode=exc.exit_code)``:
one line on stderr, no traceback.
"""


class DbtoolsError(Exception):
    """An expected failure: the message is one line an operator can act on."""

    exit_code = 1


class CouldNotRun(DbtoolsError):
    """Bad usage, unreachable database, missing binary: exit 2."""

    exit_code = 2


class DatabaseUnreachable(CouldNotRun):
    pass


class LockHeld(CouldNotRun):
    """Another backup or restore holds this database's lock."""


class BackupFailed(DbtoolsError):
    pass


class VerificationFailed(DbtoolsError):
    """A backup file failed its checks (checksum, structure, row counts)."""


class RestoreRefused(DbtoolsError):
    """The restore was refused before anything was touched."""


class RestoreFailed(DbtoolsError):
    pass


class ForeignContent(VerificationFailed):
    """A backup file holds something other than our models' data (a trigger, a view, a
    statement for another database...): refused before any of it runs. The message
    starts with what was found ("holds a trigger ..."), to follow the file's name."""
