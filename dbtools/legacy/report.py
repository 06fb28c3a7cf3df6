"""The import's vocabulary: the legacy tables, what is not carried over, the report of an import and its row problems."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import DbtoolsError

Progress = Callable[[str, int, int], None]

LEGACY_TABLES = ("user", "server", "configuration")
# The columns of the Flask models; a table lacking any of them is not the old schema.
LEGACY_COLUMNS = {
    "user": ["id", "username", "password_hash", "is_admin", "email", "created_at", "last_login", "is_active"],
    "server": [
        "id",
        "server_name",
        "version",
        "port",
        "status",
        "pid",
        "level_seed",
        "gamemode",
        "difficulty",
        "hardcore",
        "pvp",
        "spawn_monsters",
        "motd",
        "memory_mb",
        "owner_id",
    ],
    "configuration": ["id", "key", "value", "updated_at", "updated_by"],
}
NOT_CARRIED = {
    "server.pid": "dropped (the process id of a server on the old machine means nothing here)",
    "server.spawn_monsters": "our Server model has no place for it",
}
NOTES = {
    "server.level_seed": "kept as Server.seed",
    "server.created_at": "the old application kept no creation time: set to the import time",
    "user.password_hash": "kept as werkzeug$<hash> (a scrypt digest cut to its first 256 bits to fit the column); "
    "rehashed with Django's default at each user's first login",
    "timestamps": "the old application stored naive UTC times: imported as UTC",
}
BATCH_SIZE = 5_000
ACTIVE = ("Running", "Starting")


class ImportRefused(DbtoolsError):
    """Invalid rows (without --skip-invalid) or collisions: nothing was written (exit 1)."""

    def __init__(self, message: str, report: ImportReport):
        super().__init__(message)
        self.report = report


@dataclass
class RowProblem:
    """One row that breaks one of our rules, or collides with a row already here."""

    table: str
    id: object
    rule: str
    value: object
    message: str

    def as_dict(self) -> dict:
        return {"table": self.table, "id": self.id, "rule": self.rule, "value": self.value, "message": self.message}

    def line(self) -> str:
        return f"{self.table} {self.id}: {self.rule}: {self.value!r} ({self.message})"


@dataclass
class ImportReport:
    """What an import found and did; the command prints it, --json dumps ``as_dict()``."""

    source: str
    database: str
    revision: str | None = None
    dry_run: bool = False
    skip_invalid: bool = False
    source_rows: dict[str, int] = field(default_factory=dict)
    imported: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    problems: list[RowProblem] = field(default_factory=list)
    collisions: list[RowProblem] = field(default_factory=list)
    not_carried: dict[str, str] = field(default_factory=lambda: dict(NOT_CARRIED))
    notes: dict[str, str] = field(default_factory=lambda: dict(NOTES))
    backup: str | None = None
    report_file: str | None = None
    quarantine_file: str | None = None
    written: bool = False
    duration_ms: int = 0

    @property
    def invalid_rows(self) -> int:
        return sum(self.quarantined.values())

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "database": self.database,
            "revision": self.revision,
            "dry_run": self.dry_run,
            "skip_invalid": self.skip_invalid,
            "written": self.written,
            "source_rows": self.source_rows,
            "imported": self.imported,
            "quarantined": self.quarantined,
            "problems": [p.as_dict() for p in self.problems],
            "collisions": [c.as_dict() for c in self.collisions],
            "not_carried": self.not_carried,
            "notes": self.notes,
            "backup": self.backup,
            "report_file": self.report_file,
            "quarantine_file": self.quarantine_file,
            "duration_ms": self.duration_ms,
        }
