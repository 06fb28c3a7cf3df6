"""Moving in from the Flask-era mcServerManager: ``import_legacy``.

The old application kept SQLAlchemy tables ``user``, ``server`` and ``configuration``
(plus ``alembic_version``), with looser rules than ours and checks only in Python. An
import reads the whole source (never writing it), checks every row against our rules
and against the rows already here, and only then writes, in one transaction:

- a row that breaks one of our rules is reported (table, id, rule, value); without
  ``skip_invalid`` nothing is written; with it the row is written to a quarantine file
  (JSON lines) instead, and so is every row that depends on it (the servers of a
  quarantined user), so imported + quarantined = the source's rows;
- a row that collides with one already here (same id, username, email, server name,
  key, or a port a running server holds) is never overwritten: the import stops;
- ids are kept (every reference holds), sequences are moved past them, Werkzeug
  password hashes are kept behind ``accounts.hashers.WerkzeugPasswordHasher``.

Rows are checked in Python as they are read (the source is another database; no SQL of
ours runs there), with the same rules the models and ``validate`` apply, so that
``validate`` is clean after an import.
"""

from __future__ import annotations

import gc
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.color import no_style
from django.core.validators import validate_email
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.db.models.functions import Lower
from django.utils import timezone

from .errors import CouldNotRun, DbtoolsError
from .oplog import record_operation

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
    duration: float = 0.0

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
            "duration_seconds": round(self.duration, 3),
        }


# --- reading and recognising the source ---------------------------------------------


def recognise(source) -> str | None:
    """Check the Flask schema is there; return its Alembic revision (None without the table)."""
    tables = source.tables()
    missing = [t for t in LEGACY_TABLES if t not in tables]
    if missing:
        raise CouldNotRun(
            f"{source.describe()} is not a Flask-era mcServerManager database: "
            f"table{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing"
        )
    if "django_migrations" in tables:
        raise CouldNotRun(f"{source.describe()} is a mcmanager (Django) database, not a Flask-era one: use restore")
    for table in LEGACY_TABLES:
        present = set(source.columns(table))
        lacking = [c for c in LEGACY_COLUMNS[table] if c not in present]
        if lacking:
            raise CouldNotRun(
                f"{source.describe()} is not a Flask-era mcServerManager database: "
                f"table {table} lacks column{'s' if len(lacking) > 1 else ''} {', '.join(lacking)}"
            )
    if "alembic_version" not in tables:
        return None
    return ", ".join(str(row[0]) for row in source.rows("alembic_version", ["version_num"], order_by=None)) or None


# --- value conversion ------------------------------------------------------------------


def _as_int(value) -> int | None:
    if type(value) is int:
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return None


_BOOLS = {0: False, 1: True}  # True and False hash as 1 and 0: they are found too


def _as_bool(value, default: bool) -> bool | None:
    """SQLAlchemy's Boolean: 0/1 in SQLite and MariaDB, a boolean in PostgreSQL; None is the default."""
    if type(value) in (int, bool) and value in _BOOLS:
        return _BOOLS[value]
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    number = _as_int(value)
    if number in (0, 1):
        return bool(number)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


class _BadValue(Exception):
    pass


def _as_datetime(value) -> datetime | None:
    """A naive time is UTC (SQLAlchemy's datetime.utcnow); an aware one is converted to UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _BadValue from None
    else:
        raise _BadValue
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _jsonable(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return value


# --- the rules ---------------------------------------------------------------------------


class _Checker:
    """Collects the problems of each row; a row with any problem is quarantined."""

    def __init__(self, now: datetime):
        from datetime import timedelta

        self.problems: dict[tuple[str, object], list[RowProblem]] = {}
        self.latest = now + timedelta(minutes=5)  # validate's tolerance for clock drift

    def bad(self, table: str, row_id, rule: str, value, message: str) -> None:
        self.problems.setdefault((table, row_id), []).append(RowProblem(table, row_id, rule, _jsonable(value), message))

    def check_id(self, table: str, row_id) -> None:
        # SQLite's INTEGER PRIMARY KEY is always one; another engine's column may hold anything.
        if type(row_id) is not int:
            self.bad(table, row_id, "id_valid", row_id, "an id is a whole number")

    def is_bad(self, table: str, row_id) -> bool:
        return (table, row_id) in self.problems

    def when(self, table: str, row_id, column: str, value) -> datetime | None:
        try:
            when = _as_datetime(value)
        except _BadValue:
            self.bad(table, row_id, f"{column}_valid", value, "not a date and time")
            return None
        if when is not None and when > self.latest:
            self.bad(table, row_id, f"{column}_not_in_future", value, "in the future")
        return when

    def first_of_each(self, table: str, keyed: list[tuple], rule: str, message: str) -> None:
        """Of rows sharing a key, the lowest id is kept; each later one breaks ``rule``."""
        seen: dict = {}
        for row_id, key, value in keyed:
            if key is None:
                continue
            first = seen.setdefault(key, row_id)
            if first != row_id:
                self.bad(table, row_id, rule, value, message.format(first=first))


def _name_pattern(low: int, high: int, chars: str):
    """One compiled match for a name's length and characters together: it runs once per row."""
    return re.compile(f"[{chars}]{{{low},{high}}}").fullmatch


def _name_rule(value, match) -> bool:
    return type(value) is str and match(value) is not None


def _check_users(rows: list[tuple], checker: _Checker) -> list[tuple]:
    """Users as our column tuples: (id, password, last_login, username, email, is_admin, is_active, date_joined)."""
    from accounts.hashers import check_werkzeug_hash, stored_password
    from accounts.models import USERNAME_CHARS, USERNAME_MAX, USERNAME_MIN

    username_ok = _name_pattern(USERNAME_MIN, USERNAME_MAX, USERNAME_CHARS)
    out = []
    for row in rows:
        row_id, username, password_hash, is_admin, email, created_at, last_login, is_active = row
        checker.check_id("user", row_id)
        if not _name_rule(username, username_ok):
            checker.bad(
                "user", row_id, "username_valid", username, "a username is 3 to 80 characters: letters, digits, _ and -"
            )
        email = email.strip() if isinstance(email, str) else email
        if email is not None and not isinstance(email, str):
            checker.bad("user", row_id, "email_valid", email, "not a valid email address")
        elif email:
            try:
                validate_email(email)
                if len(email) > 254:
                    raise ValidationError("too long")
            except ValidationError:
                checker.bad("user", row_id, "email_valid", email, "not a valid email address")
        problem = check_werkzeug_hash(password_hash) if password_hash else None
        if problem:
            checker.bad("user", row_id, "password_hash_format", _masked(password_hash), problem)
        admin = _as_bool(is_admin, False)
        active = _as_bool(is_active, True)
        for name, value, parsed in (("is_admin", is_admin, admin), ("is_active", is_active, active)):
            if parsed is None:
                checker.bad("user", row_id, f"{name}_valid", value, "not a boolean")
        joined = checker.when("user", row_id, "created_at", created_at)
        login = checker.when("user", row_id, "last_login", last_login)
        password = stored_password(password_hash) if password_hash else "!legacy-import-no-password"
        out.append((row_id, password, login, username, email or None, admin, active, joined))
    checker.first_of_each(
        "user",
        [(r[0], r[3].lower() if isinstance(r[3], str) else None, r[3]) for r in out],
        "username_unique_ignoring_case",
        "the same username as user {first}, ignoring case",
    )
    checker.first_of_each(
        "user",
        [(r[0], r[4].lower() if r[4] else None, r[4]) for r in out],
        "email_unique_ignoring_case",
        "the same email as user {first}, ignoring case",
    )
    return out


def _masked(password_hash) -> str:
    text = str(password_hash)
    return text if len(text) <= 12 else text[:12] + "..."


def _check_servers(rows: list[tuple], checker: _Checker, user_ids: set) -> list[tuple]:
    """Servers as our column tuples, in SERVER_COLUMNS' order (timestamps filled in when written)."""
    from servers.models import (
        MEMORY_MAX,
        MEMORY_MIN,
        PORT_MAX,
        PORT_MIN,
        SERVER_NAME_CHARS,
        Difficulty,
        Gamemode,
        ServerStatus,
    )

    statuses, gamemodes, difficulties = set(ServerStatus.values), set(Gamemode.values), set(Difficulty.values)
    name_ok = _name_pattern(3, 150, SERVER_NAME_CHARS)
    out = []
    for row in rows:
        (row_id, name, version, port, status, _pid, level_seed, gamemode, difficulty, hardcore, pvp, _spawn,
         motd, memory_mb, owner_id) = row  # fmt: skip
        t = "server"
        checker.check_id(t, row_id)
        if not _name_rule(name, name_ok):
            checker.bad(
                t, row_id, "server_name_valid", name, "a server name is 3 to 150 characters: letters, digits, _ and -"
            )
        port_n = port if type(port) is int else _as_int(port)
        if port_n is None or not PORT_MIN <= port_n <= PORT_MAX:
            checker.bad(t, row_id, "port_range", port, f"the port must be between {PORT_MIN} and {PORT_MAX}")
        memory = memory_mb if type(memory_mb) is int else _as_int(memory_mb)
        if memory is None or not MEMORY_MIN <= memory <= MEMORY_MAX:
            checker.bad(
                t, row_id, "memory_range", memory_mb, f"memory must be between {MEMORY_MIN} and {MEMORY_MAX} MB"
            )
        if status not in statuses:
            checker.bad(t, row_id, "status_valid", status, "status must be Running, Stopped, Starting or Stopping")
        if gamemode not in gamemodes:
            checker.bad(
                t, row_id, "gamemode_valid", gamemode, "gamemode must be survival, creative, adventure or spectator"
            )
        if difficulty not in difficulties:
            checker.bad(t, row_id, "difficulty_valid", difficulty, "difficulty must be peaceful, easy, normal or hard")
        if not isinstance(version, str) or not 1 <= len(version) <= 32:
            checker.bad(t, row_id, "version_valid", version, "a version is 1 to 32 characters")
        seed = "" if level_seed is None else level_seed if type(level_seed) is str else str(level_seed)
        if len(seed) > 64:
            checker.bad(t, row_id, "level_seed_length", level_seed, "a seed is at most 64 characters")
        motd = "" if motd is None else motd
        if not isinstance(motd, str) or len(motd) > 255:
            checker.bad(t, row_id, "motd_length", motd, "a message of the day is at most 255 characters")
        is_hardcore, has_pvp = _as_bool(hardcore, False), _as_bool(pvp, True)
        if is_hardcore is None:
            checker.bad(t, row_id, "hardcore_valid", hardcore, "not a boolean")
        if has_pvp is None:
            checker.bad(t, row_id, "pvp_valid", pvp, "not a boolean")
        owner = owner_id if type(owner_id) is int else _as_int(owner_id)
        if owner is None or owner not in user_ids:
            checker.bad(t, row_id, "owner_exists", owner_id, "its owner is not a user of the source")
        elif checker.is_bad("user", owner):
            rules = ", ".join(p.rule for p in checker.problems[("user", owner)])
            checker.bad(t, row_id, "owner_quarantined", owner, f"its owner, user {owner}, is quarantined ({rules})")
        out.append(
            (row_id, name, owner, port_n, memory, status, gamemode, difficulty, version, motd, seed, 20, is_hardcore,
             has_pvp)
        )  # fmt: skip
    checker.first_of_each(
        "server",
        [(r[0], r[1].lower() if isinstance(r[1], str) else None, r[1]) for r in out],
        "server_name_unique_ignoring_case",
        "the same name as server {first}, ignoring case",
    )
    # Of the servers otherwise good, only one may be Running or Starting on a port.
    checker.first_of_each(
        "server",
        [(r[0], r[3], r[3]) for r in out if r[5] in ACTIVE and not checker.is_bad("server", r[0])],
        "active_port_unique",
        "server {first} is already Running or Starting on this port",
    )
    return out


def _check_configs(rows: list[tuple], checker: _Checker, user_ids: set) -> list[tuple]:
    """Configuration entries as (id, key, value, description, updated_by, updated_at)."""
    from servers.models import CONFIG_KEY_CHARS

    key_ok = _name_pattern(1, 100, CONFIG_KEY_CHARS)
    out = []
    for row_id, key, value, updated_at, updated_by in rows:
        t = "configuration"
        checker.check_id(t, row_id)
        if not _name_rule(key, key_ok):
            checker.bad(t, row_id, "key_valid", key, "a key is 1 to 100 characters: letters, digits, . _ and -")
        if value is None or value == "":
            checker.bad(t, row_id, "value_not_empty", value, "the value must not be empty")
        author = _as_int(updated_by)
        if updated_by is not None and (author is None or author not in user_ids):
            checker.bad(t, row_id, "updated_by_exists", updated_by, "its author is not a user of the source")
        elif author is not None and checker.is_bad("user", author):
            rules = ", ".join(p.rule for p in checker.problems[("user", author)])
            checker.bad(
                t, row_id, "updated_by_quarantined", author, f"its author, user {author}, is quarantined ({rules})"
            )
        when = checker.when(t, row_id, "updated_at", updated_at)
        out.append((row_id, key, value if value is None else str(value), "", author, when))
    checker.first_of_each(
        "configuration",
        [(r[0], r[1].lower() if isinstance(r[1], str) else None, r[1]) for r in out],
        "key_unique_ignoring_case",
        "the same key as entry {first}, ignoring case",
    )
    return out


# --- collisions with the rows already here -----------------------------------------------


def _collisions(database: str, users: list, servers: list, configs: list) -> list[RowProblem]:
    """Rows of the import that would overwrite or clash with rows already in ``database``."""
    from accounts.models import User
    from servers.models import Configuration, Server

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


def _write(database: str, users, servers, configs, progress: Progress | None) -> None:
    from accounts.models import User
    from dbtools.demo.writer import BulkWriter as _Writer
    from servers.models import Configuration, Server

    connection = connections[database]
    adapt = connection.ops.adapt_datetimefield_value
    now = timezone.now()
    now_db = adapt(now)
    writer = _Writer(database)
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


def _require_schema(database: str) -> None:
    from accounts.models import User
    from servers.models import Configuration, Server

    connection = connections[database]
    try:
        tables = set(connection.introspection.table_names())
    except DatabaseError as exc:
        raise CouldNotRun(f"cannot reach database '{database}': {str(exc).strip().splitlines()[0]}") from None
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


def _write_report_files(report: ImportReport, quarantined: list[dict], directory: Path) -> None:
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


# --- the service ------------------------------------------------------------------------


def import_legacy(
    source: str,
    *,
    database: str = DEFAULT_DB_ALIAS,
    dry_run: bool = False,
    skip_invalid: bool = False,
    report_dir=None,
    progress: Progress | None = None,
    actor: str | None = None,
) -> ImportReport:
    """Import a Flask-era database (a SQLite path or a URL) into ``database``.

    Raises CouldNotRun (exit 2: the source cannot be read or is not the old schema, the
    target is unreachable or unmigrated) or ImportRefused (exit 1: invalid rows without
    ``skip_invalid``, or collisions; nothing was written). The report is also on the
    exception (``exc.report``) so the command can print it.
    """

    started = time.monotonic()
    if database not in connections:
        raise CouldNotRun(f"no database '{database}' in DATABASES")
    _require_schema(database)
    # Millions of new tuples would set off the cyclic garbage collector again and again for nothing.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        if dry_run:
            return _import(source, database, dry_run, skip_invalid, report_dir, progress, actor, started)
        # Every real import is logged with its counts, a refused one too (outcome failure).
        with record_operation("import_legacy", database=database, actor=actor) as record:
            try:
                report = _import(source, database, dry_run, skip_invalid, report_dir, progress, actor, started)
            except ImportRefused as exc:
                _log_details(record, exc.report)
                raise
            _log_details(record, report)
            record.message = (
                f"imported {sum(report.imported.values())} rows, quarantined {report.invalid_rows} from {report.source}"
            )
            return report
    finally:
        if gc_was_enabled:
            gc.enable()


def _log_details(record, report: ImportReport) -> None:
    record.file = report.source  # the source as describe() says it: never a URL's password
    record.details = {
        "source": report.source,
        "revision": report.revision,
        "source_rows": report.source_rows,
        "imported": report.imported if report.written else {t: 0 for t in LEGACY_TABLES},
        "quarantined": report.quarantined,
        "problems": len(report.problems),
        "collisions": len(report.collisions),
        "backup": report.backup,
        "quarantine_file": report.quarantine_file,
        "report_file": report.report_file,
    }


def _import(source, database, dry_run, skip_invalid, report_dir, progress, actor, started) -> ImportReport:
    from .engines.legacy import open_legacy_source

    # Rows are checked as they stream in: the source's own tuples never sit in memory whole.
    with open_legacy_source(source) as src:
        report = ImportReport(source=src.describe(), database=database, dry_run=dry_run, skip_invalid=skip_invalid)
        report.revision = recognise(src)
        checker = _Checker(timezone.now())
        users = _check_users(src.rows("user", LEGACY_COLUMNS["user"]), checker)
        user_ids = {r[0] for r in users}
        servers = _check_servers(src.rows("server", LEGACY_COLUMNS["server"]), checker, user_ids)
        configs = _check_configs(src.rows("configuration", LEGACY_COLUMNS["configuration"]), checker, user_ids)
        order = {t: i for i, t in enumerate(LEGACY_TABLES)}
        report.problems = sorted(
            (p for problems in checker.problems.values() for p in problems),
            key=lambda p: (order[p.table], str(type(p.id)), p.id),
        )
        # The quarantine file holds the source's rows as they are: read again, those only.
        raw = {t: _bad_rows(src, t, checker) for t in LEGACY_TABLES}
    report.source_rows = {"user": len(users), "server": len(servers), "configuration": len(configs)}

    good = {
        "user": [r for r in users if not checker.is_bad("user", r[0])],
        "server": [r for r in servers if not checker.is_bad("server", r[0])],
        "configuration": [r for r in configs if not checker.is_bad("configuration", r[0])],
    }
    report.imported = {t: len(rows) for t, rows in good.items()}
    report.quarantined = {t: report.source_rows[t] - report.imported[t] for t in LEGACY_TABLES}
    report.collisions = _collisions(database, good["user"], good["server"], good["configuration"])
    report.duration = time.monotonic() - started
    if report.collisions:
        raise ImportRefused(
            f"{len(report.collisions)} rows collide with rows already in database '{database}'; nothing was imported",
            report,
        )
    if report.problems and not skip_invalid:
        raise ImportRefused(
            f"{report.invalid_rows} rows break our rules ({len(report.problems)} problems); nothing was imported "
            "(--skip-invalid imports the others and quarantines these)",
            report,
        )
    if dry_run:
        return report
    _run_import(report, raw, checker, good, database, report_dir, progress, actor)
    report.duration = time.monotonic() - started
    return report


def _bad_rows(src, table: str, checker: _Checker) -> list[tuple]:
    bad = {row_id for t, row_id in checker.problems if t == table}
    return [row for row in src.rows(table, LEGACY_COLUMNS[table]) if row[0] in bad] if bad else []


def _run_import(report, raw, checker, good, database, report_dir, progress, actor) -> None:
    from .backup import create_backup
    from .locks import database_lock

    quarantined = [
        {
            "table": table,
            "id": row[0],
            "problems": [p.as_dict() for p in checker.problems[(table, row[0])]],
            "row": {c: _jsonable(v) for c, v in zip(LEGACY_COLUMNS[table], row, strict=True)},
        }
        for table in LEGACY_TABLES
        for row in raw[table]
    ]
    with database_lock(database, "import"):
        backup = create_backup(database=database, reason="pre-import", actor=actor, take_lock=False)
        report.backup = str(backup.path)
        try:
            with transaction.atomic(using=database):
                _write(database, good["user"], good["server"], good["configuration"], progress)
                # Inside the transaction: no import without its quarantine file and report.
                report.written = True
                _write_report_files(report, quarantined, report_directory(report_dir))
        except DatabaseError as exc:
            report.written = False
            for path in (report.report_file, report.quarantine_file):
                if path:
                    Path(path).unlink(missing_ok=True)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DbtoolsError(f"the database refused the import ({first}); nothing was imported") from None
