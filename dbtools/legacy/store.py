"""What an import writes: the collisions with rows already here, the rows themselves (in one
transaction, ids kept, sequences moved past them), and the report and quarantine files."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.management.color import no_style
from django.db import DatabaseError, connections
from django.db.models.functions import Lower
from django.utils import timezone

from accounts.models import User
from servers.models import Configuration, Server

from ..demo.writer import BulkWriter
from ..errors import CouldNotRun
from ..formatting import first_line
from .report import ACTIVE, BATCH_SIZE, ImportReport, Progress, RowProblem

# --- collisions with the rows already here -----------------------------------------------


def collisions(database: str, users: list, servers: list, configs: list) -> list[RowProblem]:
    """Rows of the import that would overwrite or clash with rows already in ``database``."""

    found: list[RowProblem] = []

    def existing(model, *fields):
        manager = model._base_manager.using(database)
        if not manager.exists():
            return None
        return list(
            manager.annotate(**{f"_k{i}": Lower(f) for i, f in enumerate(fields)}).values_list(
                "pk", *[f"_k{i}" for i in range(len(fields))]
            )
        )

    def clash(table, rows, present, columns):
        if present is None:
            return
        ids = {r[0] for r in present}
        keys = [{r[i + 1] for r in present if r[i + 1] is not None} for i in range(len(columns))]
        for row in rows:
            if row[0] in ids:
                found.append(
                    RowProblem(table, row[0], "id_taken", row[0], f"a {table} with id {row[0]} is already here")
                )
            for (name, index), taken in zip(columns, keys, strict=True):
                value = row[index]
                if isinstance(value, str) and value.lower() in taken:
                    found.append(
                        RowProblem(table, row[0], f"{name}_taken", value, f"a {table} with this {name} is already here")
                    )

    clash("user", users, existing(User, "username", "email"), [("username", 3), ("email", 4)])
    clash("server", servers, existing(Server, "server_name"), [("server_name", 1)])
    clash("configuration", configs, existing(Configuration, "key"), [("key", 1)])
    if servers:
        busy = set(
            Server._base_manager.using(database)
            .filter(status__in=ACTIVE, status__in_exact=list(ACTIVE))
            .values_list("port", flat=True)
            .distinct()
        )
        for row in servers:
            if row[5] in ACTIVE and row[3] in busy:
                found.append(
                    RowProblem(
                        "server", row[0], "port_in_use", row[3], "a server here is Running or Starting on this port"
                    )
                )
    return found


# --- writing ------------------------------------------------------------------------------

USER_COLUMNS = ["id", "password", "last_login", "username", "email", "is_admin", "is_active", "date_joined"]
SERVER_COLUMNS = ["id", "server_name", "owner", "port", "memory_mb", "status", "gamemode", "difficulty", "version",
                  "motd", "seed", "max_players", "hardcore", "pvp", "created_at", "updated_at"]  # fmt: skip
CONFIG_COLUMNS = ["id", "key", "value", "description", "updated_by", "updated_at"]


def _insert(writer, model, columns: list[str], rows, progress: Progress | None, label: str, convert) -> int:
    """Bulk INSERT in batches of BATCH_SIZE, explicit ids, the fastest way the engine offers.

    The demo-data generator's writer: COPY on PostgreSQL, executemany elsewhere, and on
    SQLite the table's secondary indexes rebuilt once after its rows (inside this
    transaction, so a failure rolls them back with the rows). CHECKs and foreign keys
    stay enforced: the database still refuses what our checks would have missed.
    """
    total = len(rows)
    with writer.loading(model):
        for start in range(0, total, BATCH_SIZE):
            writer.write(model, columns, [convert(row) for row in rows[start : start + BATCH_SIZE]])
            if progress:
                progress(label, min(start + BATCH_SIZE, total), total)
    return total


def write_rows(database: str, users, servers, configs, progress: Progress | None) -> None:
    connection = connections[database]
    adapt = connection.ops.adapt_datetimefield_value
    now = timezone.now()
    now_db = adapt(now)
    writer = BulkWriter(database)
    # Each batch is converted as it is written: the converted copy never exists whole.
    _insert(
        writer,
        User,
        USER_COLUMNS,
        users,
        progress,
        "user",
        lambda r: (*r[:2], adapt(r[2]) if r[2] else None, *r[3:7], adapt(r[7] or now)),
    )
    _insert(writer, Server, SERVER_COLUMNS, servers, progress, "server", lambda r: (*r, now_db, now_db))
    _insert(writer, Configuration, CONFIG_COLUMNS, configs, progress, "configuration",
            lambda r: (*r[:5], adapt(r[5] or now)))  # fmt: skip
    statements = connection.ops.sequence_reset_sql(no_style(), [User, Server, Configuration])
    if statements:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)


def require_schema(database: str) -> None:

    connection = connections[database]
    try:
        tables = set(connection.introspection.table_names())
    except DatabaseError as exc:
        raise CouldNotRun(f"cannot reach database '{database}': {first_line(exc)}") from None
    missing = [m._meta.db_table for m in (User, Server, Configuration) if m._meta.db_table not in tables]
    if missing:
        raise CouldNotRun(
            f"database '{database}' lacks tables {', '.join(missing)}: run python manage.py migrate first"
        )


def _private_file(path: Path, lines) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        for line in lines:
            fh.write(line + "\n")


def report_directory(report_dir=None) -> Path:
    """Where reports and quarantine files go: ``report_dir``, else ``<backup dir>/imports`` (0700)."""
    return Path(report_dir) if report_dir else Path(settings.MCMANAGER_BACKUP_DIR) / "imports"


def write_report_files(report: ImportReport, quarantined: list[dict], directory: Path) -> None:
    """The report (JSON) and, when rows were left out, the quarantine file (JSON lines): private files."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        stem = f"import_legacy_{datetime.now(UTC):%Y%m%d_%H%M%S}_{os.getpid()}"
        if quarantined:
            path = directory / f"{stem}.quarantine.jsonl"
            _private_file(path, (json.dumps(item, default=str) for item in quarantined))
            report.quarantine_file = str(path)
        report.report_file = str(directory / f"{stem}.report.json")
        _private_file(Path(report.report_file), [json.dumps(report.as_dict(), indent=2, default=str)])
    except OSError as exc:
        raise CouldNotRun(f"cannot write the import report in {directory}: {exc.strerror or exc}") from None
