"""Guarded restore: a backup is proven good before anything touches the live database.

The pipeline (``restore_backup``), in order:

1. the lock of the database (a backup or restore running: LockHeld at once, exit 2);
2. file checks: readable, manifest present (or ``--force``), engine matches, applied
   migrations not newer than the code;
3. a load into a scratch database (never the live one), hashing the file on the way:
   the checksum against the manifest, the structure checks of backup verification,
   an mcmanager database (not a Flask-era file, not another application's), applied
   migrations known to the code, row counts equal to the manifest's;
4. the operator's confirmation (interactive runs), saying what is replaced by what;
5. a safety backup of the live database (reason pre-restore), taken on a thread while
   step 3 loads (the two use different cores and tools); its operations-log entry is
   written only now, and a restore refused in steps 3-4 removes it (``swap.SafetyBackup``);
6. on the scratch: pending migrations applied, the operations log of the live database
   carried over (so the log of what happened before the restore survives it);
7. the atomic swap (``Engine.swap_in``: SQLite backup API, PostgreSQL database rename in
   one transaction, MariaDB one RENAME TABLE statement);
8. validation of the restored database (run on the scratch: on SQLite while the swap
   copies it in, on PostgreSQL and MariaDB just before the swap moves it), the replaced
   database dropped meanwhile (``Engine.finish_swap``), the restore logged, a summary returned.

Until step 7 the live database is not written to (refusals go to the operations journal
beside the backups, not to the live database's operations log, so a refused restore
leaves a SQLite file byte-for-byte as it was; the next logged operation moves them in).
``check_restore`` runs steps 2, 3 and the migrations of 6 on a scratch database and
stops there.

The modules, along those seams (each imports only those above it):

- ``results``: the result dataclasses (RestoreResult, RestoreCheckResult, RestorePlan);
- ``source``: finding the backup (path, name, ``--latest``, offsite fetch), dump recognition;
- ``checks``: the refusal checks (step 2, and those of step 3 on the loaded scratch);
- ``scratch``: the scratch database (loading, its connection alias, migrations, the log);
- ``swap``: steps 5 to 8;
- ``run``: the entry points ``restore_backup`` and ``check_restore``, which turn the
  database alias into an Engine once and pass it down, and the journal of refusals.
"""

from .checks import Checks, check_file
from .results import RestoreCheckResult, RestorePlan, RestoreResult, format_counts
from .run import check_restore, restore_backup
from .scratch import carry_operations_log, loaded_scratch, migrate_scratch, scratch_alias
from .source import dump_vendor, find_backup, resolve_source

__all__ = [
    "Checks",
    "RestoreCheckResult",
    "RestorePlan",
    "RestoreResult",
    "carry_operations_log",
    "check_file",
    "check_restore",
    "dump_vendor",
    "find_backup",
    "format_counts",
    "loaded_scratch",
    "migrate_scratch",
    "resolve_source",
    "restore_backup",
    "scratch_alias",
]
