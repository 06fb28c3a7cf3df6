"""The operations log: every backup, restore, validate, migrate and admin action.

Operations that must not write to the live database (a refused restore leaves it byte for
byte as it was; ``restore --check`` and ``backup --check`` only read) are kept in a
journal instead: ``.operations-journal.jsonl`` beside the backups, one JSON object a line.
The dashboard shows its entries with the log's, and the next operation that writes the log
moves them into it. Several databases may share the backup directory, and so the journal:
each entry records the database it is of (alias, and the engine, name and identity of
Engine.is_own, the rule backups go by too), and a database shows and moves in only its own
entries (``is_mine``), leaving the others' for theirs. The journal is read as untrusted data
(its directory is the backup directory): bounded in size, every field checked, nothing in it runs.
"""

import getpass
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS
from django.utils import timezone

from .errors import RestoreRefused
from .formatting import to_ms
from .models import OperationLog

logger = logging.getLogger("dbtools.oplog")


def os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


@dataclass
class OperationRecord:
    """What an operation fills in while it runs; written to the log when it ends."""

    operation: str
    database: str = DEFAULT_DB_ALIAS
    actor: str = ""
    file: str = ""
    checksum: str = ""
    message: str = ""
    details: dict = field(default_factory=dict)
    outcome: str = "success"


@contextmanager
def record_operation(
    operation: str,
    *,
    database: str = DEFAULT_DB_ALIAS,
    actor: str | None = None,
    log_alias: str | None = None,
) -> Iterator[OperationRecord]:
    """Log one operation with its outcome and duration, whatever happens inside.

    An exception marks the entry as a failure (``refused`` for RestoreRefused) and is
    re-raised. Failing to write the log never hides the operation's own result.
    """
    with _timed(operation, database, actor, lambda r, t, s: write_entry(r, t, s, log_alias or database)) as record:
        yield record


@contextmanager
def deferred_operation(
    entries: list, operation: str, *, database: str = DEFAULT_DB_ALIAS, actor: str | None = None
) -> Iterator[OperationRecord]:
    """Like record_operation, but the entry is appended to ``entries`` as (record, started,
    seconds) instead of written: the caller writes it with ``write_entry`` once it may touch
    the live database (restore's safety backup, taken while the backup loads), or drops it."""
    with _timed(operation, database, actor, lambda r, t, s: entries.append((r, t, s))) as record:
        yield record


@contextmanager
def _timed(operation: str, database: str, actor: str | None, write) -> Iterator[OperationRecord]:
    """An OperationRecord for the block; ``write(record, started, seconds)`` when it ends."""
    record = OperationRecord(operation=operation, database=database, actor=actor or os_user())
    started = timezone.now()
    t0 = time.monotonic()
    try:
        yield record
    except BaseException as exc:
        record.outcome = "refused" if isinstance(exc, RestoreRefused) else "failure"
        if not record.message:
            record.message = str(exc) or exc.__class__.__name__
        raise
    finally:
        write(record, started, time.monotonic() - t0)


def write_entry(record: OperationRecord, started, seconds: float, alias: str) -> None:
    try:
        OperationLog.objects.using(alias).create(
            started_at=started,
            finished_at=timezone.now(),
            operation=record.operation,
            actor=record.actor[:150],
            database=record.database,
            outcome=record.outcome,
            duration_ms=to_ms(seconds),
            file=record.file[:1024],
            checksum=record.checksum,
            message=record.message,
            details=record.details,
        )
    except Exception as exc:  # the table may not exist yet (before migrate) or the db is gone
        logger.warning("could not write the operations log: %s", exc)
        return
    merge_journal(alias)


# --- the journal of operations that leave the live database untouched --------------

JOURNAL_NAME = ".operations-journal.jsonl"
JOURNAL_MAX_BYTES = 1 << 20  # past this, new entries go to the logger only
OUTCOMES = ("success", "failure", "refused")


def journal_path() -> Path:
    """The journal beside the backups (MCMANAGER_BACKUP_DIR, read here: the log sits below
    the backup side and imports nothing of it)."""
    return Path(settings.MCMANAGER_BACKUP_DIR) / JOURNAL_NAME


@contextmanager
def journal_operation(operation: str, *, database: str = DEFAULT_DB_ALIAS, actor: str | None = None):
    """Like record_operation, for an operation that must not write the live database: the
    entry goes to the journal (and the ``dbtools.oplog`` logger)."""
    with _timed(operation, database, actor, append_journal) as record:
        yield record


def database_source(alias: str) -> dict:
    """The engine, name and identity of the database ``alias`` (Engine.is_own's terms), as a
    journal entry records them; {} when they cannot be told."""
    from .engines import get_engine  # the engines import nothing of the log

    try:
        engine = get_engine(alias)
        return {
            "engine": engine.vendor,
            "database_name": engine.backup_identity(),
            "database_identity": engine.database_identity(),
        }
    except Exception:  # an unknown alias, an unsupported vendor: the alias alone
        return {}


def append_journal(record: OperationRecord, started, seconds: float, finished=None) -> None:
    """One line in the journal; never raises (the operation's own result comes first).

    ``finished`` defaults to now."""
    entry = {
        **asdict(record),
        **database_source(record.database),
        "started_at": started.isoformat(),
        "finished_at": (finished or timezone.now()).isoformat(),
        "duration_ms": to_ms(seconds),
    }
    logger.info("%s %s: %s", record.operation, record.outcome, record.message)
    try:
        line = json.dumps(entry, default=str, separators=(",", ":")) + "\n"
    except (TypeError, ValueError) as exc:
        logger.warning("could not write the operations journal: %s", exc)
        return
    _append_lines(line, record.operation)


def _append_lines(text: str, what: str) -> bool:
    """Append whole lines to the journal in one write (O_APPEND: never interleaved with
    another process's); False (logged) when they could not be written."""
    try:
        path = journal_path()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            if os.fstat(out.fileno()).st_size > JOURNAL_MAX_BYTES:
                logger.warning("the operations journal %s is full; not journalled: %s", path, what)
                return False
            out.write(text)
    except (OSError, TypeError, ValueError) as exc:
        logger.warning("could not write the operations journal: %s", exc)
        return False
    return True


SOURCE_FIELDS = ("engine", "database_name", "database_identity")


def _entry(line: str) -> dict | None:
    """A journal line as OperationLog's fields, or None when it is not a sound entry."""
    try:
        data = json.loads(line)
        started = datetime.fromisoformat(data["started_at"])
        finished = datetime.fromisoformat(data["finished_at"])
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    texts = ("operation", "actor", "database", "file", "checksum", "message")
    if not isinstance(data, dict) or not all(isinstance(data.get(k, ""), str) for k in texts):
        return None
    if data.get("outcome") not in OUTCOMES or not isinstance(data.get("details", {}), dict):
        return None
    duration = data.get("duration_ms", 0)
    if not isinstance(duration, int) or duration < 0 or started.tzinfo is None or finished.tzinfo is None:
        return None
    source = {k: data[k] for k in SOURCE_FIELDS if k in data}
    if not all(isinstance(v, str) for v in source.values()):
        return None
    return {
        "started_at": started,
        "finished_at": finished,
        "operation": data["operation"][:32],
        "actor": data.get("actor", "")[:150],
        "database": data.get("database", DEFAULT_DB_ALIAS)[:64],
        "outcome": data["outcome"],
        "duration_ms": duration,
        "file": data.get("file", "")[:1024],
        "checksum": data.get("checksum", "")[:128],
        "message": data.get("message", "")[:10_000],
        "details": data.get("details", {}),
        "source": source,
    }


def is_mine(entry: dict, alias: str, source: dict | None = None) -> bool:
    """Whether a journal entry is of the database ``alias``: its alias, and (when the entry
    records them; older entries do not) its engine, name and identity (Engine.is_own).
    ``source``: database_source(alias), when the caller has it."""
    if entry["database"] != alias:
        return False
    recorded = entry.get("source") or {}
    if "engine" not in recorded:
        return True
    source = database_source(alias) if source is None else source
    if not source:
        return True  # this database's own terms cannot be told: the alias, as before
    from .engines import get_engine

    return get_engine(alias).is_own(
        recorded["engine"], recorded.get("database_name", ""), recorded.get("database_identity", "")
    )


def _read_entries(path: Path) -> list[tuple[str, dict]]:
    """The journal's sound entries with their lines, oldest first."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read(JOURNAL_MAX_BYTES + 4096)
    return [(line, e) for line in text.splitlines() if (e := _entry(line)) is not None]


def _log_fields(entry: dict) -> dict:
    """A journal entry as OperationLog's fields."""
    return {k: v for k, v in entry.items() if k != "source"}


def pending_journal(database: str | None = None) -> list[dict]:
    """The journal's sound entries (of ``database``, if given: ``is_mine``), oldest first; [] when none."""
    try:
        entries = [e for _, e in _read_entries(journal_path())]
    except OSError:
        return []
    if database is None:
        return [_log_fields(e) for e in entries]
    source = database_source(database)
    return [_log_fields(e) for e in entries if is_mine(e, database, source)]


def merge_journal(alias: str) -> int:
    """Move the journal's entries of ``alias`` (``is_mine``) into its operations log; returns how many.

    The journal is claimed by a rename first, so two processes never merge it twice; the
    entries of other databases go back into the journal as they were, in one append.
    """
    path = journal_path()
    claimed = path.with_name(f"{JOURNAL_NAME}.{os.getpid()}.merging")
    try:
        os.rename(path, claimed)
    except OSError:
        return 0  # no journal (the usual case), or another process has it
    try:
        entries = _read_entries(claimed)
        source = database_source(alias)
        mine = [e for _, e in entries if is_mine(e, alias, source)]
        others = [line for line, e in entries if not is_mine(e, alias, source)]
        OperationLog.objects.using(alias).bulk_create(OperationLog(**_log_fields(e)) for e in mine)
    except Exception as exc:
        os.replace(claimed, path)  # put it back for the next try
        logger.warning("could not merge the operations journal: %s", exc)
        return 0
    if not others or _append_lines("".join(line + "\n" for line in others), "entries of other databases"):
        claimed.unlink(missing_ok=True)
    else:  # kept for their own database's next log write
        logger.warning("the operations journal's other entries are kept in %s", claimed)
    return len(mine)
