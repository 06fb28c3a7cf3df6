"""The operations log: every backup, restore, validate, migrate and admin action."""

import getpass
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.db import DEFAULT_DB_ALIAS
from django.utils import timezone

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
    from .errors import RestoreRefused

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
        write_entry(record, started, time.monotonic() - t0, log_alias or database)


def write_entry(record: OperationRecord, started, seconds: float, alias: str) -> None:
    from .models import OperationLog

    try:
        OperationLog.objects.using(alias).create(
            started_at=started,
            finished_at=timezone.now(),
            operation=record.operation,
            actor=record.actor[:150],
            database=record.database,
            outcome=record.outcome,
            duration_ms=int(seconds * 1000),
            file=record.file[:1024],
            checksum=record.checksum,
            message=record.message,
            details=record.details,
        )
    except Exception as exc:  # the table may not exist yet (before migrate) or the db is gone
        logger.warning("could not write the operations log: %s", exc)
