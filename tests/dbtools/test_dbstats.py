"""``dbstats``: every figure equals what the database itself says."""

import json
import os
import re
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.utils import timezone

from accounts.models import User
from dbtools.api import DatabaseMonitor
from dbtools.backups import create_backup, list_backups
from dbtools.monitoring import collect_stats, render_prometheus
from servers.models import Configuration, Server


def populate() -> None:
    alice = User.objects.create_user("alice")
    bob = User.objects.create_user("bob")
    for i in range(7):
        Server.objects.create(server_name=f"srv{i}", owner=alice if i % 2 else bob)
    Configuration.objects.create(key="panel.name", value="x", updated_by=alice)


def scalar_row(sql: str, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def scalar(sql: str, params=()):
    return scalar_row(sql, params)[0]


def test_counts_and_migrations(db):
    populate()
    t0 = time.perf_counter()
    stats = collect_stats()
    elapsed_ms = (time.perf_counter() - t0) * 1000
    assert stats.table_counts == {"users": 2, "servers": 7, "configurations": 1}
    assert stats.counts_exact is True
    assert stats.migrations["unapplied"] == 0
    assert stats.migrations["unknown"] == 0
    assert stats.migrations["applied"] == scalar("SELECT COUNT(*) FROM django_migrations")
    perf = stats.performance_metrics
    # Measured, not made up: each a positive figure in milliseconds, and a part of the time
    # collect_stats took (a figure in seconds or microseconds, or a constant, would not fit).
    for name in ("round_trip_ms", "indexed_query_ms"):
        assert isinstance(perf[name], float) and 0 < perf[name] < elapsed_ms, (name, perf[name], elapsed_ms)
    assert perf["round_trip_ms"] + perf["indexed_query_ms"] < elapsed_ms
    assert stats.backup["newest"] is None and stats.backup["count"] == 0
    assert stats.server_version == ".".join(map(str, connection.get_database_version()))


PASSWORD = "s3cret-Pa55word"


def test_no_password_in_connection_info(db, monkeypatch):
    """The test URLs carry no password, so the connection is given one: no output may show it."""
    connection.ensure_connection()  # opened with the real settings (the servers want none); reused below
    monkeypatch.setitem(connection.settings_dict, "PASSWORD", PASSWORD)
    # The password is there to be leaked: the settings the figures read from carry it.
    assert PASSWORD in json.dumps(connections["default"].settings_dict, default=str)
    info = collect_stats().connection_info
    text = json.dumps(info)
    assert PASSWORD not in text and "password" not in text.lower()
    assert info["vendor"] == connection.vendor
    assert info["user"] == (connection.settings_dict.get("USER") or "")
    for args in (["--json"], ["--format", "prometheus"], []):
        out = StringIO()
        call_command("dbstats", *args, stdout=out)
        assert out.getvalue().strip() and PASSWORD not in out.getvalue(), args


@pytest.mark.engines("sqlite")
def test_sqlite_size_is_the_files(db):
    populate()
    stats = collect_stats()
    path = connection.settings_dict["NAME"]
    wal = path + "-wal"
    size = stats.database_size
    assert size["file_bytes"] == os.path.getsize(path)
    assert size["wal_bytes"] == (os.path.getsize(wal) if os.path.exists(wal) else 0)
    assert size["total_bytes"] == size["file_bytes"] + size["wal_bytes"]
    assert size["free_pages"] == scalar("PRAGMA freelist_count")
    assert size["page_count"] == scalar("PRAGMA page_count")
    assert stats.performance_metrics["free_pages"] == size["free_pages"]
    assert stats.connection_info["server_connections"] is None
    assert stats.table_sizes is None and stats.connection_info["pool"] is None


@pytest.mark.engines("postgresql")
def test_postgresql_figures(db):
    populate()
    stats = collect_stats()
    assert abs(stats.database_size["total_bytes"] - scalar("SELECT pg_database_size(current_database())")) < 1024 * 1024
    assert stats.table_sizes["servers_server"] == scalar("SELECT pg_total_relation_size('servers_server')")
    # Only this test's connection uses the test database.
    assert stats.connection_info["server_connections"] == scalar(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()"
    )
    ratio = stats.performance_metrics["cache_hit_ratio"]
    # populate() read and wrote blocks, so the server has a ratio to tell: the one it tells.
    hit, read = map(
        int, scalar_row("SELECT blks_hit, blks_read FROM pg_stat_database WHERE datname = current_database()")
    )
    assert ratio is not None and 0 < ratio <= 1
    assert ratio == pytest.approx(hit / (hit + read), abs=0.02)
    assert stats.connection_info["pool"] is None  # no pool configured


@pytest.mark.engines("mysql")
def test_mariadb_figures(db):
    populate()
    stats = collect_stats()
    expected = scalar(
        "SELECT SUM(data_length + index_length) FROM information_schema.tables WHERE table_schema = DATABASE()"
    )
    assert stats.database_size["total_bytes"] == expected
    assert stats.table_sizes["servers_server"] == scalar(
        "SELECT data_length + index_length FROM information_schema.tables "
        "WHERE table_schema = DATABASE() AND table_name = 'servers_server'"
    )
    # MariaDB counts the connections of the whole server (other clients come and go).
    before = int(scalar_row("SHOW GLOBAL STATUS LIKE 'Threads_connected'")[1])
    connections_now = collect_stats().connection_info["server_connections"]
    after = int(scalar_row("SHOW GLOBAL STATUS LIKE 'Threads_connected'")[1])
    assert min(before, after) - 5 <= connections_now <= max(before, after) + 5 and connections_now >= 1
    assert "cache_hit_ratio" not in stats.performance_metrics  # PostgreSQL's figure only


def test_command_json_and_text(db):
    populate()
    out = StringIO()
    call_command("dbstats", "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert data["table_counts"] == {"users": 2, "servers": 7, "configurations": 1}
    assert data["database"] == "default"
    out = StringIO()
    call_command("dbstats", stdout=out)
    assert "users 2, servers 7, configurations 1" in out.getvalue()


def test_command_prometheus(db):
    populate()
    out = StringIO()
    call_command("dbstats", "--format", "prometheus", stdout=out)
    text = out.getvalue()
    assert text.endswith("\n")
    assert re.search(r'^mcmanager_table_rows\{database="default",engine="[^"]+",table="servers"\} 7$', text, re.M)
    # Every sample line is "name{labels} number", as the textfile collector wants.
    for line in text.splitlines():
        if not line.startswith("#"):
            assert re.fullmatch(r"mcmanager_[a-z_]+\{[^}]*\} -?[0-9.e+-]+", line), line
    assert "# TYPE mcmanager_database_size_bytes gauge" in text


@pytest.mark.django_db(transaction=True)
def test_command_unreachable(manage_py):
    done = manage_py("dbstats", env={"DATABASE_URL": "postgres://u:hunter2@127.0.0.1:1/x"})
    assert done.returncode == 2
    assert "cannot reach" in done.stderr and "hunter2" not in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.django_db(transaction=True)
def test_newest_backup_age_and_verification():
    populate()
    create_backup(actor="tests")
    (info,) = list_backups()
    stats = collect_stats()
    newest = stats.backup["newest"]
    assert newest["name"] == info.name
    assert newest["verified"] is True and newest["verification_level"] == info.verification_level
    expected_age = (timezone.now() - info.created_at).total_seconds()
    assert abs(newest["age_seconds"] - expected_age) <= 2, (newest["age_seconds"], expected_age)
    assert newest["size"] == info.size == info.path.stat().st_size
    assert stats.backup["newest_verified"]["name"] == info.name
    text = render_prometheus(stats)
    assert re.search(rf"^mcmanager_backup_newest_age_seconds\{{[^}}]*\}} {newest['age_seconds']}$", text, re.M)
    assert re.search(r"^mcmanager_backup_newest_verified\{[^}]*\} 1$", text, re.M)
    assert re.search(r"^mcmanager_backups\{[^}]*\} 1$", text, re.M)


def test_seed_get_database_stats(db):
    populate()
    stats = DatabaseMonitor().get_database_stats()
    assert stats["table_counts"] == {"users": 2, "servers": 7, "configurations": 1}
    assert {"database_size", "connection_info", "performance_metrics"} <= set(stats)
