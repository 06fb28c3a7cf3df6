"""restore: every bad file refused with the live database unchanged; good backups restore.

Runs on every engine (``make test``); the live database is pytest-django's test
database, committed (``transactional_db``) so subprocesses see it.
"""

import json
import os
import subprocess
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.db.migrations.recorder import MigrationRecorder

from accounts.models import User
from dbtools.api import DatabaseBackup
from dbtools.backups import create_backup, list_backups, read_manifest
from dbtools.engines import ENGINES
from dbtools.errors import RestoreRefused
from dbtools.models import OperationLog
from dbtools.restore import check_restore, restore_backup
from dbtools.schema_state import pending_migrations
from servers.models import Server

from .restore_helpers import (
    DATA_TABLES,
    data_digest,
    edit_manifest,
    flask_era_sqlite,
    flipped_copy,
    foreign_dump_head,
    gzip_of_garbage,
    live_fingerprint,
    make_data,
    table_rows,
    text_file,
    truncated_copy,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def backup_file():
    """Data "a" in the live database and a verified backup of it."""
    make_data("a")
    return Path(create_backup(reason="manual").path)


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


def run_restore(*args):
    """call_command("restore", ...) -> (exit status, stdout, stderr), as the shell would see them."""
    out, err = StringIO(), StringIO()
    try:
        call_command("restore", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), str(exc)
    return 0, out.getvalue(), err.getvalue()


def assert_refused(args, fragment: str, exit_code: int = 1):
    before = live_fingerprint()
    code, out, err = run_restore(*args)
    assert code == exit_code, (code, out, err)
    assert fragment in err, err
    assert "\n" not in err.strip(), "a refusal is one line"
    assert live_fingerprint() == before, "the live database changed"


# --- bad files ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 100, "half"])
def test_truncated_backup_is_refused(backup_file, elsewhere, size):
    bad = truncated_copy(backup_file, elsewhere, size)
    make_data("b", users=1)
    fragment = "empty (0 bytes)" if size == 0 else "failed verification"
    assert_refused([str(bad), "--noinput"], fragment)


def test_backup_with_a_flipped_byte_is_refused(backup_file, elsewhere):
    bad = flipped_copy(backup_file, elsewhere)
    make_data("b", users=1)
    assert_refused([str(bad), "--noinput"], "failed verification")


@pytest.mark.parametrize("force", [False, True])
def test_text_file_named_like_a_backup_is_refused(backup_file, force):
    bad = text_file(backup_file.parent, "db_backup_20260101_000000.sqlite3.zst")
    args = [bad.name, "--noinput"] + (["--force"] if force else [])
    assert_refused(args, "not a database dump" if force else "restored only with --force")


@pytest.mark.parametrize("force", [False, True])
def test_gzip_of_garbage_named_like_a_backup_is_refused(backup_file, force):
    bad = gzip_of_garbage(backup_file.parent, "db_backup_20260101_000000.sql.gz")
    args = [bad.name, "--noinput"] + (["--force"] if force else [])
    assert_refused(args, "not a database dump" if force else "restored only with --force")


def test_backup_of_another_engine_is_refused(backup_file, vendor):
    other = "sqlite" if vendor != "sqlite" else "postgresql"
    edit_manifest(backup_file, engine=other)
    assert_refused([str(backup_file), "--noinput"], "backup; database 'default' is")


def test_dump_of_another_engine_without_manifest_is_refused_even_forced(backup_file, elsewhere, vendor):
    bad = elsewhere / "copy_made_by_hand.dump"
    bad.write_bytes(foreign_dump_head(vendor))
    assert_refused([str(bad), "--noinput", "--force"], "dump; database 'default' is")


def test_backup_from_a_newer_version_is_refused_unless_forced(vendor):
    make_data("a")
    recorder = MigrationRecorder(connection)
    recorder.record_applied("servers", "9999_from_the_future")
    path = Path(create_backup(reason="manual").path)
    recorder.record_unapplied("servers", "9999_from_the_future")
    make_data("b", users=1)
    assert_refused([str(path), "--noinput"], "servers.9999_from_the_future")
    # The manifest is not the only witness: a manifest that hides the migration does
    # not get the file past the check of what was loaded.
    manifest = read_manifest(path)
    migrations = {app: [n for n in names if n != "9999_from_the_future"] for app, names in manifest.migrations.items()}
    edit_manifest(path, migrations=migrations)
    assert_refused([str(path), "--noinput"], "servers.9999_from_the_future")
    # --force restores it all the same.
    try:
        code, out, err = run_restore(str(path), "--noinput", "--force", "--no-safety-backup")
        assert code == 0, err
        assert not User.objects.filter(username__startswith="b_").exists()
        assert ("servers", "9999_from_the_future") in MigrationRecorder(connection).applied_migrations()
    finally:
        # The restored database says so too; flushing does not clear django_migrations.
        MigrationRecorder(connection).record_unapplied("servers", "9999_from_the_future")


@pytest.mark.parametrize("force", [False, True])
def test_flask_era_database_is_refused(elsewhere, force):
    make_data("a", users=1)
    old = flask_era_sqlite(elsewhere)
    assert_refused([str(old), "--noinput"] + (["--force"] if force else []), "Flask-era mcmanager database")
    assert_refused([str(old), "--noinput"], "python manage.py import_legacy mcmanager.db")


def test_only_sqlite_reads_tables_from_a_file_and_only_from_a_database_file(elsewhere):
    """Engine.tables_in_file, which tells a Flask-era file whatever the live engine: the
    tables of an SQLite file; None for anything else, and from the server engines."""
    old = flask_era_sqlite(elsewhere)
    assert {cls.vendor: cls.tables_in_file(old) for cls in ENGINES} == {
        "sqlite": {"user", "server", "configuration"},
        "postgresql": None,
        "mysql": None,
    }
    fifo = elsewhere / "pipe.sqlite3"
    os.mkfifo(fifo)
    for other in (text_file(elsewhere, "notes.sqlite3"), fifo, elsewhere, elsewhere / "missing.sqlite3"):
        assert [cls.tables_in_file(other) for cls in ENGINES] == [None, None, None], other


def test_manifestless_copy_is_refused_without_force(backup_file, elsewhere):
    copy = elsewhere / backup_file.name
    copy.write_bytes(backup_file.read_bytes())
    assert_refused([str(copy), "--noinput"], "restored only with --force")


def test_missing_file_cannot_run():
    assert_refused(["db_backup_19990101_000000.sqlite3.zst", "--noinput"], "no such backup", exit_code=2)


def test_no_file_and_no_latest_cannot_run(backup_file):
    assert_refused(["--noinput"], "say which backup to restore", exit_code=2)
    assert_refused([str(backup_file), "--latest", "--noinput"], "not both", exit_code=2)


def test_unknown_database_alias_cannot_run(backup_file):
    assert_refused([str(backup_file), "--noinput", "--database", "nosuch"], "no database 'nosuch'", exit_code=2)
    assert_refused(["--check", str(backup_file), "--database", "nosuch"], "no database 'nosuch'", exit_code=2)


def test_latest_without_a_verified_backup_is_refused(settings):
    make_data("a", users=1)
    directory = Path(settings.MCMANAGER_BACKUP_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    text_file(directory, "db_backup_20260101_000000.sqlite3.zst")  # named like one, not one
    assert_refused(["--latest", "--noinput"], "no verified")


def test_restore_while_a_backup_holds_the_lock_is_refused_at_once(backup_file, manage_py):
    from dbtools.locks import database_lock

    before = live_fingerprint()
    with database_lock("default", "backup"):
        done = manage_py("restore", str(backup_file), "--noinput", timeout=60)
    assert done.returncode == 2, done.stderr
    assert "held by backup" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert live_fingerprint() == before


def test_restore_without_noinput_asks_first(backup_file, manage_py):
    """The question says what is replaced by what; only "yes" restores; no answer (EOF) is a no."""
    make_data("b", users=1)
    before = live_fingerprint()
    done = manage_py("restore", str(backup_file), stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "Restore will REPLACE database 'default'" in done.stdout
    assert "b_user0" not in done.stdout  # counts, not rows
    assert "accounts_user 4" in done.stdout  # now: 3 users of "a" and 1 of "b"
    assert "accounts_user 3" in done.stdout  # the backup's
    assert "cancelled" in done.stderr
    assert live_fingerprint() == before
    done = manage_py("restore", str(backup_file), input="no\n", timeout=120)
    assert done.returncode == 1 and "cancelled" in done.stderr
    assert live_fingerprint() == before
    # --json asks on stderr, so stdout stays one JSON document.
    done = manage_py("restore", str(backup_file), "--json", input="yes\n", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Restore will REPLACE database 'default'" in done.stderr
    restored = json.loads(done.stdout)
    assert restored["ok"] is True
    assert isinstance(restored["duration_ms"], int) and restored["duration_ms"] > 0
    assert not User.objects.filter(username__startswith="b_").exists()


def test_api_returns_false_on_a_refused_restore(elsewhere, caplog):
    make_data("a", users=1)
    bad = text_file(elsewhere, "db_backup_20260101_000000.sqlite3")
    before = live_fingerprint()
    assert DatabaseBackup().restore_backup(str(bad)) is False
    assert "restored only with --force" in caplog.text
    assert live_fingerprint() == before


# --- good backups -------------------------------------------------------------------


def test_good_backup_restores(backup_file):
    digest_a = data_digest()
    manifest = read_manifest(backup_file)
    make_data("b")
    Server.objects.filter(server_name__startswith="a_").delete()
    OperationLog.objects.create(
        started_at="2026-01-01T00:00:00Z", operation="marker", actor="test", outcome="success", message="after"
    )
    log_before = {(e.operation, e.message) for e in OperationLog.objects.all()}
    assert data_digest() != digest_a

    code, out, err = run_restore(str(backup_file), "--noinput")
    assert code == 0, err
    assert data_digest() == digest_a
    counts = {t: len(table_rows(t)) for t in DATA_TABLES}
    assert counts == {t: manifest.row_counts[t] for t in DATA_TABLES}
    # The log of what happened before the restore survives it, and the restore is in it.
    log_after = {(e.operation, e.message) for e in OperationLog.objects.all()}
    assert log_before <= log_after
    assert OperationLog.objects.filter(operation="restore", outcome="success").count() == 1
    # The safety backup holds the replaced data and is a verified backup of ours.
    safety = [b for b in list_backups() if b.reason == "pre-restore"]
    assert len(safety) == 1 and safety[0].verified
    assert str(safety[0].path) in out
    assert "Restored" in out


def test_restore_prunes_no_backup(backup_file, settings):
    """The safety backup is not followed by retention: the restored backup stays."""
    make_data("b", users=1)
    newer = Path(create_backup(reason="manual").path)
    settings.MCMANAGER_KEEP_LAST = 1
    code, out, err = run_restore(str(backup_file), "--noinput")
    assert code == 0, err
    assert backup_file.exists() and newer.exists()
    assert len([b for b in list_backups() if b.reason == "pre-restore"]) == 1


def test_restore_by_name_and_latest_and_json(backup_file):
    make_data("b", users=1)
    code, out, err = run_restore(backup_file.name, "--noinput", "--no-safety-backup", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["ok"] is True and result["safety_backup"] is None
    assert result["rows_after"]["accounts_user"] == 3
    assert not User.objects.filter(username__startswith="b_").exists()
    # --latest takes the newest verified backup: here the only one.
    make_data("c", users=1)
    code, out, err = run_restore("--latest", "--noinput", "--no-safety-backup")
    assert code == 0, err
    assert not User.objects.filter(username__startswith="c_").exists()


def test_forced_manifestless_copy_restores_after_structural_checks(backup_file, elsewhere):
    digest_a = data_digest()
    copy = elsewhere / backup_file.name
    copy.write_bytes(backup_file.read_bytes())
    make_data("b", users=1)
    code, out, err = run_restore(str(copy), "--noinput", "--force", "--no-safety-backup")
    assert code == 0, err
    assert data_digest() == digest_a


def test_api_returns_true_on_success(backup_file):
    make_data("b", users=1)
    assert DatabaseBackup().restore_backup(str(backup_file)) is True
    assert not User.objects.filter(username__startswith="b_").exists()


def _older_target() -> tuple[str, str]:
    """An app and the migration to go back to so that its newest migration is pending."""
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(None, ignore_no_migrations=True)
    for app in ("servers", "dbtools", "accounts"):
        names = sorted(name for a, name in loader.disk_migrations if a == app)
        if len(names) >= 2:
            return app, names[-2]
    return "dbtools", "zero"


def test_older_backup_restores_and_its_pending_migrations_are_applied():
    make_data("a")
    app, path = _backup_one_migration_back()
    digest_a = data_digest()
    make_data("b", users=1)
    # --check applies the pending migrations to its scratch copy too.
    checked = check_restore(str(path))
    assert checked.ok, checked.reason
    assert any(name.startswith(f"{app}.") for name in checked.pending_migrations)
    assert "migrations apply" in {c.name for c in checked.checks}
    code, out, err = run_restore(str(path), "--noinput")
    assert code == 0, err
    assert data_digest() == digest_a
    assert pending_migrations("default") == []
    assert "migrations applied" in out and f"{app}." in out
    # The operations log table came back with the migration, and holds the old entries.
    assert OperationLog.objects.filter(operation="restore").exists()


def test_no_migrate_leaves_pending_migrations():
    make_data("a")
    app, path = _backup_one_migration_back()
    code, out, err = run_restore(str(path), "--noinput", "--no-migrate", "--no-safety-backup")
    assert code == 0, err
    assert pending_migrations("default") != []
    call_command("migrate", verbosity=0, **_no_backup_option())


def _backup_one_migration_back() -> tuple[str, Path]:
    """A backup of the live database with one app a migration behind the code: (app, path)."""
    app, target = _older_target()
    call_command("migrate", app, target, verbosity=0, **_no_backup_option())
    try:
        return app, Path(create_backup(reason="manual").path)
    finally:
        call_command("migrate", app, verbosity=0, **_no_backup_option())


def _no_backup_option() -> dict:
    """The migrate command takes a backup first when dbtools overrides it; tests skip that."""
    from django.core.management import get_commands, load_command_class

    command = load_command_class(get_commands()["migrate"], "migrate")
    parser = command.create_parser("manage.py", "migrate")
    return {"no_backup": True} if any("--no-backup" in a.option_strings for a in parser._actions) else {}


# --- restore --check ----------------------------------------------------------------


def test_check_tells_a_good_backup_from_a_bad_one(backup_file, elsewhere, manage_py):
    make_data("b", users=1)
    before = live_fingerprint()
    good = manage_py("restore", "--check", str(backup_file), timeout=120)
    assert good.returncode == 0, good.stderr
    assert "would restore" in good.stdout
    bad = manage_py("restore", "--check", str(flipped_copy(backup_file, elsewhere)), timeout=120)
    assert bad.returncode == 1
    assert "failed verification" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    refused = manage_py("restore", "--noinput", str(flipped_copy(backup_file, elsewhere)), timeout=120)
    assert refused.returncode == 1
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert live_fingerprint() == before


def test_check_json_and_quiet(backup_file):
    out = StringIO()
    call_command("restore", "--check", str(backup_file), "--json", stdout=out)
    result = json.loads(out.getvalue())
    assert result["ok"] is True
    assert result["row_counts"]["accounts_user"] == 3
    assert isinstance(result["duration_ms"], int) and "duration_s" not in result
    assert {c["name"] for c in result["checks"]} >= {"manifest", "checksum", "structure", "row counts"}
    out = StringIO()
    call_command("restore", "--check", str(backup_file), "-v", "0", stdout=out)
    assert out.getvalue() == ""


def test_check_service_reports_the_failing_check(backup_file, elsewhere):
    result = check_restore(str(truncated_copy(backup_file, elsewhere, 100)))
    assert result.ok is False
    assert result.checks[-1].ok is False
    assert "failed verification" in result.reason


def test_refusal_raises_the_precise_exception(elsewhere):
    make_data("a", users=1)
    with pytest.raises(RestoreRefused, match="Flask-era"):
        restore_backup(str(flask_era_sqlite(elsewhere)))
    connections.close_all()


def test_restore_reports_what_validate_finds_in_the_restored_data(elsewhere):
    """Two running servers on one port (no constraint forbids it) are in the backup: the
    restore goes through and its validation (run on the scratch: on SQLite while it is
    copied in, elsewhere before it is moved in) reports them, stored and logged as the
    live database's."""
    from dbtools.models import StoredReport

    make_data("a")
    clash = list(Server.objects.order_by("pk")[:2])
    Server.objects.filter(pk__in=[s.pk for s in clash]).update(status="Running", port=30100)
    backup = Path(create_backup(reason="manual").path)
    Server.objects.filter(pk__in=[s.pk for s in clash]).update(status="Stopped")
    StoredReport.objects.all().delete()

    result = restore_backup(str(backup))
    assert result.validation_ok is False
    problems = result.validation["problems"]["data_inconsistencies"]
    assert [(p["rule"], p["count"], p["sample_ids"]) for p in problems] == [
        ("active_port_unique", 2, sorted(s.pk for s in clash))
    ]
    stored = StoredReport.objects.get(kind="validation")
    assert (stored.database, stored.ok, stored.problem_count) == ("default", False, 1)
    logged = OperationLog.objects.filter(operation="validate").latest("started_at")
    assert (logged.database, logged.outcome) == ("default", "failure")
    # The rules ran on the scratch: on SQLite while the swap copies it in, on PostgreSQL and
    # MariaDB (whose swap moves it whole) while its statistics are gathered before the swap.
    assert "ran_on" in logged.details


@pytest.mark.engines("sqlite")
def test_sqlite_backup_with_another_page_size_restores(elsewhere):
    """A backup file whose page size differs from the live file's (a WAL database takes only
    its own): the scratch is rewritten before the swap, and validated while it is copied in."""
    import sqlite3

    make_data("a")
    backup = Path(create_backup(reason="manual", compress="none").path)
    digest_a = data_digest()
    with sqlite3.connect(backup) as raw:
        size = raw.execute("PRAGMA page_size").fetchone()[0]
    other = 8192 if size != 8192 else 4096
    odd = elsewhere / "odd_pages.sqlite3"
    raw = sqlite3.connect(odd, isolation_level=None)
    src = sqlite3.connect(backup)
    src.backup(raw)
    src.close()
    raw.execute("PRAGMA journal_mode=DELETE")
    raw.execute(f"PRAGMA page_size={other}")
    raw.execute("VACUUM")
    assert raw.execute("PRAGMA page_size").fetchone()[0] == other
    raw.close()
    make_data("b")
    assert data_digest() != digest_a

    result = restore_backup(str(odd), force=True)
    assert data_digest() == digest_a
    assert result.validation_ok is True
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA page_size")
        assert cursor.fetchone()[0] == size
