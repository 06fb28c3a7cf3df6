"""Salvage what can be read from a damaged SQLite database into a new, sound file.

For the day the live file says "database disk image is malformed" and no backup is
recent enough. The damaged file is never written to: it and its WAL are copied aside
(read as bytes, never opened by SQLite) and only the copy is opened, read-only.

Each of our tables is read in rowid order with a cursor that resumes after the last
row read; when a read fails on a damaged page, an exponential then binary search finds
the first rowid past the damage that reads again, and the rowids in between are
reported lost. (SQLite's own ``.recover`` needs the ``sqlite_dbpage`` virtual table,
which this machine's SQLite is built without; the rowid walk needs nothing but
SELECT.) The rows read are loaded into a freshly migrated database file, so every rule
of the models holds in it; a row that breaks one (a CHECK, a UNIQUE, a foreign key
whose parent was lost) is set aside in a JSON lines file beside the output instead.

The output has no manifest: it is restored with ``restore --force``, which runs every
other guard of restore on it, or compared with a backup first (``compare_with_backup``).
"""

import base64
import json
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from .errors import CouldNotRun, DbtoolsError
from .oplog import OperationRecord, os_user, write_entry

BATCH = 500
MAX_ROWID = 2**63 - 1
# Tables the fresh migration fills itself; the damaged file's copy of them is not wanted.
SKIPPED_TABLES = {"django_migrations", "sqlite_sequence"}


@dataclass
class TableSalvage:
    """What came back of one table."""

    table: str
    recovered: int = 0
    set_aside: int = 0
    lost_ranges: list[tuple[int, int | None]] = field(default_factory=list)  # (first, last); None: to the end
    unreadable: str = ""  # the whole table could not be read (its schema or root page is gone)

    @property
    def lost_text(self) -> str:
        return ", ".join(f"{a}-{b if b is not None else 'end'}" if a != b else str(a) for a, b in self.lost_ranges)


@dataclass
class SalvageResult:
    """The salvage of one damaged file: where the output is, and per table what it holds."""

    source: str
    output: str
    set_aside_file: str
    method: str
    tables: list[TableSalvage] = field(default_factory=list)
    duration_ms: int = 0

    @property
    def complete(self) -> bool:
        return all(not t.lost_ranges and not t.set_aside and not t.unreadable for t in self.tables)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["complete"] = self.complete
        return data


# --- reading the damaged copy ----------------------------------------------------------


def _is_damage(exc: sqlite3.Error) -> bool:
    """Errors that mean a damaged page (SQLITE_CORRUPT, NOTADB, IOERR), not a mistake of ours."""
    text = str(exc)
    return type(exc) is sqlite3.DatabaseError or any(
        word in text for word in ("malformed", "disk I/O error", "not a database")
    )


def _fetch_from(conn, sql: str, start: int, out: list) -> int | None:
    """Append rows with rowid >= start to ``out``; None when the table's end was reached
    cleanly, else the rowid at which reading failed (the last rowid read + 1, or start)."""
    next_rowid = start
    try:
        # One row at a time: fetchmany() drops the rows of a batch that ends in an error.
        for row in conn.execute(sql, (start,)):
            out.append(row)
            next_rowid = row[0] + 1
    except sqlite3.DatabaseError as exc:
        if not _is_damage(exc):
            raise
        return next_rowid
    return None


def _creep(conn, sql_next: str, start: int, out: list) -> int:
    """Read single rows from ``start`` until one fails; the rowid at which it failed.

    The cursor of a bulk read steps one row ahead, so the row just before a damaged page
    is lost with the error: one row per query (LIMIT 1 never steps past it) gets it back.
    """
    while True:
        try:
            row = conn.execute(sql_next, (start,)).fetchone()
        except sqlite3.DatabaseError as exc:
            if not _is_damage(exc):
                raise
            return start
        if row is None:  # the end: the failure was past the last row
            return start
        out.append(row)
        start = row[0] + 1


def _readable_from(conn, sql_one: str, rowid: int) -> bool:
    """Whether seeking to ``rowid`` reads (a row or the end) without touching a damaged page."""
    try:
        conn.execute(sql_one, (rowid,)).fetchall()
    except sqlite3.DatabaseError as exc:
        if not _is_damage(exc):
            raise
        return False
    return True


def _skip_damage(conn, sql_one: str, failed_at: int, dividers: list[int]) -> int | None:
    """The smallest rowid past ``failed_at`` from which reading works again; None when none does.

    A damaged page covers a contiguous rowid range: the seek fails inside it and works
    past it. The first rowids of the b-tree's children (``dividers``, read from its interior
    pages) are probed in order, so a sound leaf between two damaged ones is never jumped
    over; past the last of them (or without them) a gallop finds a working rowid. A
    bisection then finds the boundary.
    """
    bad = failed_at
    good = None
    for start in (d + 1 for d in dividers if d + 1 > failed_at):
        if _readable_from(conn, sql_one, start):
            good = start
            break
        bad = start
    step = 1
    while good is None:
        probe = min(bad + step, MAX_ROWID)
        if _readable_from(conn, sql_one, probe):
            good = probe
        elif probe == MAX_ROWID:
            return None
        else:
            step *= 2
    while good - bad > 1:
        mid = (bad + good) // 2
        if _readable_from(conn, sql_one, mid):
            good = mid
        else:
            bad = mid
    return good


def _varint(page: bytes, pos: int) -> tuple[int, int]:
    """SQLite's variable-length integer at ``pos``: (value, position after it)."""
    value = 0
    for i in range(9):
        byte = page[pos + i]
        if i == 8:
            return (value << 8) | byte, pos + 9
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos + i + 1
    raise AssertionError("unreachable")


def divider_keys(path: Path, root: int) -> list[int]:
    """The rowid keys of a table b-tree's interior pages, read from the file's bytes.

    Only hints for where to probe: a damaged interior page is skipped (its children's
    ranges are then found by the gallop), and every row still comes from SQLite's reads.
    """
    keys: set[int] = set()
    with open(path, "rb") as fh:
        header = fh.read(100)
        if len(header) < 100:
            return []
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        stack, seen = [root], set()
        while stack:
            number = stack.pop()
            if number in seen or number < 1:
                continue
            seen.add(number)
            fh.seek((number - 1) * page_size)
            page = fh.read(page_size)
            head = 100 if number == 1 else 0
            if len(page) < page_size or page[head] != 0x05:  # not a table interior page
                continue
            try:
                cells = int.from_bytes(page[head + 3 : head + 5], "big")
                stack.append(int.from_bytes(page[head + 8 : head + 12], "big"))
                for i in range(cells):
                    offset = int.from_bytes(page[head + 12 + 2 * i : head + 14 + 2 * i], "big")
                    stack.append(int.from_bytes(page[offset : offset + 4], "big"))
                    keys.add(_varint(page, offset + 4)[0])
            except IndexError:  # a damaged interior page: its hints are lost, not the rows
                continue
    return sorted(keys)


def read_table(
    conn, table: str, columns: list[str], dividers: list[int] = ()
) -> tuple[list[tuple], list[tuple[int, int | None]]]:
    """Every readable row of ``table`` (rowid first, then ``columns``) and the rowid ranges lost."""
    quoted = ", ".join(_q(c) for c in columns)
    # NOT INDEXED: every read, the probes included, goes through the table's own b-tree and
    # reads whole rows; a probe answered from an index (planner statistics make that
    # possible) would call a damaged page readable.
    sql = f"SELECT rowid, {quoted} FROM {_q(table)} NOT INDEXED WHERE rowid >= ? ORDER BY rowid"
    sql_one = f"{sql} LIMIT 1"
    rows: list[tuple] = []
    lost: list[tuple[int, int | None]] = []
    start = -MAX_ROWID - 1
    while True:
        failed_at = _fetch_from(conn, sql, start, rows)
        if failed_at is None:
            return rows, lost
        failed_at = _creep(conn, sql_one, failed_at, rows)
        resume = _skip_damage(conn, sql_one, failed_at, list(dividers))
        lost.append((failed_at, None if resume is None else resume - 1))
        if resume is None:
            return rows, lost
        start = resume


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _columns(conn, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({_q(table)})")]


# --- the fresh target --------------------------------------------------------------------


def _migrated_file(database: str, path: Path) -> None:
    """Create ``path`` as an empty database with every migration of the code applied.

    No post_migrate signal: content types and permissions come from the damaged file
    (a later ``migrate`` or restore adds whatever was lost).
    """
    from django.db.migrations.executor import MigrationExecutor

    from .restore import scratch_alias

    with scratch_alias(database, str(path)) as alias:
        executor = MigrationExecutor(connections[alias])
        targets = executor.loader.graph.leaf_nodes()
        executor.migrate(targets, plan=executor.migration_plan(targets))


def _load_order(target) -> list[str]:
    """The target's tables, parents before children (self references ignored)."""
    tables = [
        r[0]
        for r in target.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        if r[0] not in SKIPPED_TABLES
    ]
    parents = {
        t: {r[2] for r in target.execute(f"PRAGMA foreign_key_list({_q(t)})") if r[2] != t and r[2] in tables}
        for t in tables
    }
    order: list[str] = []
    while len(order) < len(tables):
        ready = sorted(t for t in tables if t not in order and parents[t] <= set(order))
        if not ready:  # a cycle: load the rest as they come, the foreign key check still runs
            ready = sorted(t for t in tables if t not in order)
        order.extend(ready)
    return order


def _jsonable(value):
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode()}
    return value


def _insert_rows(target, table: str, columns: list[str], rows: list[tuple], aside) -> tuple[int, int]:
    """Insert ``rows`` (rowid first) into ``table``; rows a rule refuses go to ``aside``."""
    sql = f"INSERT INTO {_q(table)} ({', '.join(_q(c) for c in columns)}) VALUES ({', '.join('?' * len(columns))})"
    loaded = refused = 0
    for i in range(0, len(rows), BATCH):
        batch = rows[i : i + BATCH]
        target.execute("SAVEPOINT batch")
        try:
            target.executemany(sql, [row[1:] for row in batch])
            target.execute("RELEASE batch")
            loaded += len(batch)
            continue
        except sqlite3.IntegrityError:
            target.execute("ROLLBACK TO batch")
            target.execute("RELEASE batch")
        for row in batch:  # one by one, to find the rows the rules refuse
            try:
                target.execute(sql, row[1:])
                loaded += 1
            except sqlite3.IntegrityError as exc:
                _set_aside(aside, table, columns, row, str(exc))
                refused += 1
    return loaded, refused


def _set_aside(aside, table: str, columns: list[str], row: tuple, reason: str) -> None:
    record = {"table": table, "rowid": row[0], "reason": reason}
    record["row"] = {c: _jsonable(v) for c, v in zip(columns, row[1:], strict=True)}
    aside.write(json.dumps(record, sort_keys=True) + "\n")


def _drop_orphans(target, table: str, columns: list[str], aside) -> int:
    """Move the rows of ``table`` whose parent row is missing to ``aside``; how many."""
    rowids = sorted({r[1] for r in target.execute(f"PRAGMA foreign_key_check({_q(table)})")})
    quoted = ", ".join(_q(c) for c in columns)
    for rowid in rowids:
        row = target.execute(f"SELECT rowid, {quoted} FROM {_q(table)} WHERE rowid = ?", (rowid,)).fetchone()
        _set_aside(aside, table, columns, row, "FOREIGN KEY constraint failed: its parent row was not recovered")
        target.execute(f"DELETE FROM {_q(table)} WHERE rowid = ?", (rowid,))
    return len(rowids)


# --- the service --------------------------------------------------------------------------


def _copy_aside(source: Path, workdir: Path) -> Path:
    """Copy the damaged file and its WAL into ``workdir`` as bytes; the copy's path."""
    copy = workdir / "damaged.sqlite3"
    try:
        shutil.copyfile(source, copy)
    except OSError as exc:
        raise CouldNotRun(f"cannot read {source}: {exc.strerror or exc}") from None
    wal = Path(f"{source}-wal")
    if wal.is_file():
        shutil.copyfile(wal, Path(f"{copy}-wal"))
    return copy


def _open_copy(copy: Path):
    """The copy opened read-only, with its WAL (SQLite needs to write the -shm beside the copy)."""
    try:
        conn = sqlite3.connect(f"file:{copy}?mode=rw", uri=True)
        conn.execute("PRAGMA query_only = ON")
        # A file shorter than its header says is refused as corrupt unless the schema is
        # "writable"; query_only still forbids every write (and it is the copy anyway).
        conn.execute("PRAGMA writable_schema = ON")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise DbtoolsError(f"nothing can be salvaged: the file's schema cannot be read ({exc})") from None
    return conn


def default_output() -> Path:
    from .backups import backup_directory

    stamp = datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
    return backup_directory() / f"salvage_{stamp}.sqlite3"


def salvage_database(
    source: str | os.PathLike | None = None,
    *,
    output: str | os.PathLike | None = None,
    database: str = DEFAULT_DB_ALIAS,
) -> SalvageResult:
    """Recover every readable row of the SQLite file ``source`` (default: the live database's)
    into a new, freshly migrated file ``output``; the set-aside rows into ``output``.set-aside.jsonl."""
    connection = connections[database]
    if connection.vendor != "sqlite":
        raise CouldNotRun(f"salvage works on SQLite files; database '{database}' is {connection.vendor}")
    source = Path(source if source is not None else connection.settings_dict["NAME"])
    if not source.is_file():
        raise CouldNotRun(f"no such SQLite file: {source}")
    output = Path(output) if output else default_output()
    if output.exists():
        raise CouldNotRun(f"{output} exists already; salvage never writes over a file")
    output.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    aside_path = output.with_name(output.name + ".set-aside.jsonl")
    started, t0 = timezone.now(), time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mcmanager-salvage-", dir=output.parent) as work:
        result = _salvage(source, Path(work), output, aside_path, database)
    result.duration_ms = int((time.monotonic() - t0) * 1000)
    _log_into_output(result, database, started)
    return result


def _log_into_output(result: SalvageResult, database: str, started) -> None:
    """The operations log entry goes into the salvaged file, never into the damaged one
    (a restore of the salvage carries it over into the live database)."""
    from .restore import scratch_alias

    record = OperationRecord(
        operation="salvage",
        database=database,
        actor=os_user(),
        file=result.output,
        message=f"salvaged {sum(t.recovered for t in result.tables)} rows from {Path(result.source).name}",
        details={"source": result.source, "complete": result.complete, "tables": [asdict(t) for t in result.tables]},
    )
    with scratch_alias(database, result.output) as alias:
        write_entry(record, started, result.duration_ms / 1000, alias)


def _salvage(source: Path, work: Path, output: Path, aside_path: Path, database: str) -> SalvageResult:
    copy = _copy_aside(source, work)
    damaged = _open_copy(copy)
    partial = work / "salvaged.sqlite3"
    result = SalvageResult(
        source=str(source), output=str(output), set_aside_file=str(aside_path), method="rowid-range read"
    )
    try:
        _migrated_file(database, partial)
        target = sqlite3.connect(partial, isolation_level=None)
        try:
            target.execute("PRAGMA foreign_keys = OFF")  # checked per table below, parents first
            target.execute("BEGIN")
            with open(work / "set-aside.jsonl", "w", encoding="utf-8") as aside:
                for table in _load_order(target):
                    result.tables.append(_salvage_table(damaged, copy, target, table, aside))
            target.execute("COMMIT")
            target.execute("PRAGMA journal_mode = DELETE")
        finally:
            target.close()
    finally:
        damaged.close()
    os.chmod(partial, 0o600)
    os.chmod(work / "set-aside.jsonl", 0o600)
    os.replace(work / "set-aside.jsonl", aside_path)
    os.replace(partial, output)
    return result


def _salvage_table(damaged, copy: Path, target, table: str, aside) -> TableSalvage:
    found = TableSalvage(table=table)
    wanted = _columns(target, table)
    try:
        have = set(_columns(damaged, table))
    except sqlite3.DatabaseError as exc:
        found.unreadable = str(exc)
        return found
    if not have:
        found.unreadable = "not in the damaged file"
        return found
    columns = [c for c in wanted if c in have]
    try:
        root = damaged.execute("SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
        dividers = divider_keys(copy, root.fetchone()[0])
        rows, found.lost_ranges = read_table(damaged, table, columns, dividers)
    except sqlite3.DatabaseError as exc:
        found.unreadable = str(exc)
        return found
    loaded, refused = _insert_rows(target, table, columns, rows, aside)
    orphans = _drop_orphans(target, table, columns, aside)
    found.recovered = loaded - orphans
    found.set_aside = refused + orphans
    return found


# --- comparing with a backup ----------------------------------------------------------------


@dataclass
class TableComparison:
    table: str
    only_in_salvage: int = 0
    only_in_backup: int = 0
    differing: int = 0
    sample_only_in_salvage: list = field(default_factory=list)
    sample_only_in_backup: list = field(default_factory=list)
    sample_differing: list = field(default_factory=list)


COMPARED_TABLES = ("accounts_user", "servers_server", "servers_configuration")
SAMPLES = 10


def compare_with_backup(salvaged: str | os.PathLike, backup: str | os.PathLike, database: str = DEFAULT_DB_ALIAS):
    """Rows only in the salvage, only in the backup, and differing, per data table (by id).

    The backup goes through restore's checks (manifest, checksum, structure) and is loaded
    into a scratch file first; a backup that fails them is refused, never read.
    """
    from .engines import get_engine
    from .restore import Checks, check_file, loaded_scratch, resolve_source

    path = resolve_source(backup, latest=False, database=database)
    engine = get_engine(database)
    if engine.vendor != "sqlite":
        raise CouldNotRun(f"salvage compares SQLite files; database '{database}' is {engine.display_name}")
    checks = Checks()
    manifest = check_file(path, engine, True, checks)
    with loaded_scratch(engine, path, manifest, checks) as scratch:
        conn = sqlite3.connect(f"file:{salvaged}?mode=ro", uri=True)
        try:
            conn.execute("ATTACH DATABASE ? AS backup", (f"file:{scratch.name}?mode=ro",))
            return [_compare_table(conn, table) for table in COMPARED_TABLES]
        finally:
            conn.close()


def _compare_table(conn, table: str) -> TableComparison:
    t = _q(table)
    columns = [c for c in _columns(conn, table) if c in set(_pragma_columns(conn, "backup", table))]
    same = " AND ".join(f"s.{_q(c)} IS o.{_q(c)}" for c in columns)

    def ids(sql: str) -> tuple[int, list]:
        count = conn.execute(f"SELECT count(*) FROM ({sql})").fetchone()[0]
        sample = [r[0] for r in conn.execute(f"{sql} ORDER BY 1 LIMIT {SAMPLES}")]
        return count, sample

    result = TableComparison(table=table)
    result.only_in_salvage, result.sample_only_in_salvage = ids(
        f"SELECT id FROM main.{t} EXCEPT SELECT id FROM backup.{t}"
    )
    result.only_in_backup, result.sample_only_in_backup = ids(
        f"SELECT id FROM backup.{t} EXCEPT SELECT id FROM main.{t}"
    )
    result.differing, result.sample_differing = ids(
        f"SELECT s.id FROM main.{t} s JOIN backup.{t} o ON o.id = s.id WHERE NOT ({same})"
    )
    return result


def _pragma_columns(conn, schema: str, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA {schema}.table_info({_q(table)})")]


def iter_set_aside(path: str | os.PathLike) -> Iterator[dict]:
    """The rows a salvage set aside, one dict each."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)
