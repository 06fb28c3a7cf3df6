"""salvage: every row outside the damaged pages of a SQLite file comes back, ready for restore.

The damaged files are copies of the test database made by the project (make_data), hurt
the two ways disks hurt them: a page in the middle of the servers table zeroed, and the
file's tail cut off. Which rows were on the lost pages is read from the pages themselves
before the damage (dbstat lists each table's leaf pages; a leaf's cells start with their
rowids), so the test knows exactly which rows must come back.
"""

import hashlib
import json
import sqlite3
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections

from dbtools.backups import create_backup
from dbtools.models import OperationLog
from dbtools.salvage import iter_set_aside

from .restore_helpers import make_data, table_rows

pytestmark = [pytest.mark.engines("sqlite"), pytest.mark.django_db(transaction=True)]

DATA = ("accounts_user", "servers_server", "servers_configuration")


def _varint(page: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(9):
        byte = page[pos + i]
        if i == 8:
            return (value << 8) | byte, pos + 9
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos + i + 1
    raise AssertionError("unreachable")


def leaf_rowids(path: Path, table: str) -> dict[int, list[int]]:
    """{page number: rowids on that leaf page} of ``table``'s b-tree."""
    conn = sqlite3.connect(path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = [
        r[0]
        for r in conn.execute("SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY path", (table,))
    ]
    conn.close()
    data = path.read_bytes()
    result = {}
    for pageno in pages:
        page = data[(pageno - 1) * page_size : pageno * page_size]
        head = 100 if pageno == 1 else 0
        assert page[head] == 0x0D, "a table leaf page"
        cells = int.from_bytes(page[head + 3 : head + 5], "big")
        rowids = []
        for i in range(cells):
            offset = int.from_bytes(page[head + 8 + 2 * i : head + 10 + 2 * i], "big")
            _, pos = _varint(page, offset)  # payload size
            rowid, _ = _varint(page, pos)
            rowids.append(rowid)
        result[pageno] = rowids
    return result


def interior_pages(path: Path) -> int:
    """The highest page number of an interior page of the data tables."""
    conn = sqlite3.connect(path)
    try:
        marks = ", ".join("?" * len(DATA))
        sql = f"SELECT max(pageno) FROM dbstat WHERE pagetype = 'internal' AND name IN ({marks})"
        return conn.execute(sql, DATA).fetchone()[0] or 1
    finally:
        conn.close()


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for part in (path, Path(f"{path}-wal")):
        digest.update(part.read_bytes() if part.exists() else b"")
    return digest.hexdigest()


@pytest.fixture
def sound_copy(tmp_path) -> Path:
    """A copy of the test database with 40 users and 400 servers (the servers span ~30 pages)."""
    make_data("s", users=40, servers_each=10)
    connections.close_all()
    copy = tmp_path / "damaged.sqlite3"
    source = sqlite3.connect(connection.settings_dict["NAME"])
    target = sqlite3.connect(copy)
    source.backup(target)
    target.execute("PRAGMA journal_mode = DELETE")
    # Planner statistics, as maintain leaves them: with them SQLite may answer a rowid
    # probe from an index, never touching the damaged table page.
    target.execute("ANALYZE")
    target.commit()
    source.close()
    target.close()
    return copy


def ids(path, table: str) -> set[int]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute(f'SELECT id FROM "{table}"')}
    finally:
        conn.close()


def owners(path) -> dict[int, int]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT id, owner_id FROM servers_server"))
    finally:
        conn.close()


def run_salvage(*args) -> tuple[int, dict]:
    out = StringIO()
    error = ""
    try:
        call_command("salvage", *args, "--json", stdout=out, stderr=StringIO())
        code = 0
    except CommandError as exc:
        code, error = exc.returncode, str(exc)
    return code, json.loads(out.getvalue()) if out.getvalue() else {"error": error}


def restores_clean(output: Path) -> None:
    """restore --force of the salvaged file succeeds, and validation of the result is clean."""
    call_command("restore", str(output), "--force", "--noinput", stdout=StringIO(), stderr=StringIO())
    call_command("validate", stdout=StringIO())  # raises CommandError (exit 1) on any problem


def table_result(result: dict, table: str) -> dict:
    return next(t for t in result["tables"] if t["table"] == table)


def test_zeroed_page_in_the_middle_of_servers(sound_copy, tmp_path):
    every = {t: ids(sound_copy, t) for t in DATA}
    leaves = leaf_rowids(sound_copy, "servers_server")
    assert len(leaves) >= 10, "the servers table must span many pages"
    middle = sorted(leaves)[len(leaves) // 2]
    lost = set(leaves[middle])
    page_size = 4096
    with open(sound_copy, "r+b") as fh:
        fh.seek((middle - 1) * page_size)
        fh.write(b"\x00" * page_size)
    before = file_digest(sound_copy)
    with pytest.raises(sqlite3.DatabaseError, match="malformed"):
        sqlite3.connect(sound_copy).execute("SELECT count(*) FROM servers_server WHERE length(motd) >= 0").fetchone()

    output = tmp_path / "out" / "salvaged.sqlite3"
    code, result = run_salvage(str(sound_copy), "--output", str(output))

    assert code == 1, "rows were lost: the exit status says so"
    assert file_digest(sound_copy) == before, "the damaged file was never written to"
    assert ids(output, "servers_server") == every["servers_server"] - lost
    assert ids(output, "accounts_user") == every["accounts_user"]
    assert ids(output, "servers_configuration") == every["servers_configuration"]
    servers = table_result(result, "servers_server")
    assert servers["recovered"] == len(every["servers_server"]) - len(lost)
    assert len(servers["lost_ranges"]) == 1, (servers["lost_ranges"], sorted(lost))
    [(first, last)] = servers["lost_ranges"]
    assert first <= min(lost) and max(lost) <= last
    assert not (every["servers_server"] - lost) & set(range(first, last + 1)), "no readable row reported lost"
    assert salvage_log(output) == [("success", 0)], "logged into the salvage, not into the damaged file"

    restores_clean(output)
    assert {int(r[0]) for r in table_rows("servers_server")} == every["servers_server"] - lost


def test_sound_pages_between_zeroed_ones_are_all_read(sound_copy, tmp_path):
    """Runs of zeroed leaves (in rowid order) with one sound leaf between them: it comes back,
    though a search that only doubled its steps past the damage would jump over it."""
    every = ids(sound_copy, "servers_server")
    leaves = leaf_rowids(sound_copy, "servers_server")  # in rowid order (dbstat's path)
    order = list(leaves)
    zeroed = [order[i] for i in (1, 2, 3, 5, 6, 8)]
    lost = {r for page in zeroed for r in leaves[page]}
    with open(sound_copy, "r+b") as fh:
        for page in zeroed:
            fh.seek((page - 1) * 4096)
            fh.write(b"\x00" * 4096)
    output = tmp_path / "between.sqlite3"
    code, result = run_salvage(str(sound_copy), "--output", str(output))
    assert code == 1
    assert ids(output, "servers_server") == every - lost
    assert len(table_result(result, "servers_server")["lost_ranges"]) == 3, "three runs of damage"


def test_cut_tail(sound_copy, tmp_path):
    every = {t: ids(sound_copy, t) for t in DATA}
    server_owner = owners(sound_copy)
    on_leaves = {t: leaf_rowids(sound_copy, t) for t in DATA}
    # The file is cut before the last quarter of the servers' leaf pages (where earlier
    # tests' freed pages put them varies), never before an interior page of the data
    # tables: the rows lost are then exactly those of the leaves cut off.
    server_pages = sorted(on_leaves["servers_server"])
    cut = max(server_pages[-(len(server_pages) // 4)] - 1, interior_pages(sound_copy))
    readable = {t: {r for page, rows in on_leaves[t].items() if page <= cut for r in rows} for t in DATA}
    assert readable["servers_server"] != every["servers_server"], "the cut reaches into the servers table"
    with open(sound_copy, "r+b") as fh:
        fh.truncate(cut * 4096)
    before = file_digest(sound_copy)

    output = tmp_path / "salvaged.sqlite3"
    code, result = run_salvage(str(sound_copy), "--output", str(output))

    assert code == 1 and output.exists(), result
    assert file_digest(sound_copy) == before
    users = ids(output, "accounts_user")
    assert users == readable["accounts_user"]
    with_owner = {s for s in readable["servers_server"] if server_owner[s] in users}
    assert ids(output, "servers_server") == with_owner
    servers = table_result(result, "servers_server")
    assert servers["recovered"] == len(with_owner)
    assert servers["set_aside"] == len(readable["servers_server"] - with_owner)
    aside = [r for r in iter_set_aside(result["set_aside_file"]) if r["table"] == "servers_server"]
    assert {r["rowid"] for r in aside} == readable["servers_server"] - with_owner
    ranges = servers["lost_ranges"]
    for rowid in every["servers_server"] - readable["servers_server"]:
        assert any(a <= rowid and (b is None or rowid <= b) for a, b in ranges), rowid
    rightmost = list(on_leaves["servers_server"])[-1]  # the leaf of the highest rowids
    assert (ranges[-1][1] is None) == (rightmost > cut), "lost to the end exactly when the last leaf is cut"

    restores_clean(output)


def salvage_log(path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT outcome, json_extract(details, '$.complete') FROM dbtools_operationlog WHERE operation = 'salvage'"
        ).fetchall()
    finally:
        conn.close()


def test_the_live_database_is_salvaged_by_default_and_never_written(tmp_path):
    make_data("live")
    connections.close_all()
    live = Path(connection.settings_dict["NAME"])
    before = file_digest(live)
    output = tmp_path / "whole.sqlite3"
    code, result = run_salvage("--output", str(output))
    connections.close_all()
    assert code == 0 and result["complete"]
    assert file_digest(live) == before
    assert ids(output, "servers_server") == ids(live, "servers_server")
    assert salvage_log(output) == [("success", 1)]


def test_damaged_live_database_salvaged_then_restored(tmp_path):
    """The whole branch of the recovery procedure on the live file itself."""
    make_data("dmg", users=40, servers_each=10)
    connections.close_all()
    live = Path(connection.settings_dict["NAME"])
    conn = sqlite3.connect(live)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    every = ids(live, "servers_server")
    leaves = leaf_rowids(live, "servers_server")
    page = list(leaves)[len(leaves) // 2]
    with open(live, "r+b") as fh:
        fh.seek((page - 1) * 4096)
        fh.write(b"\x00" * 4096)
    before = file_digest(live)
    output = tmp_path / "rescued.sqlite3"

    code, result = run_salvage("--output", str(output))

    assert code == 1
    assert file_digest(live) == before, "the damaged live file was never written to"
    call_command(
        "restore", str(output), "--force", "--noinput", "--no-safety-backup", stdout=StringIO(), stderr=StringIO()
    )
    call_command("validate", stdout=StringIO())
    assert {int(r[0]) for r in table_rows("servers_server")} == every - set(leaves[page])
    assert OperationLog.objects.filter(operation="salvage").exists(), "the salvage's log entry came along"


def test_compare_with_a_backup(tmp_path):
    make_data("old")
    backup = create_backup(reason="manual").path
    make_data("new")
    from servers.models import Server

    changed = Server.objects.order_by("id").first()
    changed.motd = "changed after the backup"
    changed.save()
    output = tmp_path / "cmp.sqlite3"
    code, result = run_salvage("--output", str(output), "--compare-with", backup)
    assert code == 0
    servers = next(c for c in result["comparison"] if c["table"] == "servers_server")
    new_ids = sorted(Server.objects.filter(server_name__startswith="new_").values_list("id", flat=True))
    assert servers["only_in_salvage"] == len(new_ids)
    assert servers["sample_only_in_salvage"] == new_ids[:10]
    assert servers["only_in_backup"] == 0
    assert servers["differing"] == 1 and servers["sample_differing"] == [changed.id]


def test_output_that_exists_is_refused(tmp_path):
    output = tmp_path / "taken.sqlite3"
    output.write_bytes(b"keep me")
    code, result = run_salvage("--output", str(output))
    assert code == 2
    assert output.read_bytes() == b"keep me"


def test_not_a_database_is_refused_in_one_line(tmp_path):
    bad = tmp_path / "notes.sqlite3"
    bad.write_text("not a database\n" * 100)
    code, result = run_salvage(str(bad), "--output", str(tmp_path / "o.sqlite3"))
    assert code == 1
    assert "nothing can be salvaged" in result["error"]
    assert not (tmp_path / "o.sqlite3").exists()
