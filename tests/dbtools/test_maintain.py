"""maintain: per engine housekeeping under the backup lock, with sizes before and after."""

import json
import sqlite3
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections

from dbtools.locks import database_lock
from dbtools.models import OperationLog
from servers.models import Configuration

from .restore_helpers import data_digest, make_data

pytestmark = pytest.mark.django_db(transaction=True)


def run_maintain(*args) -> tuple[int, dict | str]:
    out = StringIO()
    try:
        call_command("maintain", *args, "--json", stdout=out, stderr=StringIO())
    except CommandError as exc:
        return exc.returncode, str(exc)
    return 0, json.loads(out.getvalue())


def fill_and_empty() -> None:
    """Two megabytes of configuration written then deleted: the pages stay, free."""
    Configuration.objects.bulk_create(
        [Configuration(key=f"bulk.{i}", value="x" * 1000) for i in range(2000)], batch_size=500
    )
    Configuration.objects.filter(key__startswith="bulk.").delete()


def free_pages() -> int:
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA freelist_count")
        return cursor.fetchone()[0]


@pytest.mark.engines("sqlite")
def test_sqlite_vacuum_shrinks_the_file_and_keeps_the_data():
    make_data("m", users=5, servers_each=4)
    fill_and_empty()
    digest = data_digest()
    assert free_pages() > 400
    connections.close_all()
    path = Path(connection.settings_dict["NAME"])

    code, result = run_maintain()

    assert code == 0, result
    assert result["size_after"] < result["size_before"] - 1_000_000
    assert path.stat().st_size <= result["size_after"], "the file itself shrank, not only its accounting"
    assert any(step.startswith("VACUUM INTO") for step in result["steps"])
    assert free_pages() == 0
    assert data_digest() == digest
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    entry = OperationLog.objects.get(operation="maintain")
    assert entry.outcome == "success" and entry.details["size_after"] == result["size_after"]


@pytest.mark.engines("sqlite")
def test_sqlite_vacuum_skipped_below_the_threshold_and_dry_run_changes_nothing():
    make_data("d")
    run_maintain("--vacuum")  # whatever free pages earlier tests left
    code, result = run_maintain("--vacuum")
    assert code == 0
    assert any("VACUUM skipped" in step for step in result["steps"])

    fill_and_empty()
    before = free_pages()
    code, result = run_maintain("--dry-run")
    assert code == 0
    assert any(step.startswith("VACUUM INTO") for step in result["steps"])
    assert free_pages() == before, "a dry run vacuums nothing"


def test_refused_at_once_while_a_backup_holds_the_lock():
    make_data("l")
    with database_lock("default", "backup"):
        t0 = time.monotonic()
        code, message = run_maintain()
        assert time.monotonic() - t0 < 5
    assert code == 2
    assert "locked" in message and "backup" in message
    assert not OperationLog.objects.filter(operation="maintain").exists()


@pytest.mark.engines("postgresql", "mysql")
def test_server_engines_run_and_report_sizes():
    make_data("p")
    digest = data_digest()
    code, result = run_maintain()
    assert code == 0, result
    assert result["size_before"] > 0 and result["size_after"] > 0
    expected = "VACUUM (ANALYZE)" if connection.vendor == "postgresql" else "OPTIMIZE TABLE"
    assert any(step.startswith(expected) for step in result["steps"]), result["steps"]
    assert data_digest() == digest
    assert OperationLog.objects.filter(operation="maintain", outcome="success").exists()


@pytest.mark.engines("postgresql")
def test_postgresql_rebuilds_an_invalid_index():
    make_data("i")
    with connection.cursor() as cursor:
        cursor.execute("CREATE INDEX maintain_probe ON servers_server (memory_mb, port)")
        # What a failed CREATE INDEX CONCURRENTLY leaves behind.
        cursor.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'maintain_probe'::regclass")
    code, result = run_maintain("--reindex", "--dry-run")
    assert code == 0 and any("maintain_probe" in step for step in result["steps"])
    with connection.cursor() as cursor:
        cursor.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'maintain_probe'::regclass")
        assert cursor.fetchone()[0] is False
    code, result = run_maintain("--reindex")
    assert code == 0, result
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'maintain_probe'"
        )
        assert cursor.fetchone()[0] is True


@pytest.mark.engines("sqlite")
def test_dbstats_and_health_recommend_maintain_only_when_it_pays():
    from dbtools.monitoring import check_performance

    make_data("a")
    run_maintain("--vacuum")  # earlier tests' deleted rows left free pages in the test database
    out = StringIO()
    call_command("dbstats", "--json", stdout=out)
    assert json.loads(out.getvalue())["performance_metrics"]["maintenance_advice"] == []
    assert "maintain" not in check_performance("default").recommendation

    fill_and_empty()
    out = StringIO()
    call_command("dbstats", stdout=out)
    assert "Maintain:" in out.getvalue() and "maintain --vacuum" in out.getvalue()
    check = check_performance("default")
    assert check.status == "healthy" and "maintain --vacuum" in check.recommendation

    run_maintain("--vacuum")
    out = StringIO()
    call_command("dbstats", stdout=out)
    assert "Maintain:" not in out.getvalue()


@pytest.mark.engines("postgresql", "mysql")
def test_advice_runs_on_server_engines():
    from dbtools.engines import get_engine

    make_data("a")
    assert get_engine("default").maintenance_advice() == []
