"""SQLite computes the demo users and servers itself: ``INSERT ... SELECT``, no row built in Python.

Building a million rows in Python and binding them value by value is slower than
SQLite can store them. Here Python only writes what is shared into temporary tables
(the free ports, a few thousand "profiles" of the small settings, the name prefixes,
the names and domains); every other value comes from a seeded Lehmer generator
stepped once per id, in SQL: the same seed gives the same rows however they are
batched. The same rules as the rows ``dbtools.demo.rows`` builds, drawn differently,
so a seed gives other rows on SQLite than on the other engines.

``SQLiteEngine.insert_demo_users`` and ``insert_demo_servers`` call ``insert_users`` and
``insert_servers``; their ``writer`` is the caller's ``dbtools.demo.writer.BulkWriter``
(``loading(model)`` around the table, ``verify(model, first, last)`` after each batch).
"""

import datetime as dt
import math
import random

from ..demo.spec import (
    ADJECTIVES,
    DEMO_PASSWORD_HASH,
    DIFFICULTIES,
    EMAIL_DOMAINS,
    FIRST_NAMES,
    GAMEMODES,
    LAST_NAMES,
    MAX_ACTIVE_PORT_SHARE,
    MAX_PLAYERS,
    MEMORY_TABLE,
    MOTDS,
    NOUNS,
    SERVER_FIELDS,
    USER_FIELDS,
    VERSIONS,
    batches,
)

# below 2**31, so the product of two stays below SQLite's 2**63 integer limit (past
# it SQLite silently switches to floating point), and Python can jump it to any id
# with pow(): the value for an id does not depend on how the rows are batched.
LEHMER_MODULUS = 2_147_483_647
LEHMER_MULTIPLIER = 48_271
PROFILES = 4096  # distinct (memory, gamemode, difficulty, ...) combinations per run
LEHMER_BLOCK = 1024  # ids per row of the generator's "high" lookup table (see _lehmer_sql)


def _columns(model, names: list[str]) -> list[str]:
    return [model._meta.get_field(name).column for name in names]


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


def insert_servers(
    writer,
    Server,
    rng,
    clock,
    start,
    total,
    batch_size,
    progress,
    owner_ids,
    free,
) -> int:
    """The servers as ``INSERT ... SELECT`` statements that compute every row inside SQLite.

    Python only writes what is shared into temporary tables (the free ports, a few
    thousand "profiles" of the small settings, the name prefixes); the owners' random
    order and when each joined come from the users table, which servers are up and on
    which free port from a seeded permutation of the ids, and every other value from a
    seeded Lehmer generator stepped once per id, all in SQL: the same seed gives the
    same rows, however they are batched. CHECKs and foreign keys are checked per batch, not per row
    (see sqlite_bulk.load_session).
    """
    qn = writer.connection.ops.quote_name
    # The same rules as dbtools.demo.rows.generate_servers: a third up, within the free ports.
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
            for offset, count in batches(total, batch_size):
                first, last = start + offset, start + offset + count - 1
                # No savepoint per batch (see dbtools.demo.rows.write_batches).
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


def insert_users(writer, User, rng, clock, start, total, batch_size, progress) -> None:
    """The users as ``INSERT ... SELECT`` statements computed inside SQLite (see insert_servers).

    The same shapes as dbtools.demo.rows.generate_users: three username styles and two email styles
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
