"""Crafted SQLite backups: nothing in them runs, whatever their manifest says.

Each file is a real backup of the test database, decompressed, changed with the sqlite3
module (a trigger, a view, a virtual table, a table or column that is not ours, a
generated column), compressed again, and either resealed (restore_helpers.reseal: the
manifest vouches for the new bytes, as an attacker holding the key would make it) or
left without a manifest and restored under --force. Every way of loading it refuses it
in one line, the live file stays byte-identical, and the payload's mark is absent.
"""

import shutil
import sqlite3
from io import StringIO
from pathlib import Path

import pytest
import zstandard
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.utils import timezone

from accounts.models import User
from dbtools.backups import create_backup, open_dump
from dbtools.models import OperationLog

from .restore_helpers import live_fingerprint, make_data, manifest_path, reseal

pytestmark = [pytest.mark.engines("sqlite"), pytest.mark.django_db(transaction=True)]


def fts5_available() -> bool:
    try:
        sqlite3.connect(":memory:").execute("CREATE VIRTUAL TABLE t USING fts5(x)")
    except sqlite3.OperationalError:
        return False
    return True


# (what the file gets, the SQL that puts it there, what the refusal names)
HOSTILE = {
    "trigger": (
        "CREATE TRIGGER evil_admin AFTER INSERT ON dbtools_operationlog "
        "BEGIN UPDATE accounts_user SET is_admin = 1; END;",
        "holds a trigger evil_admin on dbtools_operationlog: refused, nothing of it was run",
    ),
    "view": (
        "CREATE VIEW evil_view AS SELECT id, 1 AS is_admin FROM accounts_user;",
        "holds a view evil_view: refused",
    ),
    "virtual table": (
        "CREATE VIRTUAL TABLE evil_fts USING fts5(body);",
        "holds a virtual table evil_fts: refused",
    ),
    "extra table": (
        "CREATE TABLE evil_extra (payload TEXT); INSERT INTO evil_extra VALUES ('x');",
        "holds a table evil_extra that is not mcmanager's: refused",
    ),
    "table with our prefix": (
        "CREATE TABLE accounts_evil (payload TEXT);",
        "holds a table accounts_evil that mcmanager's migrations",
    ),
    "generated column": (
        "ALTER TABLE accounts_user ADD COLUMN evil_gen INTEGER GENERATED ALWAYS AS (1) VIRTUAL;",
        "holds a generated column evil_gen in accounts_user: refused",
    ),
    "extra column": (
        "ALTER TABLE accounts_user ADD COLUMN evil_col TEXT;",
        "holds a column evil_col in accounts_user that mcmanager's migrations do not create",
    ),
}


def call(command: str, *args) -> tuple[int, str]:
    """(exit status, the one line on stderr) of call_command, as the shell would see them."""
    out, err = StringIO(), StringIO()
    try:
        call_command(command, *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, str(exc)
    return 0, err.getvalue()


def edited_copy(backup: Path, target: Path, sql: str, *, with_manifest: bool) -> Path:
    """``backup`` decompressed, ``sql`` run on it with the sqlite3 module, compressed into ``target``."""
    work = target.with_name(target.name + ".work")
    with open_dump(backup) as stream:
        work.write_bytes(stream.read())
    conn = sqlite3.connect(work)
    conn.executescript(sql)
    conn.commit()
    conn.close()
    target.write_bytes(zstandard.ZstdCompressor().compress(work.read_bytes()))
    work.unlink()
    if with_manifest:
        shutil.copyfile(manifest_path(backup), manifest_path(target))
        reseal(target)
    return target


@pytest.fixture
def good_backup(tmp_path) -> Path:
    """Users without admin rights, their servers, and a verified backup of them."""
    make_data("a")
    backup = Path(create_backup(reason="manual").path)
    assert not User.objects.filter(is_admin=True).exists()
    return backup


def assert_refused_everywhere(crafted: Path, fragment: str, *, with_manifest: bool) -> None:
    before = live_fingerprint()
    force = [] if with_manifest else ["--force"]
    attempts = [
        ("restore", str(crafted), "--noinput", *force),
        ("restore", str(crafted), "--check", *force),
    ]
    if with_manifest:
        attempts.append(("backup", "--check", str(crafted)))
    for command, *args in attempts:
        code, err = call(command, *args)
        assert code == 1, (command, args, err)
        # restore: "<file> holds ..."; backup --check: "<path> failed verification: content: holds ..."
        assert (f"{crafted.name} {fragment}" if command == "restore" else fragment) in err, (command, args, err)
        assert "\n" not in err.strip(), "a refusal is one line"
        assert live_fingerprint() == before, f"{command} {args} changed the live database"


@pytest.mark.parametrize("with_manifest", [True, False], ids=["resealed", "no-manifest-forced"])
@pytest.mark.parametrize("kind", list(HOSTILE))
def test_crafted_backup_is_refused_and_nothing_of_it_runs(good_backup, tmp_path, kind, with_manifest):
    if kind == "virtual table" and not fts5_available():
        pytest.skip("this SQLite has no fts5")
    sql, fragment = HOSTILE[kind]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    crafted = edited_copy(
        good_backup, elsewhere / "db_backup_20260101_000000.sqlite3.zst", sql, with_manifest=with_manifest
    )
    assert_refused_everywhere(crafted, fragment, with_manifest=with_manifest)
    # The live database has none of it, and the next logged operation makes nobody an admin.
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE name LIKE 'evil%' OR sql LIKE '%evil%'")
        assert cursor.fetchall() == []
    OperationLog.objects.create(started_at=timezone.now(), operation="backup", database="default", outcome="ok")
    assert not User.objects.filter(is_admin=True).exists()


def test_the_trigger_file_is_hostile_when_loaded_naively(good_backup, tmp_path):
    """The control: opened as a database, the crafted file does make every user an admin."""
    crafted = edited_copy(good_backup, tmp_path / "x.sqlite3.zst", HOSTILE["trigger"][0], with_manifest=False)
    plain = tmp_path / "plain.sqlite3"
    plain.write_bytes(zstandard.ZstdDecompressor().decompress(crafted.read_bytes()))
    conn = sqlite3.connect(plain)
    conn.execute(
        "INSERT INTO dbtools_operationlog (started_at, operation, actor, database, outcome, duration_ms, "
        "file, checksum, message, details) VALUES ('2026-01-01', 'x', '', 'default', 'ok', 0, '', '', '', '{}')"
    )
    assert conn.execute("SELECT MIN(is_admin) FROM accounts_user").fetchone()[0] == 1
    conn.close()


def test_hostile_table_definition_is_replaced_by_ours(good_backup, tmp_path):
    """A table of ours whose definition was rewritten (a CHECK calling load_extension, a
    DEFAULT making admins) restores as rows only: the live schema is the migrations'."""

    def schema() -> dict:
        with connection.cursor() as cursor:
            cursor.execute("SELECT name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name")
            return dict(cursor.fetchall())

    ours = schema()
    sql = (
        "PRAGMA writable_schema = ON;"
        "UPDATE sqlite_master SET sql = replace(replace(sql, 'CHECK (LENGTH(\"value\") >= 1)', "
        "'CHECK (load_extension(''/nonexistent/evil'') IS NULL)'), '\"description\" varchar(255) NOT NULL', "
        "'\"description\" varchar(255) NOT NULL DEFAULT (load_extension(''/nonexistent/evil''))') "
        "WHERE name = 'servers_configuration';"
        "PRAGMA writable_schema = OFF;"
    )
    crafted = edited_copy(good_backup, tmp_path / "db_backup_20260101_000000.sqlite3.zst", sql, with_manifest=True)
    # The file really carries the rewritten definition.
    with open_dump(crafted) as stream:
        assert b"load_extension" in stream.read()
    make_data("b", users=1)
    code, err = call("restore", str(crafted), "--noinput", "--no-safety-backup")
    assert code == 0, err
    connections.close_all()
    assert schema() == ours
    assert "load_extension" not in str(schema())
    assert User.objects.filter(username__startswith="a_").count() == 3
    assert not User.objects.filter(username__startswith="b_").exists()


def flipped_index_copy(backup: Path, target: Path) -> Path:
    """``backup`` with one bit of a username flipped in accounts_user's table page only:
    quick_check passes, integrity_check finds the row missing from the username index."""
    work = target.with_name(target.name + ".work")
    with open_dump(backup) as stream:
        data = bytearray(stream.read())
    work.write_bytes(data)
    conn = sqlite3.connect(work)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'accounts_user'").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    start = (root - 1) * page_size
    at = data.index(b"a_user1", start, start + page_size)
    data[at + 4] ^= 0x01  # "a_user1" -> "a_usdr1": still a valid username
    work.write_bytes(data)
    conn = sqlite3.connect(work)
    assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
    assert "missing from index" in str(conn.execute("PRAGMA integrity_check").fetchall())
    conn.close()
    target.write_bytes(zstandard.ZstdCompressor().compress(bytes(data)))
    work.unlink()
    return target


def test_file_without_manifest_gets_integrity_check(good_backup, tmp_path):
    bad = flipped_index_copy(good_backup, tmp_path / "copy_made_by_hand.sqlite3.zst")
    before = live_fingerprint()
    for args in ([str(bad), "--noinput", "--force"], [str(bad), "--check", "--force"]):
        code, err = call("restore", *args)
        assert code == 1, err
        assert "integrity_check" in err and "missing from index" in err, err
        assert live_fingerprint() == before


def test_flipped_row_vouched_by_a_manifest_restores_sound(good_backup, tmp_path):
    """quick_check passes (the manifest vouches for the bytes): the rows are copied into a
    schema built by the migrations, the indexes rebuilt from them; the live file is sound."""
    crafted = flipped_index_copy(good_backup, tmp_path / "db_backup_20260101_000000.sqlite3.zst")
    shutil.copyfile(manifest_path(good_backup), manifest_path(crafted))
    reseal(crafted)
    # Its schema is ours, so the file would be used as it came: integrity_check finds the
    # index at odds with its row, and the rows go into a new file instead (restore runs that
    # check on a thread beside the validation; --check and backup --check run it in line).
    for command, *args in (("restore", str(crafted), "--check"), ("backup", "--check", str(crafted))):
        code, err = call(command, *args)
        assert code == 0, (command, err)
    code, err = call("restore", str(crafted), "--noinput", "--no-safety-backup")
    assert code == 0, err
    connections.close_all()
    live = sqlite3.connect(connection.settings_dict["NAME"])
    try:
        assert live.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        names = {name for (name,) in live.execute("SELECT username FROM accounts_user")}
    finally:
        live.close()
    assert "a_usdr1" in names and "a_user1" not in names


def test_restore_failing_integrity_check_puts_the_safety_backup_back(good_backup, monkeypatch):
    """The full integrity check of what is swapped in: were it damaged, the replaced database returns.

    The damage is simulated (a restore through the rebuild cannot produce it): the check
    reports a line, and the restore must fail with the live data as before it.
    """
    from dbtools.engines.sqlite import SQLiteEngine

    make_data("b", users=1)
    before = live_fingerprint()[1][0]
    # A rebuilt scratch (here: as if its schema were not exactly ours) is checked during the
    # swap (the live file becomes a copy of it); a file used as it came is checked before.
    monkeypatch.setattr(SQLiteEngine, "_migrated_like", lambda self, raw, path: False)
    monkeypatch.setattr(SQLiteEngine, "integrity_of_scratch", lambda self, scratch: ["row 7 missing from index x"])
    code, err = call("restore", str(good_backup), "--noinput")
    assert code == 1
    assert "fails the engine's integrity check (row 7 missing from index x)" in err
    assert "safety backup" in err and "was put back" in err
    assert live_fingerprint()[1][0] == before
    assert User.objects.filter(username__startswith="b_").exists()


def test_table_with_a_double_quote_in_its_name_backs_up_and_verifies():
    """Its name is quoted (quotes doubled) in the counts, the CHECK scan and the pragmas.

    A table that is not ours is still refused when the backup is loaded (--verify full,
    restore): that is the inert loading's rule, said in one line, not a broken query.
    """
    make_data("a", users=1)
    with connection.cursor() as cursor:
        cursor.execute('CREATE TABLE "a""b" ("x""y" integer CHECK ("x""y" > 0))')
        cursor.execute('INSERT INTO "a""b" VALUES (1), (2)')
    try:
        result = create_backup(reason="manual")
        assert result.verification.ok, result.verification.reason
        assert result.manifest.row_counts['a"b'] == 2
        assert {c.name for c in result.verification.checks} >= {"quick_check", "check_constraints"}
        code, err = call("validate", "--schema-only")
        assert code == 0, err
        code, err = call("backup", "--check", str(result.path), "--verify", "full")
        assert code == 1
        assert "holds a table a\"b that is not mcmanager's: refused" in err
    finally:
        # Not one of the models' tables: the end-of-test flush would leave it behind.
        with connection.cursor() as cursor:
            cursor.execute('DROP TABLE "a""b"')


def test_a_backup_of_ours_is_used_as_it_came_once_integrity_check_passes(good_backup):
    """Its schema is exactly the migrations': no rebuild, integrity_check is the proof (in
    line, or on a thread joined by settle_scratch), and the swap does not run it again."""
    from dbtools.engines import get_engine

    engine = get_engine("default")
    with open_dump(good_backup) as stream, engine.load_into_scratch(stream) as scratch:
        assert scratch.integrity_checked and scratch.pending_integrity is None
        assert [c.name for c in scratch.checks if c.name.endswith("_check")] == ["integrity_check"]
        assert all(c.ok for c in scratch.checks)
    with open_dump(good_backup) as stream, engine.load_into_scratch(stream, defer_integrity=True) as scratch:
        assert scratch.pending_integrity is not None and not scratch.integrity_checked
        assert not any(c.name.endswith("_check") for c in scratch.checks)
        assert engine.settle_scratch(scratch) is False
        assert scratch.integrity_checked and scratch.pending_integrity is None
        conn = sqlite3.connect(scratch.name)
        assert conn.execute("SELECT COUNT(*) FROM accounts_user").fetchone()[0] == 3
        conn.close()


def test_restore_of_a_proven_file_does_not_check_it_again_during_the_swap(good_backup, monkeypatch):
    from dbtools.engines.sqlite import SQLiteEngine

    def not_again(self, scratch):
        raise AssertionError("integrity_check ran again on a proven scratch")

    monkeypatch.setattr(SQLiteEngine, "integrity_of_scratch", not_again)
    make_data("b", users=1)
    code, err = call("restore", str(good_backup), "--noinput")
    assert code == 0, err
    connections.close_all()
    assert not User.objects.filter(username__startswith="b_").exists()
    live = sqlite3.connect(connection.settings_dict["NAME"])
    try:
        assert live.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        live.close()


def test_an_index_of_ours_the_migrations_do_not_make_is_rebuilt_away(good_backup, tmp_path):
    """An extra index on our table (allowed: nothing in it runs) makes the schema differ from
    the migrations': the file is rebuilt, and the live database gets only our indexes.
    Planner statistics in the file are not carried either way."""
    sql = "CREATE INDEX extra_username ON accounts_user(username); ANALYZE;"
    crafted = edited_copy(good_backup, tmp_path / "db_backup_20260101_000000.sqlite3.zst", sql, with_manifest=True)
    code, err = call("restore", str(crafted), "--noinput", "--no-safety-backup")
    assert code == 0, err
    connections.close_all()
    live = sqlite3.connect(connection.settings_dict["NAME"])
    try:
        names = {n for (n,) in live.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "extra_username" not in names and "accounts_user_is_admin_b14a7e51" in names
        assert live.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        live.close()


def test_planner_statistics_of_a_file_used_as_it_came_are_dropped(tmp_path):
    make_data("a")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        cursor.execute("SELECT COUNT(*) FROM sqlite_stat1")
        assert cursor.fetchone()[0] > 0
    backup = Path(create_backup(reason="manual").path)
    from dbtools.engines import get_engine

    with open_dump(backup) as stream, get_engine("default").load_into_scratch(stream) as scratch:
        assert scratch.integrity_checked  # used as it came: sqlite_stat1 is SQLite's own table
        conn = sqlite3.connect(scratch.name)
        try:
            assert conn.execute("SELECT COUNT(*) FROM sqlite_stat1").fetchone()[0] == 0
        finally:
            conn.close()
