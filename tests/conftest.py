"""Shared test setup.

``make test`` runs the suite once per engine (DATABASE_URL chooses it). A test marked
``@pytest.mark.engines("postgresql")`` is deselected (not skipped) in the other passes,
so a CI run on three engines skips nothing.
"""

import os
import shutil

import pytest
from django.db import connection


def pytest_collection_modifyitems(config, items):
    from django.db import connections

    vendor = connections["default"].vendor
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("engines")
        if marker is not None and vendor not in marker.args:
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(autouse=True)
def _isolated_backup_dir(settings, tmp_path):
    """Every test gets its own backup directory, so no test sees another's files."""
    settings.MCMANAGER_BACKUP_DIR = tmp_path / "backups"


@pytest.fixture
def vendor() -> str:
    return connection.vendor


def browser_required() -> bool:
    return os.environ.get("MCMANAGER_REQUIRE_BROWSER", "") not in ("", "0")


@pytest.fixture
def chromium_path() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        if browser_required():
            pytest.fail("MCMANAGER_REQUIRE_BROWSER is set but Chromium is not installed (apt-get install chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium); browser tests need it")
    return path
