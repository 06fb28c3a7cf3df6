"""The seed's API as the seed writes it: methods called on the classes, and db_manager."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from dbtools.api import DatabaseBackup, DatabaseManager, DatabaseMonitor, DatabaseValidator, db_manager
from dbtools.backups import list_backups
from dbtools.manifest import read_manifest
from dbtools.validation import DATA_CATEGORIES, SCHEMA_CATEGORIES

from .restore_helpers import data_digest, make_data

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


def test_backup_and_restore_on_the_class():
    make_data("seed")
    path = DatabaseBackup.create_backup()
    assert os.path.exists(path)
    assert read_manifest(path).verification["ok"] is True
    before = data_digest()
    make_data("later")
    assert data_digest() != before
    assert DatabaseBackup.restore_backup(path) is True
    assert data_digest() == before


def test_class_calls_take_a_database_alias():
    path = DatabaseBackup.create_backup(database="default", reason="manual")
    assert [b.path for b in list_backups()] == [Path(path)]
    assert DatabaseManager.get_pending_migrations(database="default") == []


def test_validator_on_the_class():
    data = DatabaseValidator.validate_data_integrity()
    assert set(data) == set(DATA_CATEGORIES)
    assert all(problems == [] for problems in data.values())
    schema = DatabaseValidator.validate_schema()
    assert set(schema) == set(SCHEMA_CATEGORIES)
    assert all(problems == [] for problems in schema.values())


def test_monitor_on_the_class_has_the_seeds_four_checks():
    make_data("mon", users=2, servers_each=1)
    stats = DatabaseMonitor.get_database_stats()
    assert stats["table_counts"]["users"] == 2
    health = DatabaseMonitor.check_database_health()
    assert set(health) == {"status", "checks", "issues", "recommendations"}
    assert list(health["checks"]) == ["connection_status", "data_integrity", "schema_integrity", "performance"]
    assert health["checks"]["connection_status"]["status"] == "healthy"
    assert all(set(c) == {"status", "message"} and c["message"] for c in health["checks"].values())
    # No backup yet: unhealthy, and the issue says why.
    assert health["status"] == "unhealthy"
    assert any("backup" in issue.lower() for issue in health["issues"])


def test_instances_still_work_and_db_manager_is_ready():
    assert isinstance(db_manager, DatabaseManager)
    assert db_manager.database == "default"
    assert db_manager.get_current_revision()["accounts"] == "0001_initial"
    assert DatabaseMonitor("default").check_database_health()["status"] in ("healthy", "degraded", "unhealthy")


@pytest.mark.engines("sqlite")
def test_the_seeds_one_liner_runs_outside_manage_py(tmp_path):
    """python -c "from dbtools.api import DatabaseMonitor; ..." configures Django itself."""
    env = dict(
        os.environ,
        DATABASE_URL=f"sqlite:///{tmp_path / 'one.sqlite3'}",
        MCMANAGER_INSTANCE_DIR=str(tmp_path / "instance"),
        MCMANAGER_BACKUP_DIR=str(tmp_path / "backups"),
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
    )
    env.pop("DJANGO_SETTINGS_MODULE", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    health = seed_health(env)
    assert health["checks"]["connection_status"]["status"] == "healthy"
    assert health["checks"]["schema_integrity"]["status"] == "healthy"


def seed_health(env: dict) -> dict:
    """The seed's one-liner, as the README shows it, in a fresh Python outside manage.py."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json; from dbtools.api import DatabaseMonitor; "
            "print(json.dumps(DatabaseMonitor.check_database_health()))",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("url", ["postgres://root@127.0.0.1:1/x", "mysql://root@127.0.0.1:1/x"])
def test_an_unreachable_database_still_has_the_seeds_four_checks(tmp_path, url):
    if url.startswith("mysql"):
        pytest.importorskip("MySQLdb")
    env = dict(
        os.environ,
        DATABASE_URL=url,
        MCMANAGER_INSTANCE_DIR=str(tmp_path / "instance"),
        MCMANAGER_BACKUP_DIR=str(tmp_path / "backups"),
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
    )
    env.pop("DJANGO_SETTINGS_MODULE", None)
    health = seed_health(env)
    assert health["status"] == "unhealthy"
    assert list(health["checks"]) == ["connection_status", "data_integrity", "schema_integrity", "performance"]
    assert health["checks"]["connection_status"]["status"] == "unhealthy"
    assert health["checks"]["connection_status"]["message"]
    for name in ("data_integrity", "schema_integrity", "performance"):
        assert health["checks"][name] == {"status": "unknown", "message": "not checked: the database is unreachable"}
