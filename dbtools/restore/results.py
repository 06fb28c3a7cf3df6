"""What a restore, a ``restore --check`` and an interactive confirmation report.

Plain dataclasses: the command prints them, ``--json`` and the Python API read
``as_dict()``. Durations are ``duration_ms``, an int of milliseconds (dbtools.formatting).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..engines.results import Check

# Tables shown in the confirmation and the summary (the others are Django's own).
SHOWN_PREFIXES = ("accounts_", "servers_", "dbtools_")

# A progress callback: one short line per stage ("checking the file", "swapping", ...).
Progress = Callable[[str], None]


def format_counts(counts: dict[str, int]) -> str:
    """The row counts of mcmanager's own tables in one line, for people."""
    shown = {t: n for t, n in sorted(counts.items()) if t.startswith(SHOWN_PREFIXES)}
    if not shown:
        return "no mcmanager tables"
    return ", ".join(f"{t} {n}" for t, n in shown.items())


@dataclass
class RestoreCheckResult:
    """What ``restore --check`` found: would this backup restore?"""

    path: str
    database: str
    engine: str
    ok: bool = False
    reason: str = ""
    checks: list[Check] = field(default_factory=list)
    backup_created_at: str | None = None
    row_counts: dict[str, int] = field(default_factory=dict)
    pending_migrations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    duration_ms: int = 0

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "reason": self.reason,
            "notes": self.notes,
            "path": self.path,
            "database": self.database,
            "engine": self.engine,
            "backup_created_at": self.backup_created_at,
            "checks": [c.as_dict() for c in self.checks],
            "row_counts": self.row_counts,
            "pending_migrations": self.pending_migrations,
            "duration_ms": self.duration_ms,
        }


@dataclass
class RestoreResult:
    """What a restore did."""

    path: str
    database: str
    engine: str
    backup_created_at: str | None = None
    backup_reason: str | None = None
    safety_backup: str | None = None
    swap: str = ""
    rows_before: dict[str, int] = field(default_factory=dict)
    rows_after: dict[str, int] = field(default_factory=dict)
    migrations_applied: list[str] = field(default_factory=list)
    operations_carried: int = 0
    validation_ok: bool | None = None
    validation: dict | None = None
    checks: list[Check] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    duration_ms: int = 0
    # The validation of the scratch run during the swap (SQLite), stored as the live database's.
    scratch_validation: object = field(default=None, repr=False)

    def as_dict(self) -> dict:
        return {
            "ok": True,
            "path": self.path,
            "database": self.database,
            "engine": self.engine,
            "backup_created_at": self.backup_created_at,
            "backup_reason": self.backup_reason,
            "safety_backup": self.safety_backup,
            "swap": self.swap,
            "rows_before": self.rows_before,
            "rows_after": self.rows_after,
            "migrations_applied": self.migrations_applied,
            "operations_carried": self.operations_carried,
            "validation_ok": self.validation_ok,
            "validation": self.validation,
            "checks": [c.as_dict() for c in self.checks],
            "warnings": self.warnings,
            "duration_ms": self.duration_ms,
        }


@dataclass
class RestorePlan:
    """What an interactive restore asks the operator to confirm."""

    database: str
    target: str
    path: str
    backup_created_at: str | None
    backup_reason: str | None
    rows_now: dict[str, int]
    rows_backup: dict[str, int]
    pending_migrations: list[str]
    safety_backup: bool
    backup_of: str = ""  # backups.foreign_source_note: the backup is another database's

    def describe(self) -> str:
        created = self.backup_created_at or "unknown time (no manifest)"
        reason = f", reason {self.backup_reason}" if self.backup_reason else ""
        lines = [
            f"Restore will REPLACE database '{self.database}' ({self.target}).",
            f"  now:    {format_counts(self.rows_now)}",
            f"  backup: {Path(self.path).name}, made {created}{reason}",
            f"          {format_counts(self.rows_backup)}",
        ]
        if self.backup_of:
            lines.append(f"  NOTE: {self.backup_of}")
        if self.pending_migrations:
            lines.append(f"  then {len(self.pending_migrations)} pending migration(s) are applied to it")
        if self.safety_backup:
            lines.append("A safety backup of the current database is taken first.")
        else:
            lines.append("NO safety backup is taken (--no-safety-backup): the current data will be gone.")
        return "\n".join(lines)
