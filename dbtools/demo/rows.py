"""The demo rows built in Python and written in batches: users, servers, configuration entries.

Rows are built as plain tuples and written with the engine's ``bulk_insert`` (COPY on
PostgreSQL, executemany elsewhere), one transaction per batch, with explicit ids so
servers can point at their owners without reading them back; the next batch is built
in a second thread while one is written. Every draw comes from the run's seeded
``random.Random``, in order: a seed gives the same rows.
"""

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

from django.db import transaction

from .spec import (
    ACTIVE_STATUSES,
    ADJECTIVES,
    CONFIG_DESCRIPTIONS,
    CONFIG_FIELDS,
    CONFIG_NAMES,
    CONFIG_SECTIONS,
    DEMO_PASSWORD_HASH,
    DIFFICULTIES,
    EMAIL_DOMAINS,
    FIRST_BATCH,
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


def write_batches(writer, model, fields, total, batch_size, progress, label, make_rows) -> None:
    """Write ``total`` rows in batches, the next batch built while this one is written.

    The database driver releases the GIL while the engine works, so building rows in
    a second thread uses the second core. One worker keeps the random draws in order:
    the data stays deterministic.
    """
    done = 0
    # A small first batch: nothing overlaps its building, so the pipeline starts sooner.
    plan = list(batches(total, batch_size, first=FIRST_BATCH))
    with writer.loading(model), ThreadPoolExecutor(max_workers=1, thread_name_prefix="datagen") as pool:
        pending = pool.submit(make_rows, *plan[0]) if plan else None
        for index, (_offset, count) in enumerate(plan):
            rows = pending.result()
            if index + 1 < len(plan):
                pending = pool.submit(make_rows, *plan[index + 1])
            # The batch's transaction, or (SQLite, inside the table's one transaction) no
            # savepoint: it would copy every index page it touches into a statement journal,
            # and a bad batch rolls the whole table back anyway.
            with transaction.atomic(using=writer.connection.alias, savepoint=False):
                writer.write(model, fields, rows)
                writer.verify(model, rows[0][0], rows[-1][0])
            done += count
            if progress:
                progress(label, done, total)


def generate_users(writer, User, rng, clock, start, total, batch_size, progress, joined_age) -> None:
    """``total`` users from id ``start``; the seconds before the anchor each joined are appended to ``joined_age``."""
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

    write_batches(writer, User, USER_FIELDS, total, batch_size, progress, "users", make_rows)


def free_ports(connection, Server) -> list[int]:
    """Ports no existing Running/Starting server uses, nearest to Minecraft's 25565 first."""
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


def generate_servers(
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
    free,
) -> int:
    """``total`` servers from id ``start``, owned by ``owner_ids``, the active ones on the ``free`` ports; how many are active."""
    r = rng.random
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
        joined = dict(User._base_manager.using(writer.connection.alias).values_list("id", "date_joined"))
        anchor = clock.anchor.replace(tzinfo=dt.UTC)
        owner_age = [max(0, int((anchor - joined[o]).total_seconds())) for o in owner_ids]
    # Weighted and combined choices as lookup tables: one random() and one index per pick.
    prefixes = [f"{a}{sep}{b}{sep}" for a in ADJECTIVES for b in NOUNS for sep in ("-", "_")]
    # Stopped servers keep whatever port they had; many never changed Minecraft's 25565.
    stopped_ports = [25565] * 400 + [25566 + k for k in range(400)] + [1024 + (k * 7919) % 64512 for k in range(200)]
    tables = [MEMORY_TABLE, GAMEMODES, DIFFICULTIES, VERSIONS, MOTDS]
    n_prefix, n_stopped, n_maxp = len(prefixes), len(stopped_ports), len(MAX_PLAYERS)
    days, tods, base = clock.days, clock.times_of_day, clock.base

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

    write_batches(writer, Server, SERVER_FIELDS, total, batch_size, progress, "servers", make_rows)
    return n_active


def generate_configs(writer, Configuration, rng, clock, start, total, batch_size, progress, owner_ids) -> None:
    """``total`` configuration entries from id ``start``, edited by the first of ``owner_ids``."""
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

    write_batches(writer, Configuration, CONFIG_FIELDS, total, batch_size, progress, "configuration", make_rows)


# Lehmer ("MINSTD") generator: x -> x * 48271 mod (2**31 - 1). Its values stay
# below 2**31, so the product of two stays below SQLite's 2**63 integer limit (past
# it SQLite silently switches to floating point), and Python can jump it to any id
