"""The dashboard in a real browser: an admin logs in, backs up, sees the backup; a player is refused."""

import os
from pathlib import Path

import pytest
from django.db import connections

from accounts.models import User
from servers.models import Server

# Playwright's sync API runs an event loop in this thread; Django's ORM calls here are
# plain synchronous test setup, not async code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct-horse-battery-staple"

pytestmark = [pytest.mark.browser, pytest.mark.engines("sqlite")]


@pytest.fixture
def browser(chromium_path):
    # Playwright is a development dependency only the browser tests need: imported when one runs.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
            # ORM calls made while Playwright's event loop runs get their own connections
            # (Django keys them by async context); close them here, in that context, or
            # they stay open on the test database for the rest of the session.
            connections.close_all()


def log_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/admin/login/?next=/admin/health/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_load_state()


@pytest.mark.django_db(transaction=True)
def test_admin_backs_up_from_the_dashboard(browser, live_server):
    User.objects.create_superuser("boss", password=PASSWORD)
    page = browser.new_page(viewport={"width": 1360, "height": 1000})
    log_in(page, live_server.url, "boss")
    assert page.url.endswith("/admin/health/")
    assert "No backups yet" in page.inner_text("#backups")
    verdict = page.inner_text("#verdict")
    assert "unhealthy" in verdict.lower()

    page.click("#backup-now")
    page.wait_for_load_state()
    assert "created and verified" in page.inner_text("ul.messagelist")
    rows = page.locator("#backups tr.backup-row")
    assert rows.count() == 1
    assert "db_backup_" in rows.first.inner_text()
    assert "verified" in rows.first.inner_text().lower()
    # A fresh database with a fresh verified backup is healthy.
    assert "The database is healthy" in page.inner_text("#verdict")
    assert "boss" in page.inner_text("#operations")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin-health-dashboard.png"), full_page=True)

    page.click("#validate-now")
    page.wait_for_load_state()
    assert "Validation found no problems" in page.inner_text("ul.messagelist")
    assert "clean" in page.inner_text("#validation").lower()

    # Two servers running on one port: the next validation shows them, with their ids.
    boss = User.objects.get(username="boss")
    a = Server.objects.create(server_name="lobby", owner=boss, status="Running", port=25570)
    b = Server.objects.create(server_name="survival", owner=boss, status="Starting", port=25570)
    page.click("#validate-now")
    page.wait_for_load_state()
    assert "Validation found 1 problem (2 rows or items)" in page.inner_text("ul.messagelist")
    row = page.locator("#validation tr.problem-row")
    assert row.count() == 1
    assert "active_port_unique" in row.inner_text() and f"{a.pk}, {b.pk}" in row.inner_text()
    assert "The database is degraded" in page.inner_text("#verdict")
    page.screenshot(path=str(ARTIFACTS / "admin-health-dashboard-problems.png"), full_page=True)


@pytest.mark.django_db(transaction=True)
def test_player_is_refused(browser, live_server):
    User.objects.create_user("player", password=PASSWORD)
    page = browser.new_page()
    log_in(page, live_server.url, "player")
    # Not an admin: the admin keeps them on its login page, with no dashboard.
    assert "/admin/login/" in page.url
    assert page.locator("#health-dashboard").count() == 0
    page.goto(f"{live_server.url}/admin/health/")
    assert "/admin/login/" in page.url
    assert page.locator("#health-dashboard").count() == 0
