"""Salvage what can be read from a damaged database into a new, sound one.

For the day the live database says "database disk image is malformed" and no backup is
recent enough. The engine reads (``Engine.salvage``; only SQLite's file can be salvaged,
the others say so); this module chooses the output (the backup directory by default),
builds the empty target by our own migrations, and writes the operations log entry into
the salvaged file, never into the damaged one.

The output has no manifest: it is restored with ``restore --force``, which runs every
other guard of restore on it, or compared with a backup first (``compare_with_backup``).
"""

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from .backups import backup_directory
from .engines import get_engine
from .engines.results import SalvageResult, TableComparison
from .formatting import to_ms
from .oplog import OperationRecord, os_user, write_entry
from .restore import Checks, check_file, loaded_scratch, resolve_source, scratch_alias


def _migrated_file(database: str, path: Path) -> None:
    """Create ``path`` as an empty database with every migration of the code applied.

    No post_migrate signal: content types and permissions come from the damaged file
    (a later ``migrate`` or restore adds whatever was lost).
    """
    with scratch_alias(database, str(path)) as alias:
        executor = MigrationExecutor(connections[alias])
        targets = executor.loader.graph.leaf_nodes()
        executor.migrate(targets, plan=executor.migration_plan(targets))


def default_output() -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
    return backup_directory() / f"salvage_{stamp}.sqlite3"


def salvage_database(
    source: str | os.PathLike | None = None,
    *,
    output: str | os.PathLike | None = None,
    database: str = DEFAULT_DB_ALIAS,
) -> SalvageResult:
    """Recover every readable row of the damaged database file ``source`` (default: the live
    database's) into a new, freshly migrated file ``output``; the set-aside rows into
    ``output``.set-aside.jsonl."""
    engine = get_engine(database)
    output = Path(output) if output else default_output()
    started, t0 = timezone.now(), time.monotonic()
    result = engine.salvage(
        Path(source) if source is not None else None, output, lambda path: _migrated_file(database, path)
    )
    result.duration_ms = to_ms(time.monotonic() - t0)
    _log_into_output(result, database, started)
    return result


def _log_into_output(result: SalvageResult, database: str, started) -> None:
    """The operations log entry goes into the salvaged file, never into the damaged one
    (a restore of the salvage carries it over into the live database)."""
    record = OperationRecord(
        operation="salvage",
        database=database,
        actor=os_user(),
        file=result.output,
        message=f"salvaged {sum(t.recovered for t in result.tables)} rows from {Path(result.source).name}",
        details={"source": result.source, "complete": result.complete, "tables": [asdict(t) for t in result.tables]},
    )
    with scratch_alias(database, result.output) as alias:
        write_entry(record, started, result.duration_ms / 1000, alias)


def compare_with_backup(
    salvaged: str | os.PathLike, backup: str | os.PathLike, database: str = DEFAULT_DB_ALIAS
) -> list[TableComparison]:
    """Rows only in the salvage, only in the backup, and differing, per data table (by id).

    The backup goes through restore's checks (manifest, checksum, structure) and is loaded
    into a scratch first; a backup that fails them is refused, never read.
    """
    path = resolve_source(backup, latest=False, database=database)
    engine = get_engine(database)

    def load_backup():
        checks = Checks()
        manifest = check_file(path, engine, True, checks)
        return loaded_scratch(engine, path, manifest, checks)

    return engine.compare_salvage(Path(salvaged), load_backup)


def iter_set_aside(path: str | os.PathLike) -> Iterator[dict]:
    """The rows a salvage set aside, one dict each."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)
