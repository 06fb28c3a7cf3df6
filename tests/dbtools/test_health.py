"""Health verdicts: healthy, no recent backup, orphans, unapplied migrations; /health/ and health_check."""

import dataclasses
import json
import shutil
import time
from unittest import mock

import pytest
from django.db import DatabaseError, connection, connections, transaction
from django.utils import timezone

from accounts.models import User
from dbtools.api import DatabaseMonitor
from dbtools.backups import create_backup
from dbtools.formatting import format_bytes
from dbtools.health import CHECKS as HEALTH_CHECK_CLASSES
from dbtools.monitoring import CHECKS, DEGRADED, HEALTHY, UNHEALTHY, health_report, registered
from dbtools.validation import validate_database
from servers.models import Server


def take_backup():
    result = create_backup(actor="tests")
    assert result.verification.ok
    return result


def statuses(report) -> dict:
    return {c.name: c.status for c in report.checks}


@pytest.mark.django_db(transaction=True)
def test_fresh_database_with_fresh_verified_backup_is_healthy():
    take_backup()
    report = health_report()
    assert statuses(report) == dict.fromkeys(
        ["connection", "data_integrity", "schema", "performance", "backup_freshness", "free_space"], HEALTHY
    ), report.as_dict()
    assert report.status == HEALTHY
    seed = DatabaseMonitor().check_database_health()
    assert seed == {
        "status": "healthy",
        "checks": {
            "connection_status": {"status": "healthy", "message": report.check("connection").message},
            "data_integrity": {"status": "healthy", "message": report.check("data_integrity").message},
            "schema_integrity": {"status": "healthy", "message": report.check("schema").message},
            "performance": {"status": "healthy", "message": seed["checks"]["performance"]["message"]},
        },
        "issues": [],
        "recommendations": [],
    }


def test_no_backup_is_unhealthy(db):
    report = health_report()
    assert statuses(report)["backup_freshness"] == UNHEALTHY
    assert report.status == UNHEALTHY
    seed = DatabaseMonitor().check_database_health()
    assert seed["status"] == "unhealthy"
    assert any("backup" in issue.lower() for issue in seed["issues"])
    assert any("manage.py backup" in r for r in seed["recommendations"])


@pytest.mark.django_db(transaction=True)
def test_old_backup_is_unhealthy(settings):
    take_backup()
    settings.MCMANAGER_BACKUP_MAX_AGE_HOURS = 0
    # Any age exceeds a zero-hour limit once a second has passed; a fresh one may be 0 s old.
    time.sleep(1.1)
    check = {c.name: c for c in health_report().checks}["backup_freshness"]
    assert check.status == UNHEALTHY
    assert "limit 0 h" in check.message


def test_orphans_make_it_unhealthy_from_the_stored_report(db):
    alice = User.objects.create_user("alice")
    srv = Server.objects.create(server_name="srv", owner=alice)
    with connection.cursor() as cursor:
        if connection.vendor == "mysql":
            cursor.execute("SET SESSION foreign_key_checks = 0")
        cursor.execute("UPDATE servers_server SET owner_id = %s WHERE id = %s", [alice.pk + 999, srv.pk])
        if connection.vendor == "mysql":
            cursor.execute("SET SESSION foreign_key_checks = 1")
    # Before any validation, nothing is known to be wrong: health never validates per request.
    assert statuses(health_report())["data_integrity"] == HEALTHY
    validate_database()
    check = {c.name: c for c in health_report().checks}["data_integrity"]
    assert check.status == UNHEALTHY
    assert "1 orphaned records" in check.message
    transaction.set_rollback(True)  # the orphan must not meet Django's end-of-test FK check


def test_port_clash_only_degrades(db):
    alice = User.objects.create_user("alice")
    Server.objects.create(server_name="a-srv", owner=alice, status="Running", port=25570)
    Server.objects.create(server_name="b-srv", owner=alice, status="Running", port=25570)
    validate_database()
    assert statuses(health_report())["data_integrity"] == DEGRADED


def test_unapplied_migrations_are_unhealthy(db):
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_migrations WHERE app = 'dbtools'")
    check = {c.name: c for c in health_report().checks}["schema"]
    assert check.status == UNHEALTHY
    assert "1 migrations are not applied" in check.message


def test_unknown_migrations_degrade(db):
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO django_migrations (app, name, applied) VALUES (%s, %s, %s)",
            ["servers", "9999_future", timezone.now()],
        )
    assert statuses(health_report())["schema"] == DEGRADED


def test_free_space_threshold(db, settings):
    free = shutil.disk_usage(settings.MCMANAGER_BACKUP_DIR.parent).free
    check = health_report().check("free_space")
    assert check.status == HEALTHY
    assert check.details["free_bytes"] == pytest.approx(free, rel=0.01)  # other writers on the disk
    assert check.message == f"{format_bytes(check.details['free_bytes'])} free where backups go"
    settings.MCMANAGER_BACKUP_MIN_FREE_MB = 10**12
    check = health_report().check("free_space")
    assert check.status == DEGRADED
    assert check.details["min_free_bytes"] == 10**12 * 1024 * 1024
    assert check.message.endswith(f"free where backups go (want {format_bytes(10**12 * 1024 * 1024)})")
    assert "TiB" in check.message  # one unit system: IEC, as everywhere


def test_the_report_runs_the_registry_in_order_and_names_each_check(db):
    report = health_report()
    assert [(c.name, c.title) for c in report.checks] == [(entry.name, entry.title) for entry in CHECKS]
    assert report.check("schema") is report.checks[2]
    assert report.check("no-such-check") is None


def test_the_health_check_classes_are_made_from_the_registry():
    assert [(cls.__name__, cls.name, cls.entry) for cls in HEALTH_CHECK_CLASSES] == [
        (e.class_name, e.name, e) for e in CHECKS
    ]
    # What manage.py health_check and the package's pages print for each check.
    assert repr(HEALTH_CHECK_CLASSES[4]()) == "BackupFreshness(database='default')"


def test_without_the_database_only_the_checks_that_need_none_run(db):
    refused = DatabaseError("connection refused")
    with mock.patch.object(connections["default"], "ensure_connection", side_effect=refused):
        report = health_report()
        assert [c.name for c in report.checks] == ["connection", "backup_freshness", "free_space"]
        assert report.check("connection").status == UNHEALTHY
        assert report.check("connection").details == {"error": "connection refused"}
        assert report.status == UNHEALTHY


def test_a_check_whose_database_fails_is_unhealthy_not_a_crash(db):
    def failing(database):
        raise DatabaseError("server closed the connection\nunexpectedly")

    result = dataclasses.replace(registered("schema"), function=failing).run()
    assert (result.name, result.title, result.status) == ("schema", "Schema and migrations", UNHEALTHY)
    assert result.message == "could not run: the database failed (DatabaseError)"
    assert result.details == {"error": "server closed the connection"}


# --- /health/ and the health_check command -----------------------------------------


@pytest.mark.django_db(transaction=True)
def test_health_endpoint_json(client, settings):
    response = client.get("/health/")
    assert response.status_code == 500  # no backup yet
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["checks"]["backup_freshness"]["status"] == "unhealthy"
    assert body["checks"]["connection"] == {"status": "healthy", "message": body["checks"]["connection"]["message"]}
    text = json.dumps(body)
    # No sensitive detail: no database name or path, no user, no directory.
    assert connection.settings_dict["NAME"] not in text
    assert str(settings.MCMANAGER_BACKUP_DIR) not in text
    assert (connection.settings_dict.get("USER") or "no-user-set") not in text

    take_backup()
    response = client.get("/health/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "healthy"


@pytest.mark.django_db(transaction=True)
def test_health_check_command(manage_py):
    done = manage_py("health_check", "health", "--no-http")
    assert done.returncode == 1
    assert "BackupFreshness" in done.stdout and "no backup at all" in done.stdout
    take_backup()
    done = manage_py("health_check", "health", "--no-http")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": OK") == 6


@pytest.mark.django_db(transaction=True)
@pytest.mark.engines("sqlite")
def test_health_check_command_over_http(manage_py, live_server):
    """The package's default mode: the command asks the running server's /health/."""
    addrport = live_server.url.removeprefix("http://")
    done = manage_py("health_check", "health", addrport, "--forwarded-proto", "http")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "BackupFreshness" in done.stdout and "no backup at all" in done.stdout
    take_backup()
    done = manage_py("health_check", "health", addrport, "--forwarded-proto", "http")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": OK") == 6
