"""The dashboard's 30-day backup chart: one mark per backup, failures marked, row counts over time."""

import json
import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connections
from django.utils import timezone

from accounts.models import User
from dbtools import trends
from dbtools.backups import create_backup, list_backups
from dbtools.manifest import BackupManifest, manifest_path, write_manifest
from dbtools.models import OperationLog

from .restore_helpers import make_data
from .test_browser_dashboard import CHROMIUM_ARGS, PASSWORD, log_in

pytestmark = pytest.mark.django_db(transaction=True)


def _age_backup(path: Path, days: float) -> None:
    """Move a backup ``days`` into the past: the manifest's created_at, re-signed."""
    data = json.loads(manifest_path(path).read_text())
    data["created_at"] = (timezone.now() - timedelta(days=days)).isoformat()
    data.pop("signature", None)
    write_manifest(path, BackupManifest.from_dict(data))


def _failure(days: float, message: str) -> None:
    started = timezone.now() - timedelta(days=days)
    OperationLog.objects.create(
        started_at=started, operation="backup", actor="cron", outcome="failure", message=message
    )


def test_points_of_the_last_30_days_oldest_first():
    make_data("t1", users=2, servers_each=1)
    old = create_backup().path
    make_data("t2", users=3, servers_each=1)
    recent = create_backup().path
    ancient = create_backup().path
    _age_backup(old, 10)
    _age_backup(recent, 1)
    _age_backup(ancient, 45)
    _failure(5, "backup directory is full")
    _failure(40, "too old to show")
    now = timezone.now()
    points = trends.collect(list_backups(), OperationLog.objects.filter(outcome="failure"), now)
    assert [(p.ok, p.name) for p in points] == [(True, old.name), (False, ""), (True, recent.name)]
    assert points[0].rows["accounts_user"] == 2 and points[2].rows["accounts_user"] == 5
    assert points[1].message == "backup directory is full"
    svg = trends.backups_svg(points, now)
    assert len(re.findall(r'class="backup-mark ', svg)) == 3
    assert len(re.findall(r'class="backup-mark backup-failed"', svg)) == 1
    assert "backup directory is full" in svg
    rows = trends.rows_svg(points, now)
    assert rows.count("<polyline") == 3 and "5" in rows


def test_titles_are_escaped():
    now = timezone.now()
    svg = trends.backups_svg([trends.TrendPoint(when=now, name="", ok=False, message="<script>x</script>")], now)
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_dashboard_shows_the_chart(client):
    User.objects.create_superuser("boss", password=PASSWORD)
    client.login(username="boss", password=PASSWORD)
    for _ in range(3):
        create_backup()
    _failure(2, "dump failed")
    page = client.get("/admin/health/").content.decode()
    chart = page[page.index('id="backup-chart"') : page.index("</svg>", page.index('id="backup-chart"'))]
    assert chart.count('class="backup-mark ') == 4
    assert chart.count("backup-failed") == 1
    assert 'id="rows-chart"' in page


@pytest.mark.browser
@pytest.mark.engines("sqlite")
def test_chart_in_the_browser(chromium_path, live_server):
    # Playwright is a development dependency only the browser tests need: imported when one runs.
    from playwright.sync_api import sync_playwright

    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    User.objects.create_superuser("boss", password=PASSWORD)
    make_data("b", users=2, servers_each=2)
    for days in (20, 10, 3):
        _age_backup(create_backup().path, days)
    _failure(6, "backup directory is full")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 1000})
            log_in(page, live_server.url, "boss")
            marks = page.locator("#backup-chart .backup-mark")
            assert marks.count() == 4
            assert page.locator("#backup-chart .backup-failed").count() == 1
            assert page.locator("#rows-chart polyline").count() == 3
            box = page.locator("#backup-chart").bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 40
            assert "3 backups, 1 failed" in page.inner_text("#trend")
        finally:
            browser.close()
            connections.close_all()
