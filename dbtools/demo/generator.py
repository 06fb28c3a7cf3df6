"""``generate()``: add valid demo users, servers and configuration entries to a migrated database.

The vendor-free orchestration: where the new ids start, who owns the servers, which
ports are free, in which order the tables are written. How rows reach the database
is the engine's (``bulk_insert``, ``bulk_load_table``, ``bulk_load_session``); an engine
that computes rows inside the database (SQLite, ``demo_rows_in_database``) writes the
users and servers itself, otherwise ``dbtools.demo.rows`` builds them in Python.
"""

import datetime as dt
import random
import time
from array import array

from django.db import DEFAULT_DB_ALIAS

from accounts.models import User
from dbtools.formatting import to_ms
from servers.models import Configuration, Server

from .clock import Clock, default_anchor
from .result import GenerationError, GenerationResult
from .rows import free_ports, generate_configs, generate_servers, generate_users
from .spec import Progress
from .writer import BulkWriter


def _scalar(connection, sql: str, params=()) -> int:
    with connection.cursor() as cursor:
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
    writer = BulkWriter(database)
    engine, connection = writer.engine, writer.connection
    qn = connection.ops.quote_name
    missing = {m._meta.db_table for m in (User, Server, Configuration)} - set(connection.introspection.table_names())
    if missing:
        raise GenerationError(f"table(s) {', '.join(sorted(missing))} missing: run `manage.py migrate` first")

    started = time.perf_counter()
    anchor = now if now is not None else default_anchor()
    if anchor.tzinfo is None:
        raise GenerationError("now must be an aware datetime")
    anchor = anchor.astimezone(dt.UTC).replace(microsecond=0, tzinfo=None)
    clock = Clock(anchor, engine.bulk_timestamp_suffix)
    rng = random.Random(seed)

    def max_id(model) -> int:
        return _scalar(connection, f"SELECT MAX({qn('id')}) FROM {qn(model._meta.db_table)}")

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
    in_database = engine.demo_rows_in_database
    if not in_database:
        # A permutation, so that the "power users" owning many servers are spread over all
        # ids. (An engine computing the rows orders the owners itself, in SQL; there the
        # configuration entries' editors are the first accounts, the panel's oldest.)
        rng.shuffle(owner_ids)
    # Seconds before the anchor each new user joined (servers are created after that).
    joined_age = array("l")

    with writer.fast_mode():
        if users:
            if in_database:
                engine.insert_demo_users(writer, User, rng, clock, user_start, users, batch_size, progress)
            else:
                generate_users(writer, User, rng, clock, user_start, users, batch_size, progress, joined_age)
        active = 0
        if servers:
            free = free_ports(connection, Server)
            if in_database:
                active = engine.insert_demo_servers(
                    writer, Server, rng, clock, server_start, servers, batch_size, progress, owner_ids, free
                )
            else:
                active = generate_servers(
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
                    free,
                )
        if configs:
            generate_configs(writer, Configuration, rng, clock, config_start, configs, batch_size, progress, owner_ids)
        # Explicit ids leave sequences behind where the engine has them; the next admin insert would clash.
        engine.reset_sequences([User, Server, Configuration])

    return GenerationResult(
        database=database,
        vendor=connection.vendor,
        seed=seed,
        users=users,
        servers=servers,
        configs=configs,
        duration_ms=to_ms(time.perf_counter() - started),
        active_servers=active,
        first_ids={"users": user_start, "servers": server_start, "configs": config_start},
    )
