"""Realistic demo data, valid by every rule, generated fast and deterministically.

``generate()`` adds users, servers and configuration entries to a migrated database.
The data respects every constraint of the models and every rule ``validate`` checks
beyond them: no two Running or Starting servers share a port (Stopped and Stopping
ones may, as real panels have many stopped servers on 25565), usernames and emails
are unique even ignoring case (an empty email is NULL), and no timestamp is in the
future. Statuses, ports, memory sizes, versions and owners vary the way a hosting
panel's do: a few users own many servers, most own a few or none.

Speed: rows are built as plain tuples and written with the DB-API cursor's
``executemany`` (``COPY`` on PostgreSQL), one transaction per batch, with explicit
ids so servers can point at their owners without reading them back. On SQLite the
users and servers, nearly all the rows, are computed by SQLite itself (``INSERT ...
SELECT``, see ``_generate_servers_sqlite``): the same rules, drawn differently, so a
seed gives other rows on SQLite than on the other engines. All demo users share one
precomputed, unusable password hash (demo accounts cannot log in).

Deterministic: the same seed on the same starting database gives the same rows.
Timestamps are relative to the start of the current UTC day (or ``now``), so two
runs on the same day are identical.
"""

from __future__ import annotations

import datetime as dt
import gc
import math
import random
import time
from array import array
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import cached_property

from django.core.management.color import no_style
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction
from django.db.models import CheckConstraint, Q

from dbtools.validation import column_check

Progress = Callable[[str, int, int], None]

# An unusable password (Django's marker prefix "!"): demo accounts exist to be
# counted, listed and backed up, never to log in with a known password.
DEMO_PASSWORD_HASH = "!mcmanager-demo-data-no-login"

YEARS_OF_HISTORY = 3
ACTIVE_STATUSES = ("Running", "Starting")
# Running/Starting servers never take more than this share of the free ports, so
# an operator can still start a server on the demo database.
MAX_ACTIVE_PORT_SHARE = 0.9

FIRST_NAMES = (
    "alex ana ben bea carl cleo dan dora eli emma finn fay gus gia hugo ida ivan "
    "jade jon kai kira leo lina max mia nico nora oli opal paul pia quin rosa sam "
    "sara theo tia uma vic vera walt wren xena yara zane zoe noah liam luca maya"
).split()
LAST_NAMES = (
    "smith jones brown taylor miller wilson moore clark lewis walker hall young king "
    "wright green baker adams nelson hill campbell mitchell roberts carter phillips "
    "evans turner torres parker collins edwards stewart morris murphy cook rogers "
    "morgan cooper peterson reed bailey bell kelly howard ward cox diaz richardson"
).split()
EMAIL_DOMAINS = (
    "example.com",
    "example.org",
    "example.net",
    "mail.example.com",
    "gamers.example",
    "craft.example",
)
ADJECTIVES = (
    "ancient amber blazing brave crimson crystal dark deep emerald endless frozen "
    "golden grand hidden iron jade lost lunar mighty misty mossy noble obsidian "
    "quiet radiant red rusty sapphire shadow silent silver sky stone sunny swift "
    "thunder twilight wild windy wooden"
).split()
NOUNS = (
    "realm craft lands kingdom valley peaks isles forest caves city world haven "
    "empire frontier outpost citadel grove harbor mesa tundra canyon reef castle "
    "village fortress mines plains jungle desert nether end spire"
).split()
VERSIONS = ("1.21.4",) * 6 + ("1.21.1",) * 3 + ("1.20.6", "1.20.4", "1.20.1", "1.19.4", "1.18.2", "1.16.5", "1.12.2")
MOTDS = (
    "A Minecraft Server",
    "Welcome! Be nice and have fun",
    "Survival with friends",
    "No griefing, please",
    "Creative build server",
    "Hardcore: one life only",
    "Skyblock and minigames",
    "Vanilla+ SMP",
    "Modded adventure",
    "Family friendly server",
    "PvP arena, season 4",
    "Under construction",
)
# Weighted choices as lookup tables: one random() and one index per pick.
MEMORY_TABLE = [512] * 4 + [1024] * 14 + [2048] * 30 + [3072] * 10 + [4096] * 22 + [6144] * 6
MEMORY_TABLE += [8192] * 9 + [12288] * 2 + [16384] * 2 + [32768] * 1
GAMEMODES = ["survival"] * 70 + ["creative"] * 18 + ["adventure"] * 9 + ["spectator"] * 3
DIFFICULTIES = ["normal"] * 50 + ["easy"] * 20 + ["hard"] * 25 + ["peaceful"] * 5
MAX_PLAYERS = [10] * 15 + [20] * 45 + [50] * 20 + [100] * 12 + [200] * 5 + [500] * 2 + [1000] * 1
CONFIG_SECTIONS = (
    "panel backup mail security servers network ui limits monitoring billing logging scheduler plugins worlds"
).split()
CONFIG_NAMES = (
    "enabled timeout max_items retention interval theme language host port url "
    "threshold default_memory_mb allowed_versions banner contact_email rate_limit"
).split()
CONFIG_DESCRIPTIONS = (
    "",
    "",
    "Set by the installer.",
    "Changed after the outage review.",
    "Per-tenant override.",
    "Tuned for the EU cluster.",
    "Do not lower without asking ops.",
)


# Rows in the first batch a Python generator builds (the others have batch_size).
FIRST_BATCH = 2_000


class GenerationError(Exception):
    """The data could not be generated (unmigrated database, no owners, a clash with existing rows)."""


@dataclass
class GenerationResult:
    """What ``generate()`` added: rows per table, the id ranges, time taken."""

    database: str
    vendor: str
    seed: int
    users: int
    servers: int
    configs: int
    duration: float
    active_servers: int = 0
    first_ids: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.users + self.servers + self.configs

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.duration if self.duration > 0 else 0.0

    def as_dict(self) -> dict:
        data = asdict(self)
        data["duration"] = round(self.duration, 3)
        data["rows"] = self.rows
        data["rows_per_second"] = round(self.rows_per_second)
        return data


class _Clock:
    """Timestamps as the strings each engine stores, ``seconds`` before a fixed anchor."""

    def __init__(self, anchor: dt.datetime, suffix: str):
        self.anchor = anchor
        self.suffix = suffix
        self.span = YEARS_OF_HISTORY * 365 * 86400
        self._base = anchor.hour * 3600 + anchor.minute * 60 + anchor.second

    # Precomputed day and time-of-day strings, made on first use (SQLite formats its own):
    # formatting a million datetimes one by one would be most of the generator's time.
    @cached_property
    def _days(self) -> list[str]:
        return [(self.anchor - dt.timedelta(days=d)).strftime("%Y-%m-%d") for d in range(YEARS_OF_HISTORY * 365 + 2)]

    @cached_property
    def _tods(self) -> list[str]:
        # Built from hours and minute:second pairs: 86,400 formatted strings took a fifth of a second.
        minutes_seconds = [f":{m:02d}:{s:02d}{self.suffix}" for m in range(60) for s in range(60)]
        return [h + ms for h in [f"{h:02d}" for h in range(24)] for ms in minutes_seconds]

    def ago(self, seconds: int) -> str:
        """The timestamp ``seconds`` (>= 0) before the anchor."""
        t = self._base - seconds
        return f"{self._days[-(t // 86400)]} {self._tods[t % 86400]}"

    def ago_once(self, seconds: int) -> str:
        """The same as ``ago()``, formatted on its own: for a few thousand rows, no tables to build."""
        return (self.anchor - dt.timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S") + self.suffix


def default_anchor() -> dt.datetime:
    """The start of the current UTC day: timestamps are never in the future and a seed reproduces its data all day."""
    now = dt.datetime.now(dt.UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def _models():
    from accounts.models import User
    from servers.models import Configuration, Server

    return User, Server, Configuration


def _columns(model, names: list[str]) -> list[str]:
    return [model._meta.get_field(name).column for name in names]


USER_FIELDS = ["id", "password", "last_login", "username", "email", "is_admin", "is_active", "date_joined"]
SERVER_FIELDS = [
    "id",
    "server_name",
    "owner",
    "port",
    "memory_mb",
    "status",
    "gamemode",
    "difficulty",
    "version",
    "motd",
    "seed",
    "max_players",
    "hardcore",
    "pvp",
    "created_at",
    "updated_at",
]
CONFIG_FIELDS = ["id", "key", "value", "description", "updated_by", "updated_at"]


class _Writer:
    """Writes batches of tuples into one table, the fastest way the engine offers."""

    def __init__(self, database: str):
        self.connection = connections[database]
        self.vendor = self.connection.vendor
        self.checks_deferred = False

    def write(self, model, fields: list[str], rows: list[tuple]) -> None:
        qn = self.connection.ops.quote_name
        table = qn(model._meta.db_table)
        columns = ", ".join(qn(c) for c in _columns(model, fields))
        self.connection.ensure_connection()
        raw = self.connection.connection.cursor()
        try:
            if self.vendor == "postgresql":
                with raw.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                mark = "?" if self.vendor == "sqlite" else "%s"
                placeholders = ", ".join([mark] * len(fields))
                raw.executemany(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", rows)
        finally:
            raw.close()

    def verify(self, model, first_id: int, last_id: int) -> None:
        """When the engine skipped its checks, check the batch in one query before it commits.

        Every CHECK of the table (the model's constraints and the columns' own, such as a
        Positive*Field's ">= 0") and every foreign key: the batch's rows are read once.
        """
        if not self.checks_deferred:
            return
        rules = Q()
        for constraint in model._meta.constraints:
            if isinstance(constraint, CheckConstraint):
                rules &= constraint.condition
        for model_field in model._meta.concrete_fields:
            check = column_check(model_field, self.connection)
            if check is not None:
                rules &= Q(check[1])
        broken = ~rules
        for model_field in model._meta.concrete_fields:
            if model_field.is_relation and model_field.many_to_one:
                target = model_field.related_model._base_manager.using(self.connection.alias)
                # NOT IN: SQLite probes the parent's rowid directly (no subquery run per row).
                broken |= Q(**{f"{model_field.attname}__isnull": False}) & ~Q(
                    **{f"{model_field.attname}__in": target.values(model_field.target_field.attname)}
                )
        bad = (
            model._base_manager.using(self.connection.alias)
            .filter(pk__gte=first_id, pk__lte=last_id)
            .filter(broken)
            # No ORDER BY (the model's is by name): SQLite would walk the whole name index.
            .order_by()
            .values_list("pk", flat=True)[:10]
        )
        bad = list(bad)
        if bad:
            raise GenerationError(
                f"generated {model._meta.db_table} rows break a CHECK constraint or a foreign key (ids {bad})"
            )

    @contextmanager
    def loading(self, model):
        """SQLite: the whole table in one transaction, its secondary indexes built once at the end.

        Maintaining four indexes on random keys row by row is most of SQLite's insert
        time; building them after the rows, from sorted keys, costs a fraction of it.
        DDL is transactional in SQLite, so a failure (or a kill) rolls the indexes back
        with the rows, and readers never see the table without them. The other engines
        keep one transaction per batch.
        """
        if self.vendor != "sqlite":
            yield
            return
        with transaction.atomic(using=self.connection.alias), self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = %s AND sql IS NOT NULL",
                [model._meta.db_table],
            )
            indexes = cursor.fetchall()
            for name, _sql in indexes:
                cursor.execute(f"DROP INDEX {self.connection.ops.quote_name(name)}")
            yield
            for _name, sql in indexes:
                cursor.execute(sql)

    @staticmethod
    def _leave_wal(cursor) -> tuple[int] | None:
        """Load through a rollback journal instead of the WAL, when no other connection is open.

        In WAL mode every new page is written twice: into the WAL at commit, then
        into the database by the checkpoint. A rollback journal keeps only the
        original content of pages that already existed; pages appended past the end
        of the file are written once, and a commit is as atomic as in WAL mode. The
        switch needs the database to itself: while any other connection is open
        SQLite refuses it and the load simply stays in WAL mode. Returns what to
        restore afterwards, or None when nothing changed.
        """
        cursor.execute("PRAGMA journal_mode")
        if cursor.fetchone()[0].lower() != "wal":
            return None
        cursor.execute("PRAGMA synchronous")
        previous_synchronous = int(cursor.fetchone()[0])
        cursor.execute("PRAGMA busy_timeout")
        previous_timeout = int(cursor.fetchone()[0])
        # Ask once, without waiting: a busy database answers "locked" at once.
        cursor.execute("PRAGMA busy_timeout = 0")
        try:
            cursor.execute("PRAGMA journal_mode = DELETE")
            mode = cursor.fetchone()[0].lower()
        except OperationalError:
            return None
        finally:
            cursor.execute(f"PRAGMA busy_timeout = {previous_timeout}")
        if mode != "delete":
            return None
        # NORMAL is safe with a WAL; a rollback journal needs FULL to survive a power cut.
        cursor.execute("PRAGMA synchronous = FULL")
        return (previous_synchronous,)

    @staticmethod
    def _back_to_wal(cursor, previous_synchronous: int) -> None:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
        except OperationalError:
            pass  # Busy: every new connection of ours asks for WAL again (settings' init_command).
        cursor.execute(f"PRAGMA synchronous = {previous_synchronous}")

    @contextmanager
    def fast_mode(self):
        """SQLite: a bigger page cache, CHECKs and foreign keys checked per batch instead of per row.

        SQLite re-evaluates each CHECK for every row, and an ``IN (...)`` list in a
        CHECK builds a temporary table each time: about a microsecond a row per list.
        A foreign key costs a lookup per row inside the insert (2 s at a million
        servers). ``verify()`` checks the same rules and keys set-based, inside the
        table's transaction, so a bad row still never commits. The load goes through
        a rollback journal when it can (``_leave_wal``).
        """
        if self.vendor != "sqlite":
            yield
            return
        with self.connection.cursor() as cursor:
            cursor.execute("PRAGMA cache_size")
            previous_cache = int(cursor.fetchone()[0])
            cursor.execute("PRAGMA temp.cache_size")
            previous_temp_cache = int(cursor.fetchone()[0])
            # 512 MiB, this connection only, allocated as pages are used: a million servers
            # and their indexes fit, so nothing spills to the WAL before the commit.
            cursor.execute("PRAGMA cache_size = -524288")
            # The lookup tables the servers' INSERT ... SELECT joins per row (a few MiB at
            # a million servers) stay in memory instead of being read back from the temp file.
            cursor.execute("PRAGMA temp.cache_size = -65536")
            cursor.execute("PRAGMA ignore_check_constraints = ON")
            # Enforcing a foreign key costs a lookup per row inside the insert, dearer than
            # the same lookup set-based in verify(). (Outside a transaction only: inside one
            # SQLite keeps enforcing them, and verify() checks them again.)
            cursor.execute("PRAGMA foreign_keys")
            previous_foreign_keys = int(cursor.fetchone()[0])
            cursor.execute("PRAGMA foreign_keys = OFF")
            # Inside a transaction (a test's) the journal mode cannot change.
            journal = None if self.connection.in_atomic_block else self._leave_wal(cursor)
        self.checks_deferred = True
        # Millions of new tuples would trigger the cyclic GC over and over for nothing.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            yield
        finally:
            if gc_was_enabled:
                gc.enable()
            self.checks_deferred = False
            with self.connection.cursor() as cursor:
                cursor.execute("PRAGMA ignore_check_constraints = OFF")
                cursor.execute(f"PRAGMA foreign_keys = {previous_foreign_keys}")
                if journal:
                    self._back_to_wal(cursor, *journal)
                cursor.execute(f"PRAGMA cache_size = {previous_cache}")
                cursor.execute(f"PRAGMA temp.cache_size = {previous_temp_cache}")


def _scalar(database: str, sql: str, params=()) -> int:
    with connections[database].cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.fetchone()[0] or 0)


def generate(
    database: str = DEFAULT_DB_ALIAS,
    users: int = 0,
    servers: int = 0,
    configs: int = 0,
    seed: int = 0,
    progress: Progress | None = None,
    *,
    batch_size: int = 50_000,
    now: dt.datetime | None = None,
) -> GenerationResult:
    """Add ``users`` users, ``servers`` servers and ``configs`` configuration entries to ``database``.

    The database must be migrated. Existing rows are kept: new ids follow the highest
    existing ones, and new Running/Starting servers only take ports no existing
    Running/Starting server uses. ``progress(table, done, total)`` is called after each
    batch. Raises GenerationError when the data cannot be added.
    """
    if min(users, servers, configs) < 0:
        raise GenerationError("counts must not be negative")
    if batch_size < 1:
        raise GenerationError("batch size must be positive")
    User, Server, Configuration = _models()
    connection = connections[database]
    qn = connection.ops.quote_name
    missing = {m._meta.db_table for m in (User, Server, Configuration)} - set(connection.introspection.table_names())
    if missing:
        raise GenerationError(f"table(s) {', '.join(sorted(missing))} missing: run `manage.py migrate` first")

    started = time.perf_counter()
    anchor = now if now is not None else default_anchor()
    if anchor.tzinfo is None:
        raise GenerationError("now must be an aware datetime")
    anchor = anchor.astimezone(dt.UTC).replace(microsecond=0, tzinfo=None)
    clock = _Clock(anchor, "+00" if connection.vendor == "postgresql" else "")
    rng = random.Random(seed)
    writer = _Writer(database)

    def max_id(model) -> int:
        return _scalar(database, f"SELECT MAX({qn('id')}) FROM {qn(model._meta.db_table)}")

    user_start = max_id(User) + 1
    server_start = max_id(Server) + 1
    config_start = max_id(Configuration) + 1

    # Owners: the new users when there are any, else the existing ones.
    if users:
        owner_ids = list(range(user_start, user_start + users))
    else:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {qn('id')} FROM {qn(User._meta.db_table)} ORDER BY {qn('id')}")
            owner_ids = [row[0] for row in cursor.fetchall()]
        if (servers or configs) and not owner_ids:
            raise GenerationError("servers and configuration entries need owners: add --users")
    if connection.vendor != "sqlite":
        # A permutation, so that the "power users" owning many servers are spread over all
        # ids. (SQLite orders the owners itself, in SQL; there the configuration entries'
        # editors are the first accounts, the panel's oldest.)
        rng.shuffle(owner_ids)
    # Seconds before the anchor each new user joined (servers are created after that).
    joined_age = array("l")

    with writer.fast_mode():
        if users:
            # SQLite: the rows are computed by the engine itself (see _insert_select).
            make_users = _generate_users_sqlite if connection.vendor == "sqlite" else _generate_users
            make_users(writer, User, rng, clock, user_start, users, batch_size, progress, joined_age)
        active = 0
        if servers:
            make_servers = _generate_servers_sqlite if connection.vendor == "sqlite" else _generate_servers
            active = make_servers(
                writer,
                Server,
                rng,
                clock,
                server_start,
                servers,
                batch_size,
                progress,
                owner_ids,
                user_start,
                joined_age,
                database,
            )
        if configs:
            _generate_configs(writer, Configuration, rng, clock, config_start, configs, batch_size, progress, owner_ids)
        if connection.vendor == "postgresql":
            # Explicit ids leave PostgreSQL's sequences behind; the next admin insert would clash.
            with transaction.atomic(using=database), connection.cursor() as cursor:
                for sql in connection.ops.sequence_reset_sql(no_style(), [User, Server, Configuration]):
                    cursor.execute(sql)

    return GenerationResult(
        database=database,
        vendor=connection.vendor,
        seed=seed,
        users=users,
        servers=servers,
        configs=configs,
        duration=time.perf_counter() - started,
        active_servers=active,
        first_ids={"users": user_start, "servers": server_start, "configs": config_start},
    )


def _batches(total: int, batch_size: int, first: int | None = None) -> Iterator[tuple[int, int]]:
    """(offset, count) of each batch; ``first``, when given, caps the first batch's size."""
    start = 0
    size = min(batch_size, first) if first else batch_size
    while start < total:
        yield start, min(size, total - start)
        start += size
        size = batch_size


def _write_batches(writer, model, fields, total, batch_size, progress, label, make_rows) -> None:
    """Write ``total`` rows in batches, the next batch built while this one is written.

    The database driver releases the GIL while the engine works, so building rows in
    a second thread uses the second core. One worker keeps the random draws in order:
    the data stays deterministic.
    """
    done = 0
    # A small first batch: nothing overlaps its building, so the pipeline starts sooner.
    batches = list(_batches(total, batch_size, first=FIRST_BATCH))
    with writer.loading(model), ThreadPoolExecutor(max_workers=1, thread_name_prefix="datagen") as pool:
        pending = pool.submit(make_rows, *batches[0]) if batches else None
        for index, (_offset, count) in enumerate(batches):
            rows = pending.result()
            if index + 1 < len(batches):
                pending = pool.submit(make_rows, *batches[index + 1])
            # The batch's transaction, or (SQLite, inside the table's one transaction) no
            # savepoint: it would copy every index page it touches into a statement journal,
            # and a bad batch rolls the whole table back anyway.
            with transaction.atomic(using=writer.connection.alias, savepoint=False):
                writer.write(model, fields, rows)
                writer.verify(model, rows[0][0], rows[-1][0])
            done += count
            if progress:
                progress(label, done, total)


def _generate_users(writer, User, rng, clock, start, total, batch_size, progress, joined_age) -> None:
    r = rng.random
    span = clock.span
    ago = clock.ago
    firsts, lasts, domains = FIRST_NAMES, LAST_NAMES, EMAIL_DOMAINS
    nf, nl, nd = len(firsts), len(lasts), len(domains)
    seps = ("", "_", "-", "", "_")

    def make_rows(offset: int, count: int) -> list[tuple]:
        rows = []
        append = rows.append
        for n in range(start + offset, start + offset + count):
            first = firsts[int(r() * nf)]
            last = lasts[int(r() * nl)]
            style = r()
            # The trailing number is the id: names stay unique even ignoring case.
            if style < 0.5:
                username = f"{first}{seps[int(r() * 5)]}{last}{n}"
            elif style < 0.8:
                username = f"{first.capitalize()}{last.capitalize()}{n}"
            else:
                username = f"{first}{n}"
            e = r()
            if e < 0.15:
                email = None  # no email: stored as NULL, never ""
            elif e < 0.2:
                email = f"{first.capitalize()}.{last.capitalize()}{n}@{domains[int(r() * nd)]}"
            else:
                email = f"{first}.{last}{n}@{domains[int(r() * nd)]}"
            # Older accounts are rarer than recent ones: the panel grows.
            age = int(span * r() ** 1.5)
            joined_age.append(age)
            last_login = None if r() < 0.3 else ago(int(age * r() ** 3))
            append(
                (
                    n,
                    DEMO_PASSWORD_HASH,
                    last_login,
                    username,
                    email,
                    int(r() < 0.002),
                    int(r() < 0.95),
                    ago(age),
                )
            )
        return rows

    _write_batches(writer, User, USER_FIELDS, total, batch_size, progress, "users", make_rows)


def _free_ports(database: str, Server) -> list[int]:
    """Ports no existing Running/Starting server uses, nearest to Minecraft's 25565 first."""
    connection = connections[database]
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT {qn('port')} FROM {qn(Server._meta.db_table)} WHERE {qn('status')} IN (%s, %s)",
            list(ACTIVE_STATUSES),
        )
        taken = {row[0] for row in cursor.fetchall()}
    # Hosts hand out ports upwards from 25565; below it come the ones people pick by hand.
    order = [*range(25565, 65536), *range(25564, 1023, -1)]
    return [p for p in order if p not in taken]


def _generate_servers(
    writer,
    Server,
    rng,
    clock,
    start,
    total,
    batch_size,
    progress,
    owner_ids,
    user_start,
    joined_age,
    database,
) -> int:
    r = rng.random
    free = _free_ports(database, Server)
    # About a third of the servers are up when there are ports enough; with a
    # million servers the 64,512 ports are the bound, as on a real host.
    n_active = min(round(total * 0.32), int(len(free) * MAX_ACTIVE_PORT_SHARE))
    active_ports = free[:n_active]
    rng.shuffle(active_ports)
    is_active = bytearray(total)
    for i in rng.sample(range(total), n_active):
        is_active[i] = 1
    next_port = iter(active_ports)

    n_owners = len(owner_ids)
    # Seconds since each owner (in owner_ids' order) joined: servers are created after that.
    if len(joined_age):
        owner_age = [joined_age[o - user_start] for o in owner_ids]
    else:
        # Existing owners; one who joined after the anchor (today) gets servers created at it.
        User = Server._meta.get_field("owner").related_model
        joined = dict(User._base_manager.using(database).values_list("id", "date_joined"))
        anchor = clock.anchor.replace(tzinfo=dt.UTC)
        owner_age = [max(0, int((anchor - joined[o]).total_seconds())) for o in owner_ids]
    # Weighted and combined choices as lookup tables: one random() and one index per pick.
    prefixes = [f"{a}{sep}{b}{sep}" for a in ADJECTIVES for b in NOUNS for sep in ("-", "_")]
    # Stopped servers keep whatever port they had; many never changed Minecraft's 25565.
    stopped_ports = [25565] * 400 + [25566 + k for k in range(400)] + [1024 + (k * 7919) % 64512 for k in range(200)]
    tables = [MEMORY_TABLE, GAMEMODES, DIFFICULTIES, VERSIONS, MOTDS]
    n_prefix, n_stopped, n_maxp = len(prefixes), len(stopped_ports), len(MAX_PLAYERS)
    days, tods, base = clock._days, clock._tods, clock._base

    def make_rows(offset: int, count: int) -> list[tuple]:
        # Column by column: list comprehensions cost a third of a loop building tuples.
        loop = range(count)
        active = is_active[offset : offset + count]
        names = [prefixes[int(r() * n_prefix)] + str(start + offset + k) for k in loop]
        slots = [int(n_owners * r() ** 1.5) for _ in loop]
        owners = [owner_ids[k] for k in slots]
        statuses = [
            ("Running" if r() < 0.93 else "Starting") if up else ("Stopped" if r() < 0.95 else "Stopping")
            for up in active
        ]
        ports = [next(next_port) if up else stopped_ports[int(r() * n_stopped)] for up in active]
        picks = [[table[int(r() * len(table))] for _ in loop] for table in tables]
        seeds = ["" if r() < 0.6 else str(int(r() * 10**12)) for _ in loop]
        players = [MAX_PLAYERS[int(r() * n_maxp)] for _ in loop]
        # Flags as 0/1: every driver binds an int directly (a bool goes through adaptation).
        hardcore = [int(r() < 0.05) for _ in loop]
        pvp = [int(r() < 0.8) for _ in loop]
        # Created after the owner joined; updated after it was created, mostly lately.
        created = [int(owner_age[k] * r()) for k in slots]
        updated = [int(c * r() ** 4) for c in created]
        created_at = [f"{days[-((base - c) // 86400)]} {tods[(base - c) % 86400]}" for c in created]
        updated_at = [f"{days[-((base - u) // 86400)]} {tods[(base - u) % 86400]}" for u in updated]
        columns = [names, owners, ports, picks[0], statuses, *picks[1:], seeds, players, hardcore, pvp]
        columns += [created_at, updated_at]
        # Ids follow the name order within a batch: the unique name index and the
        # table then grow at a few places instead of one random page per row.
        # Across batches the two orders stay unrelated.
        order = sorted(loop, key=names.__getitem__)
        ids = [0] * count
        for server_id, k in enumerate(order, start + offset):
            ids[k] = server_id
        rows = list(zip(ids, *columns, strict=True))
        return list(map(rows.__getitem__, order))

    _write_batches(writer, Server, SERVER_FIELDS, total, batch_size, progress, "servers", make_rows)
    return n_active


def _generate_configs(writer, Configuration, rng, clock, start, total, batch_size, progress, owner_ids) -> None:
    r = rng.random
    span = clock.span
    ago = clock.ago_once
    sections, names, descriptions = CONFIG_SECTIONS, CONFIG_NAMES, CONFIG_DESCRIPTIONS
    ns, nn, nd = len(sections), len(names), len(descriptions)
    # Settings are changed by a handful of people (admins, in real life).
    editors = owner_ids[: max(1, min(len(owner_ids), 25))]
    ne = len(editors)

    def value_for(name: str) -> str:
        if name == "enabled":
            return "true" if r() < 0.7 else "false"
        if name in ("timeout", "max_items", "retention", "interval", "port", "threshold", "rate_limit"):
            return str(1 + int(r() * 9999))
        if name == "default_memory_mb":
            return str(MEMORY_TABLE[int(r() * len(MEMORY_TABLE))])
        if name == "url":
            return f"https://panel{int(r() * 100)}.example.com/"
        if name == "contact_email":
            return f"ops{int(r() * 100)}@example.com"
        if name == "allowed_versions":
            return ",".join(sorted(set(VERSIONS[:8])))
        if name == "theme":
            return ("light", "dark", "auto")[int(r() * 3)]
        if name == "language":
            return ("en", "de", "fr", "es", "pt", "ja")[int(r() * 6)]
        return f"value-{int(r() * 10**6)}"

    def make_rows(offset: int, count: int) -> list[tuple]:
        rows = []
        for n in range(start + offset, start + offset + count):
            section = sections[int(r() * ns)]
            name = names[int(r() * nn)]
            rows.append(
                (
                    n,
                    f"{section}.{name}.{n}",
                    value_for(name),
                    descriptions[int(r() * nd)],
                    None if r() < 0.2 else editors[int(r() * ne)],
                    ago(int(span * r() ** 2)),
                )
            )
        return rows

    _write_batches(writer, Configuration, CONFIG_FIELDS, total, batch_size, progress, "configuration", make_rows)


# Lehmer ("MINSTD") generator: x -> x * 48271 mod (2**31 - 1). Its values stay
# below 2**31, so the product of two stays below SQLite's 2**63 integer limit (past
# it SQLite silently switches to floating point), and Python can jump it to any id
# with pow(): the value for an id does not depend on how the rows are batched.
LEHMER_MODULUS = 2_147_483_647
LEHMER_MULTIPLIER = 48_271
PROFILES = 4096  # distinct (memory, gamemode, difficulty, ...) combinations per run
LEHMER_BLOCK = 1024  # ids per row of the generator's "high" lookup table (see _lehmer_sql)


def _coprime(rng: random.Random, n: int) -> int:
    """A random multiplier in [1, n) sharing no factor with ``n`` (1 when n < 3)."""
    if n < 3:
        return 1
    while True:
        c = rng.randrange(1, n)
        if math.gcd(c, n) == 1:
            return c


def _lehmer_at(base: int, n: int) -> int:
    """The generator's value ``n`` steps after ``base``."""
    return base * pow(LEHMER_MULTIPLIER, n, LEHMER_MODULUS) % LEHMER_MODULUS


def _server_profiles(rng: random.Random) -> list[tuple]:
    """(k, memory_mb, gamemode, difficulty, version, motd, max_players, hardcore, pvp) drawn ``PROFILES`` times.

    One lookup per server instead of eight weighted draws; with thousands of
    profiles the combinations still vary as much as independent draws would look.
    """
    r = rng.random
    return [
        (
            k,
            MEMORY_TABLE[int(r() * len(MEMORY_TABLE))],
            GAMEMODES[int(r() * len(GAMEMODES))],
            DIFFICULTIES[int(r() * len(DIFFICULTIES))],
            VERSIONS[int(r() * len(VERSIONS))],
            MOTDS[int(r() * len(MOTDS))],
            MAX_PLAYERS[int(r() * len(MAX_PLAYERS))],
            int(r() < 0.05),
            int(r() < 0.8),
        )
        for k in range(PROFILES)
    ]


def _generate_servers_sqlite(
    writer,
    Server,
    rng,
    clock,
    start,
    total,
    batch_size,
    progress,
    owner_ids,
    _user_start,
    _joined_age,
    database,
) -> int:
    """The servers as ``INSERT ... SELECT`` statements that compute every row inside SQLite.

    Building a million rows in Python and binding them value by value is slower than
    SQLite can store them. Here Python only writes what is shared into temporary
    tables (the free ports, a few thousand "profiles" of the small settings, the
    name prefixes); the owners' random order and when each joined come from the
    users table, which servers are up and on which free port from a seeded
    permutation of the ids, and every other value from a seeded Lehmer generator
    stepped once per id, all in SQL: the same seed gives the same rows, however
    they are batched. CHECKs and foreign keys are checked per batch, not per row
    (see _Writer.fast_mode).
    """
    connection = writer.connection
    qn = connection.ops.quote_name
    free = _free_ports(database, Server)
    # The same rules as _generate_servers: a third up, within the free ports.
    n_active = min(round(total * 0.32), int(len(free) * MAX_ACTIVE_PORT_SHARE))
    # Which servers are up, and on which port, with no draw per server: k -> (k * c + d) mod
    # total permutes the offsets 0..total-1, so the servers it sends below n_active are up,
    # each on its own port (the free port of that number).
    spread, shift = _coprime(rng, total), rng.randrange(total)
    prefixes = [f"{a}{sep}{b}{sep}" for a in ADJECTIVES for b in NOUNS for sep in ("-", "_")]
    temp_tables = {
        "datagen_active": ("k INTEGER PRIMARY KEY, port INTEGER", list(enumerate(free[:n_active]))),
        "datagen_owner": ("k INTEGER PRIMARY KEY, id INTEGER, age INTEGER", []),
        "datagen_prefix": ("k INTEGER PRIMARY KEY, prefix TEXT", list(enumerate(prefixes))),
        "datagen_profile": (
            "k INTEGER PRIMARY KEY, memory_mb, gamemode, difficulty, version, motd, max_players, hardcore, pvp",
            _server_profiles(rng),
        ),
    }

    cte, lehmer_tables = _lehmer_sql(rng, 4, start, total)
    temp_tables.update(lehmer_tables)
    epoch = int(clock.anchor.replace(tzinfo=dt.UTC).timestamp())
    # Seconds before the anchor: created after the owner joined, updated after it
    # was created and mostly lately (the fraction to the 4th power).
    created = "(o.age * (s.h3 % 1048576) >> 20)"
    f = "(s.h4 % 65536)"
    updated = f"(((({created} * {f} >> 16) * {f} >> 16) * {f} >> 16) * {f} >> 16)"
    stopped = "((s.h1 >> 19) % 1000)"
    table = qn(Server._meta.db_table)
    columns = ", ".join(qn(c) for c in _columns(Server, SERVER_FIELDS))
    # h1 picks the profile (bits 0-11), the status (12-18) and a stopped server's
    # port (19-30); h2 the name prefix and, with h4, the owner slot; h3 when the
    # server was created and its world seed; h4 when it was last updated.
    insert = f"""
        INSERT INTO {table} ({columns})
        {cte}
        SELECT
            s.id,
            x.prefix || s.id,
            o.id,
            -- Stopped servers keep whatever port they had; many never changed Minecraft's 25565.
            coalesce(a.port, CASE
                WHEN {stopped} < 400 THEN 25565
                WHEN {stopped} < 800 THEN 25166 + {stopped}
                ELSE 1024 + {stopped} * 7919 % 64512
            END),
            p.memory_mb,
            CASE
                WHEN a.port IS NOT NULL THEN CASE WHEN (s.h1 >> 12) % 128 < 119 THEN 'Running' ELSE 'Starting' END
                WHEN (s.h1 >> 12) % 128 < 122 THEN 'Stopped' ELSE 'Stopping'
            END,
            p.gamemode, p.difficulty, p.version, p.motd,
            CASE WHEN (s.h3 >> 20) % 100 < 60 THEN '' ELSE CAST(s.h2 % 1000000 * 1000000 + s.h3 % 1000000 AS TEXT) END,
            p.max_players, p.hardcore, p.pvp,
            datetime({epoch} - {created}, 'unixepoch'),
            datetime({epoch} - {updated}, 'unixepoch')
        FROM s
        JOIN temp.datagen_profile p ON p.k = s.h1 % {PROFILES}
        JOIN temp.datagen_prefix x ON x.k = s.h2 % {len(prefixes)}
        -- Two uniform draws multiplied: most servers belong to a few owners' slots.
        JOIN temp.datagen_owner o ON o.k = (s.h2 >> 12) % 524288 * ((s.h4 >> 16) % 32768) * {len(owner_ids)} >> 34
        LEFT JOIN temp.datagen_active a ON a.k = ((s.id - {start}) * {spread} + {shift}) % {total}
    """
    # The owners (owner_ids: the new users, else all) in a seeded random order (a
    # square breaks the lattice that id * c alone would leave), with the seconds since
    # each joined; never negative: an account created today, after the anchor, owns
    # servers created at the anchor.
    users = qn(Server._meta.get_field("owner").related_model._meta.db_table)
    m, c = LEHMER_MODULUS, rng.randrange(1, LEHMER_MODULUS)
    owners = f"""
        INSERT INTO temp.datagen_owner (k, id, age)
        SELECT
            row_number() OVER (ORDER BY (id * {c} % {m}) * (id * {c} % {m}) % {m}, id) - 1,
            id,
            max(0, {epoch} - CAST(strftime('%s', date_joined) AS INTEGER))
        FROM {users} WHERE id >= {min(owner_ids)}
    """
    _insert_select(writer, Server, "servers", insert, temp_tables, start, total, batch_size, progress, owners)
    return n_active


def _insert_select(writer, model, label, insert, temp_tables, start, total, batch_size, progress, *setup):
    """Run ``insert`` once per batch, after filling ``temp_tables`` ({name: (columns, rows)}).

    ``insert`` takes the batch's first and last id (``?1``, ``?2``). The whole table
    is loaded in one transaction with its indexes built at the end
    (``writer.loading``); each batch is checked before the next.
    ``setup``: SQL run after the temporary tables are filled.
    """
    connection = writer.connection
    done = 0
    with writer.loading(model):
        raw = connection.connection.cursor()
        try:
            for name, (definition, rows) in temp_tables.items():
                raw.execute(f"DROP TABLE IF EXISTS temp.{name}")
                raw.execute(f"CREATE TEMP TABLE {name} ({definition})")
                if rows:
                    raw.executemany(f"INSERT INTO temp.{name} VALUES ({', '.join('?' * len(rows[0]))})", rows)
            for sql in setup:
                raw.execute(sql)
            for offset, count in _batches(total, batch_size):
                first, last = start + offset, start + offset + count - 1
                # No savepoint per batch (see _write_batches).
                raw.execute(insert, (first, last))
                writer.verify(model, first, last)
                done += count
                if progress:
                    progress(label, done, total)
        finally:
            for name in temp_tables:
                raw.execute(f"DROP TABLE IF EXISTS temp.{name}")
            raw.close()


def _lehmer_sql(rng: random.Random, streams: int, start: int, total: int) -> tuple[str, dict]:
    """A CTE ``s(id, h1, ..., h<streams>)`` of the ids ?1 to ?2, and the temporary tables it reads.

    h1 is the generator's value at the id: ``base * g**id``, read as the product of
    two table lookups, ``base * g**(1024 * high)`` times ``g**low``, so the rows come
    from a join of two small tables (a recursive CTE queues every row, five times
    the cost). The other streams are h1 times fixed multipliers, the same sequence
    read further on: one multiplication each instead of a hash per value.
    """
    m, g = LEHMER_MODULUS, LEHMER_MULTIPLIER
    base = rng.randrange(1, m)
    ks = [1] + [rng.randrange(1 << 20, m) for _ in range(streams - 1)]
    block = LEHMER_BLOCK
    highs = range(start // block, (start + max(total, 1) - 1) // block + 1)
    tables = {
        "datagen_high": ("k INTEGER PRIMARY KEY, h INTEGER", [(k, _lehmer_at(base, k * block)) for k in highs]),
        "datagen_low": ("k INTEGER PRIMARY KEY, g INTEGER", [(k, pow(g, k, m)) for k in range(block)]),
    }
    h1 = f"hi.h * lo.g % {m}"
    values = ", ".join(h1 if k == 1 else f"{h1} * {k} % {m}" for k in ks)
    names = ", ".join(f"h{i + 1}" for i in range(streams))
    cte = f"""
        WITH s(id, {names}) AS (
            SELECT hi.k * {block} + lo.k, {values}
            FROM temp.datagen_high hi CROSS JOIN temp.datagen_low lo
            WHERE hi.k BETWEEN ?1 / {block} AND ?2 / {block} AND hi.k * {block} + lo.k BETWEEN ?1 AND ?2
        )"""
    return cte, tables


def _generate_users_sqlite(writer, User, rng, clock, start, total, batch_size, progress, _joined_age) -> None:
    """The users as ``INSERT ... SELECT`` statements computed inside SQLite (see _generate_servers_sqlite).

    The same shapes as _generate_users: three username styles and two email styles
    ending in the id (unique even ignoring case, as letters never end in a digit),
    15% without an email (NULL), recent accounts more common than old ones, last
    logins mostly soon after joining.
    """
    qn = writer.connection.ops.quote_name
    firsts = [(k, n, n.capitalize()) for k, n in enumerate(FIRST_NAMES)]
    lasts = [(k, n, n.capitalize()) for k, n in enumerate(LAST_NAMES)]
    temp_tables = {
        "datagen_first": ("k INTEGER PRIMARY KEY, name TEXT, cap TEXT", firsts),
        "datagen_last": ("k INTEGER PRIMARY KEY, name TEXT, cap TEXT", lasts),
        "datagen_domain": ("k INTEGER PRIMARY KEY, domain TEXT", list(enumerate(EMAIL_DOMAINS))),
    }
    cte, lehmer_tables = _lehmer_sql(rng, 3, start, total)
    temp_tables.update(lehmer_tables)
    epoch = int(clock.anchor.replace(tzinfo=dt.UTC).timestamp())
    # h1: names, domain, separator, username style; h2: when the user joined (the
    # fraction squared: older accounts are rarer) and is_admin; h3: last login
    # (none for 30%, else the fraction cubed of the time since joining), email
    # style, is_active.
    age = f"({clock.span} * ((s.h2 % 1048576) * (s.h2 % 1048576) >> 20) >> 20)"
    w = "((s.h3 >> 7) % 1024)"
    login_age = f"(((({age} * {w}) >> 10) * {w} >> 10) * {w} >> 10)"
    table = qn(User._meta.db_table)
    columns = ", ".join(qn(c) for c in _columns(User, USER_FIELDS))
    insert = f"""
        INSERT INTO {table} ({columns})
        {cte}
        SELECT
            s.id,
            '{DEMO_PASSWORD_HASH}',
            CASE WHEN s.h3 % 100 < 30 THEN NULL ELSE datetime({epoch} - {login_age}, 'unixepoch') END,
            CASE
                WHEN (s.h1 >> 23) % 100 < 50 THEN
                    f.name || CASE (s.h1 >> 20) % 5 WHEN 1 THEN '_' WHEN 2 THEN '-' WHEN 4 THEN '_' ELSE '' END
                    || l.name || s.id
                WHEN (s.h1 >> 23) % 100 < 80 THEN f.cap || l.cap || s.id
                ELSE f.name || s.id
            END,
            CASE
                WHEN (s.h3 >> 17) % 100 < 15 THEN NULL
                WHEN (s.h3 >> 17) % 100 < 20 THEN f.cap || '.' || l.cap || s.id || '@' || d.domain
                ELSE f.name || '.' || l.name || s.id || '@' || d.domain
            END,
            (s.h2 >> 20) % 2048 < 4,
            (s.h3 >> 24) % 128 < 122,
            datetime({epoch} - {age}, 'unixepoch')
        FROM s
        JOIN temp.datagen_first f ON f.k = s.h1 % {len(firsts)}
        JOIN temp.datagen_last l ON l.k = (s.h1 >> 8) % {len(lasts)}
        JOIN temp.datagen_domain d ON d.k = (s.h1 >> 16) % {len(EMAIL_DOMAINS)}
    """
    _insert_select(writer, User, "users", insert, temp_tables, start, total, batch_size, progress)
