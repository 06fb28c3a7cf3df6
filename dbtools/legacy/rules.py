"""Every row of the source checked in Python against our rules, as it is read: the same rules
the models and ``validate`` apply, so ``validate`` is clean after an import."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from accounts.hashers import check_werkzeug_hash, stored_password
from accounts.models import USERNAME_CHARS, USERNAME_MAX, USERNAME_MIN
from servers.models import (
    CONFIG_KEY_CHARS,
    MEMORY_MAX,
    MEMORY_MIN,
    PORT_MAX,
    PORT_MIN,
    SERVER_NAME_CHARS,
    Difficulty,
    Gamemode,
    ServerStatus,
)

from .report import ACTIVE, RowProblem

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


def jsonable(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return value


# --- the rules ---------------------------------------------------------------------------


class Checker:
    """Collects the problems of each row; a row with any problem is quarantined."""

    def __init__(self, now: datetime):

        self.problems: dict[tuple[str, object], list[RowProblem]] = {}
        self.latest = now + timedelta(minutes=5)  # validate's tolerance for clock drift

    def bad(self, table: str, row_id, rule: str, value, message: str) -> None:
        self.problems.setdefault((table, row_id), []).append(RowProblem(table, row_id, rule, jsonable(value), message))

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


def check_users(rows: list[tuple], checker: Checker) -> list[tuple]:
    """Users as our column tuples: (id, password, last_login, username, email, is_admin, is_active, date_joined)."""

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


def check_servers(rows: list[tuple], checker: Checker, user_ids: set) -> list[tuple]:
    """Servers as our column tuples, in SERVER_COLUMNS' order (timestamps filled in when written)."""

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


def check_configs(rows: list[tuple], checker: Checker, user_ids: set) -> list[tuple]:
    """Configuration entries as (id, key, value, description, updated_by, updated_at)."""

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
