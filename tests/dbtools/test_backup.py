"""manage.py backup and dbtools.backups: files, manifests, verification, listing (every engine)."""

import hashlib
import json
import os
import re
import stat
from datetime import UTC, datetime
from io import StringIO

import pytest
import zstandard
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from dbtools.backups import count_rows, create_backup, list_backups, open_dump, read_manifest, verify_backup, writer
from dbtools.engines import get_engine, sqlite_dump
from dbtools.engines.sqlite_files import check_expressions
from dbtools.formatting import format_bytes
from dbtools.manifest import manifest_path, write_manifest
from dbtools.models import OperationLog, StoredReport

from .backup_support import make_rows, scratch_leftovers

pytestmark = pytest.mark.django_db(transaction=True)

NAME = re.compile(r"^db_backup_\d{8}_\d{6}(_\d+)?\.(sqlite3|pgdump|sql)(\.zst|\.gz)?$")


def sha256_of(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_backup_is_a_verified_file_with_its_manifest(settings, vendor):
    make_rows("bk", users=5, servers_each=2)
    result = create_backup()

    path = result.path
    assert NAME.match(path.name), path.name
    assert path.parent == settings.MCMANAGER_BACKUP_DIR
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(manifest_path(path)).st_mode) == 0o600
    manifest = read_manifest(path)
    assert manifest.engine == vendor
    assert manifest.server_version
    assert manifest.reason == "manual"
    assert manifest.compression == "zstd" and path.name.endswith(".zst")
    assert manifest.row_counts["accounts_user"] == 5
    assert manifest.row_counts["servers_server"] == 10
    assert "0001_initial" in manifest.migrations["accounts"]
    assert manifest.size == os.path.getsize(path)
    assert manifest.sha256 == sha256_of(path)
    assert manifest.verification["ok"] is True and manifest.verification["level"] == "quick"
    assert manifest.file == path.name
    # Only the final name and its manifest remain: no temporary file.
    assert sorted(os.listdir(path.parent)) == sorted([path.name, manifest_path(path).name])

    entry = OperationLog.objects.get(operation="backup")
    assert entry.outcome == "success"
    assert entry.file == str(path)
    assert entry.checksum == manifest.sha256


def test_two_backups_in_the_same_second_give_two_files(monkeypatch):
    frozen = datetime(2026, 5, 17, 3, 4, 5, tzinfo=UTC)
    monkeypatch.setattr(writer, "_now", lambda: frozen)
    first = create_backup()
    second = create_backup()
    assert first.path != second.path
    assert first.path.exists() and second.path.exists()
    assert first.path.name.startswith("db_backup_20260517_030405.")
    assert second.path.name.startswith("db_backup_20260517_030405_2.")
    assert read_manifest(first.path).sha256 == sha256_of(first.path)
    assert read_manifest(second.path).sha256 == sha256_of(second.path)


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_other_compressions_verify(compression):
    make_rows("cmp", users=2)
    result = create_backup(compress=compression)
    assert read_manifest(result.path).compression == compression
    assert verify_backup(result.path, "full").ok
    with open(result.path, "rb") as f:
        head = f.read(2)
    assert (head == b"\x1f\x8b") == (compression == "gzip")


def test_full_verification_restores_into_a_scratch_database_and_removes_it():
    make_rows("full", users=4, servers_each=3)
    result = create_backup(verify="full")
    names = {c.name for c in result.verification.checks}
    assert "row_counts" in names
    assert "restore" in names or "integrity_check" in names
    assert result.manifest.verification["level"] == "full"
    assert all(c.ok for c in result.verification.checks)
    assert scratch_leftovers() == []

    again = verify_backup(result.path, "full")
    assert again.ok, again.reason
    assert scratch_leftovers() == []


def test_a_corrupted_backup_fails_verification():
    make_rows("bad", users=3)
    path = create_backup().path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    result = verify_backup(path)
    assert not result.ok
    assert result.reason.startswith("checksum") or "decompress" in result.reason
    assert read_manifest(path).verification["ok"] is False
    [info] = list_backups()
    assert info.verified is False

    with pytest.raises(CommandError) as exc:
        call_command("backup", "--check", str(path), verbosity=0)
    assert exc.value.returncode == 1


def test_a_truncated_dump_with_a_matching_checksum_fails_the_structure_check():
    """The checksum alone proves nothing if the manifest was rewritten: the structure check catches it."""
    make_rows("trunc", users=3)
    path = create_backup().path
    raw = zstandard.ZstdDecompressor().stream_reader(open(path, "rb")).read()
    cut = zstandard.ZstdCompressor().compress(raw[: len(raw) * 2 // 3])
    path.write_bytes(cut)
    manifest = read_manifest(path)
    manifest.sha256 = hashlib.sha256(cut).hexdigest()
    manifest.size = len(cut)
    write_manifest(path, manifest)

    result = verify_backup(path)
    assert not result.ok
    assert next(c for c in result.checks if c.name == "checksum").ok
    assert result.reason and not result.reason.startswith("checksum")
    assert not verify_backup(path, "full").ok
    assert scratch_leftovers() == []


def test_list_shows_backups_newest_first_and_reports_foreign_files(settings):
    first = create_backup().path
    directory = settings.MCMANAGER_BACKUP_DIR
    (directory / "notes.txt").write_text("not a backup")
    (directory / "db_backup_20000101_000000.sqlite3.zst").write_bytes(b"no manifest here")
    (directory / f".db_backup_{os.getpid()}_abcd.sqlite3.zst.partial").write_bytes(b"half")
    os.utime(first, (0, 0))

    infos = list_backups()
    by_name = {i.name: i for i in infos}
    assert set(by_name) == {first.name, "notes.txt", "db_backup_20000101_000000.sqlite3.zst"}
    assert by_name[first.name].verified is True and by_name[first.name].problem is None
    assert by_name[first.name].schema == "current"
    assert "not a backup" in by_name["notes.txt"].problem
    assert "no manifest" in by_name["db_backup_20000101_000000.sqlite3.zst"].problem
    assert infos[-1].name == "db_backup_20000101_000000.sqlite3.zst"

    out = StringIO()
    call_command("backup", "--list", "--json", stdout=out)
    listed = json.loads(out.getvalue())
    assert [i["name"] for i in listed][0] in (first.name, "notes.txt")
    assert {i["name"] for i in listed} == set(by_name)


def test_open_dump_gives_the_uncompressed_dump_and_count_rows_counts(vendor):
    make_rows("od", users=3, servers_each=1)
    path = create_backup().path
    with open_dump(path) as stream:
        head = stream.read(64)
    if vendor == "mysql":
        assert b"-- MariaDB dump" in head  # after the sandbox-mode line of newer clients
    else:
        assert head.startswith({"sqlite": b"SQLite format 3\x00", "postgresql": b"PGDMP"}[vendor])
    counts = count_rows()
    assert counts["accounts_user"] == 3 and counts["servers_server"] == 3
    assert read_manifest(path).row_counts["accounts_user"] == 3


@pytest.mark.engines("mysql")
def test_the_mariadb_dump_names_no_database():
    """No CREATE DATABASE, no USE: the dump loads into any database (a scratch one)."""
    path = create_backup().path
    with open_dump(path) as stream:
        text = stream.read().decode()
    assert "CREATE TABLE `accounts_user`" in text
    assert "CREATE DATABASE" not in text
    assert not re.search(r"^USE ", text, re.MULTILINE)
    assert "-- Dump completed" in text


@pytest.mark.engines("postgresql")
def test_the_postgresql_archive_is_custom_format_uncompressed_inside():
    path = create_backup().path
    with open_dump(path) as stream:
        head = stream.read(64)
    assert head.startswith(b"PGDMP")
    assert read_manifest(path).dump_format == "pgdump"


def test_command_prints_the_path_and_is_quiet_with_v0(manage_py, settings):
    done = manage_py("backup", "-v", "0")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""
    [first] = list_backups()

    done = manage_py("backup")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(settings.MCMANAGER_BACKUP_DIR))
    assert os.path.exists(done.stdout.strip())

    done = manage_py("backup", "--json", "--verify", "full")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["verification"]["ok"] is True and result["verification"]["level"] == "full"
    assert isinstance(result["duration_ms"], int) and result["duration_ms"] > 0 and "duration_seconds" not in result
    assert len(list_backups()) == 3


def test_sizes_read_in_iec_units_and_the_duration_in_seconds():
    make_rows("iec", users=3)
    out = StringIO()
    call_command("backup", verbosity=2, stdout=out)
    [info] = list_backups()
    size = format_bytes(info.size)
    assert re.search(
        r"^\d+(\.\d)? (B|KiB|MiB), \d+ rows in \d+ tables, sha256 [0-9a-f]{64}, \d+\.\d\d s$", out.getvalue(), re.M
    )
    assert f"{size}, " in out.getvalue() and "KB" not in out.getvalue()
    out = StringIO()
    call_command("backup", "--list", stdout=out)
    assert f"  {size:>10}  local  " in out.getvalue()


@pytest.mark.engines("postgresql", "mysql")
def test_the_password_goes_through_the_environment_never_argv(monkeypatch, vendor):
    monkeypatch.setitem(connection.settings_dict, "PASSWORD", "pw-Never-In-Argv")
    engine = get_engine()
    if vendor == "postgresql":
        argv, env = engine._pg_command("pg_dump")
        assert env["PGPASSWORD"] == "pw-Never-In-Argv"
    else:
        argv, env = engine._client_command("mariadb-dump")
        assert env["MYSQL_PWD"] == "pw-Never-In-Argv"
    assert not any("pw-Never-In-Argv" in arg for arg in argv)


@pytest.mark.engines("sqlite")
def test_sqlite_backup_checks_the_rows_against_their_checks_and_keeps_a_bad_row():
    """The copy is quick_checked read-write, so its CHECK constraints are evaluated (a
    read-only SQLite connection does not even parse them); a row breaking one is recorded
    in the manifest, and the backup still succeeds: it holds the data as it is."""

    make_rows("ck", users=2, servers_each=1)
    clean = read_manifest(create_backup().path).verification["checks"]
    assert {"name": "check_constraints", "ok": True, "detail": "every row meets its table's CHECK constraints"} in clean
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA ignore_check_constraints = ON")
        cursor.execute("UPDATE servers_server SET port = 80")
        cursor.execute("PRAGMA ignore_check_constraints = OFF")
    result = create_backup()
    manifest = read_manifest(result.path)
    assert manifest.verification["ok"] is True
    checks = {c["name"]: c for c in manifest.verification["checks"]}
    assert checks["quick_check"]["ok"] is True and checks["quick_check"]["detail"] == "ok"
    assert "servers_server break CHECK constraints" in checks["check_constraints"]["detail"]


@pytest.mark.engines("sqlite")
def test_sqlite_safety_backup_leaves_out_the_row_checks():
    """check_rows=False (restore's safety backup) checks the structure only, and says nothing of rows."""
    make_rows("sf", users=1, servers_each=1)
    checks = {c["name"] for c in read_manifest(create_backup(check_rows=False).path).verification["checks"]}
    assert "quick_check" in checks and "check_constraints" not in checks
    checks = {c["name"] for c in read_manifest(create_backup().path).verification["checks"]}
    assert "check_constraints" in checks


@pytest.mark.engines("sqlite")
def test_sqlite_row_checks_see_every_slice_and_column_checks(monkeypatch):
    """The CHECK scans split a table by rowid: a bad row in the last slice is found, and so
    is a column's own CHECK (a PositiveIntegerField's ">= 0")."""

    monkeypatch.setattr(sqlite_dump, "SPLIT_CHECK_ROWS", 1)
    make_rows("sl", users=2, servers_each=3)
    StoredReport.objects.create(kind="validation", created_at=timezone.now(), ok=True)
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA ignore_check_constraints = ON")
        cursor.execute("UPDATE servers_server SET memory_mb = 1 WHERE id = (SELECT MAX(id) FROM servers_server)")
        cursor.execute("UPDATE dbtools_storedreport SET problem_count = -1")
        cursor.execute("PRAGMA ignore_check_constraints = OFF")
    checks = {c["name"]: c for c in read_manifest(create_backup().path).verification["checks"]}
    detail = checks["check_constraints"]["detail"]
    assert "rows of dbtools_storedreport, servers_server break CHECK constraints" in detail, detail
    assert checks["quick_check"]["ok"] is True


def test_check_expressions_of_a_create_table():
    sql = (
        'CREATE TABLE "t" ("a" integer NOT NULL CHECK ("a" >= 0), "b" text, '
        "CONSTRAINT \"b_valid\" CHECK ((\"b\" IN ('x', 'y)')))), "
        'CONSTRAINT "both" CHECK (("a" > 1 AND LENGTH("b") < 3)))'
    )
    assert check_expressions(sql) == [
        (None, '"a" >= 0'),
        ("b_valid", "(\"b\" IN ('x', 'y)'))"),
        ("both", '("a" > 1 AND LENGTH("b") < 3)'),
    ]
