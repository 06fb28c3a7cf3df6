"""Health verdicts: healthy, no recent backup, orphans, unapplied migrations; /health/ and health_check."""

import json

import pytest
from django.db import connection, transaction

from accounts.models import User
from dbtools.api import DatabaseMonitor
from dbtools.monitor import DEGRADED, HEALTHY, UNHEALTHY, health_report
from dbtools.validation import validate_database
from servers.models import Server


def take_backup():
    from dbtools.backups import create_backup

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
            "connection_status": {"status": "healthy", "message": report.checks[0].message},
            "data_integrity": {"status": "healthy", "message": report.checks[1].message},
            "schema_integrity": {"status": "healthy", "message": report.checks[2].message},
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
    check = {c.name: c for c in health_report().checks}["backup_freshness"]
    # Any age exceeds a zero-hour limit once a second has passed; a fresh one may be 0 s old.
    import time

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
    from django.utils import timezone

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO django_migrations (app, name, applied) VALUES (%s, %s, %s)",
            ["servers", "9999_future", timezone.now()],
        )
    assert statuses(health_report())["schema"] == DEGRADED


def test_free_space_threshold(db, settings):
    settings.MCMANAGER_BACKUP_MIN_FREE_MB = 10**12
    check = {c.name: c for c in health_report().checks}["free_space"]
    assert check.status == DEGRADED
    assert "MB free" in check.message


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
