"""The admin health dashboard: who may see it, what it shows, its two buttons."""

from unittest import mock

import pytest
from django.contrib import admin
from django.db import DatabaseError, connections
from django.test import Client
from django.urls import reverse

from accounts.models import User
from dbtools.backups import list_backups
from dbtools.formatting import format_bytes
from dbtools.models import OperationLog, StoredReport
from dbtools.monitoring import build_snapshot
from mcmanager.admin import McmanagerAdminSite
from servers.models import Server

DASHBOARD = "/admin/health/"


@pytest.fixture
def admin_user(db):
    return User.objects.create_superuser("boss", password="correct-horse-battery")


@pytest.fixture
def admin_client(admin_user):
    client = Client()
    client.force_login(admin_user)
    return client


def test_url_names():
    assert reverse("dbtools-health-dashboard") == DASHBOARD
    assert reverse("health") == "/health/"


def test_anonymous_is_sent_to_login(db):
    response = Client().get(DASHBOARD)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_non_admin_is_refused(db):
    user = User.objects.create_user("player", password="correct-horse-battery")
    client = Client()
    client.force_login(user)
    response = client.get(DASHBOARD)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    response = client.post(reverse("dbtools-health-validate"))
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert not OperationLog.objects.filter(operation="validate").exists()


def test_inactive_admin_is_refused(db):
    user = User.objects.create_superuser("former", password="correct-horse-battery")
    user.is_active = False
    user.save()
    client = Client()
    client.force_login(user)
    assert client.get(DASHBOARD).status_code == 302


def test_dashboard_shows_verdict_checks_counts_and_log(admin_client, admin_user):
    Server.objects.create(server_name="alpha", owner=admin_user)
    Server.objects.create(server_name="beta", owner=admin_user)
    OperationLog.objects.create(
        started_at="2026-01-01T00:00:00Z", operation="backup", actor="cron", outcome="success", message="nightly"
    )
    response = admin_client.get(DASHBOARD)
    assert response.status_code == 200
    html = response.content.decode()
    snapshot = response.context["snapshot"]
    health = snapshot.health
    assert health.status == "unhealthy"  # no backup yet
    assert "The database is unhealthy" in html
    for check in health.checks:
        assert check.title in html and check.message in html
    counts = snapshot.counts
    # SQLite counts exactly; the server engines may show their estimate (never more than exact here).
    if snapshot.counts_exact:
        assert counts == {"users": 1, "servers": 2, "configurations": 0}
    else:
        assert set(counts) == {"users", "servers", "configurations"}
    assert snapshot.size["total_bytes"] > 0 and format_bytes(snapshot.size["total_bytes"]) in html
    assert snapshot.connection["description"] in html
    assert "No validation has run yet" in html
    assert "nightly" in html and "cron" in html
    assert 'id="backup-now"' in html and 'id="validate-now"' in html
    assert "csrfmiddlewaretoken" in html


def test_admin_index_links_to_the_dashboard(admin_client):
    html = admin_client.get("/admin/").content.decode()
    assert f'href="{DASHBOARD}"' in html
    assert "Health dashboard" in html
    # The app's own page and the sidebar of any admin page too.
    assert f'href="{DASHBOARD}"' in admin_client.get("/admin/dbtools/").content.decode()
    assert f'href="{DASHBOARD}"' in admin_client.get("/admin/dbtools/operationlog/").content.decode()


def test_the_admin_site_is_a_subclass_not_a_patched_instance():
    assert isinstance(admin.site, McmanagerAdminSite)
    assert "get_app_list" not in vars(admin.site._wrapped)  # the class's method, not a patch


def test_snapshot_without_the_database(db):
    refused = DatabaseError("connection refused")
    with mock.patch.object(connections["default"], "ensure_connection", side_effect=refused):
        snapshot = build_snapshot()
        assert snapshot.health.check("connection").status == "unhealthy"
        assert snapshot.health.check("schema") is None  # not run without the database
        assert (snapshot.counts, snapshot.size, snapshot.connection, snapshot.operations) == (None, None, None, [])
        assert snapshot.backups["count"] == 0 and snapshot.trend.points == 0


def test_validate_now(admin_client):
    response = admin_client.post(reverse("dbtools-health-validate"))
    assert response.status_code == 302 and response["Location"] == DASHBOARD
    report = StoredReport.objects.get(kind="validation")
    assert report.ok
    entry = OperationLog.objects.get(operation="validate")
    assert entry.actor == "boss"
    html = admin_client.get(DASHBOARD).content.decode()
    assert "Validation found no problems" in html  # the message after the redirect
    assert "clean" in html and "No validation has run yet" not in html


def test_validate_now_shows_problems(admin_client, admin_user):
    a = Server.objects.create(server_name="a-srv", owner=admin_user, status="Running", port=25570)
    b = Server.objects.create(server_name="b-srv", owner=admin_user, status="Starting", port=25570)
    admin_client.post(reverse("dbtools-health-validate"))
    html = admin_client.get(DASHBOARD).content.decode()
    assert "active_port_unique" in html
    assert f"{a.pk}, {b.pk}" in html


def test_get_does_not_run_anything(admin_client):
    assert admin_client.get(reverse("dbtools-health-validate")).status_code == 405
    assert admin_client.get(reverse("dbtools-health-backup")).status_code == 405
    assert not OperationLog.objects.exists()


def test_post_needs_csrf(admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(reverse("dbtools-health-validate")).status_code == 403
    assert not OperationLog.objects.filter(operation="validate").exists()


@pytest.mark.django_db(transaction=True)
def test_back_up_now(settings):
    admin = User.objects.create_superuser("boss", password="correct-horse-battery")
    client = Client()
    client.force_login(admin)
    response = client.post(reverse("dbtools-health-backup"))
    assert response.status_code == 302
    backups = list_backups()
    assert len(backups) == 1 and backups[0].verified is True
    entry = OperationLog.objects.filter(operation="backup").latest("started_at")
    assert (entry.actor, entry.outcome) == ("boss", "success")
    html = client.get(DASHBOARD).content.decode()
    assert backups[0].name in html
    assert "created and verified" in html
