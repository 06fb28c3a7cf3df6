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


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """The test databases are created by our migrate command, which logs the migration and
    moves the operations journal in: the session's own backup directory, never instance/'s."""
    from django.conf import settings

    settings.MCMANAGER_BACKUP_DIR = tmp_path_factory.mktemp("session-backups")


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Every test starts with an empty operations log: the entry of the test database's own
    first migrate is not a test's."""
    from dbtools.models import OperationLog

    with django_db_blocker.unblock():
        OperationLog.objects.all().delete()


@pytest.fixture(autouse=True)
def _isolated_backup_dir(settings, tmp_path):
    """Every test gets its own backup directory, so no test sees another's files."""
    settings.MCMANAGER_BACKUP_DIR = tmp_path / "backups"


@pytest.fixture(autouse=True)
def _isolated_signing_key(settings, tmp_path):
    """Every test signs with its own key, created on first use under tmp_path (never in instance/)."""
    settings.MCMANAGER_BACKUP_SIGNING_KEY = ""
    settings.MCMANAGER_BACKUP_SIGNING_KEY_FILE = tmp_path / "instance" / "backup_signing_key"
    settings.MCMANAGER_BACKUP_SIGNING_OLD_KEYS = []
    settings.MCMANAGER_BACKUP_SIGNING_OLD_KEY_FILES = []


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """PBKDF2's deliberate slowness is not what these tests measure."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


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


def database_url_for(alias: str = "default") -> str:
    """A DATABASE_URL for the database this test uses (the test database), for subprocesses."""
    from urllib.parse import quote

    from django.db import connections

    s = connections[alias].settings_dict
    vendor = connections[alias].vendor
    if vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    scheme = {"postgresql": "postgres", "mysql": "mysql"}[vendor]
    auth = quote(s["USER"] or "")
    if s.get("PASSWORD"):
        auth += ":" + quote(s["PASSWORD"])
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"{scheme}://{auth}@{s['HOST'] or '127.0.0.1'}{port}/{s['NAME']}"


def signing_env() -> dict:
    """The environment that gives a subprocess this test's signing key (never the repo's instance/)."""
    from django.conf import settings

    return {
        "MCMANAGER_BACKUP_SIGNING_KEY": settings.MCMANAGER_BACKUP_SIGNING_KEY,
        "MCMANAGER_BACKUP_SIGNING_KEY_FILE": str(settings.MCMANAGER_BACKUP_SIGNING_KEY_FILE),
        "MCMANAGER_BACKUP_SIGNING_OLD_KEYS": ",".join(settings.MCMANAGER_BACKUP_SIGNING_OLD_KEYS),
        "MCMANAGER_BACKUP_SIGNING_OLD_KEY_FILES": ",".join(map(str, settings.MCMANAGER_BACKUP_SIGNING_OLD_KEY_FILES)),
    }


@pytest.fixture
def manage_py(settings):
    """Run ``python manage.py ...`` in a subprocess against the test database, as cron would.

    Returns a function taking the arguments (and optional env overrides / timeout) that
    returns the CompletedProcess (text mode). The test must use ``transactional_db`` so
    the subprocess sees committed data.
    """
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent

    def run(*args: str, env: dict | None = None, timeout: float = 300, **kwargs):
        full_env = dict(os.environ)
        full_env.update(
            DATABASE_URL=database_url_for(),
            MCMANAGER_BACKUP_DIR=str(settings.MCMANAGER_BACKUP_DIR),
            **signing_env(),
            DJANGO_SETTINGS_MODULE="mcmanager.settings",
        )
        full_env.pop("DJANGO_DEBUG", None)
        if env:
            full_env.update(env)
        return subprocess.run(
            [sys.executable, str(root / "manage.py"), *args],
            cwd=root,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,
        )

    return run
