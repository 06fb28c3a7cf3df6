"""The admin health dashboard: who may see it, what it shows, its two buttons."""

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import User
from dbtools.models import OperationLog, StoredReport
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
    health = response.context["health"]
    assert health.status == "unhealthy"  # no backup yet
    assert "The database is unhealthy" in html
    for check in health.checks:
        assert check.title in html and check.message in html
    counts = response.context["counts"]
    # SQLite counts exactly; the server engines may show their estimate (never more than exact here).
    if response.context["counts_exact"]:
        assert counts == {"users": 1, "servers": 2, "configurations": 0}
    assert "No validation has run yet" in html
    assert "nightly" in html and "cron" in html
    assert 'id="backup-now"' in html and 'id="validate-now"' in html
    assert "csrfmiddlewaretoken" in html


def test_admin_index_links_to_the_dashboard(admin_client):
    html = admin_client.get("/admin/").content.decode()
    assert f'href="{DASHBOARD}"' in html
    assert "Health dashboard" in html


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
    from dbtools.backups import list_backups

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
