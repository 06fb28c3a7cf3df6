"""``maintain``: the housekeeping each engine needs now and then, under the backup lock.

What pays differs per engine (SQLite: ANALYZE, VACUUM when pages are free, a WAL
checkpoint; PostgreSQL: VACUUM (ANALYZE), REINDEX of invalid indexes; MariaDB: ANALYZE
and OPTIMIZE TABLE); the SQL lives in each engine's ``maintain()``. This module takes
the lock (a VACUUM swapped in under a running backup would corrupt neither, but the
backup would copy a file being rewritten), measures, and logs.
"""

import time
from dataclasses import asdict, dataclass, field

from django.db import DEFAULT_DB_ALIAS

from .engines import get_engine
from .formatting import to_ms
from .locks import database_lock
from .oplog import record_operation


@dataclass
class MaintenanceResult:
    """What maintain did (or would do) and the database's size before and after."""

    database: str
    engine: str
    dry_run: bool
    steps: list[str] = field(default_factory=list)
    size_before: int = 0
    size_after: int = 0
    duration_ms: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def maintain_database(
    database: str = DEFAULT_DB_ALIAS,
    *,
    analyze: bool = True,
    vacuum: bool = True,
    reindex: bool = True,
    dry_run: bool = False,
) -> MaintenanceResult:
    """Run the engine's maintenance under the backup lock; LockHeld (exit 2) at once while a backup runs."""
    engine = get_engine(database)
    result = MaintenanceResult(database=database, engine=engine.display_name, dry_run=dry_run)
    t0 = time.monotonic()
    with database_lock(engine, "maintain"):
        with record_operation("maintain", database=database) as record:
            result.size_before = engine.database_size()["total_bytes"]
            result.steps = engine.maintain(analyze=analyze, vacuum=vacuum, reindex=reindex, dry_run=dry_run)
            result.size_after = engine.database_size()["total_bytes"]
            result.duration_ms = to_ms(time.monotonic() - t0)
            record.details = result.as_dict()
            record.message = f"{'dry run: ' if dry_run else ''}{len(result.steps)} steps, {result.size_before} -> {result.size_after} bytes"
    return result
