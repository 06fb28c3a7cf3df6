"""The seed's names: DatabaseManager (migrations) and DatabaseBackup.create_backup."""

import os

import pytest

from dbtools.api import DatabaseBackup, DatabaseManager
from dbtools.backups import list_backups, read_manifest

pytestmark = pytest.mark.django_db(transaction=True)


def test_revision_history_and_pending_on_a_migrated_database():
    manager = DatabaseManager()
    heads = manager.get_current_revision()
    assert heads["accounts"] == "0001_initial"
    assert heads["sessions"] == "0001_initial"
    history = manager.get_migration_history()
    assert ("accounts", "0001_initial") in [(h["app"], h["name"]) for h in history]
    assert all(h["applied"] for h in history)
    assert manager.get_pending_migrations() == []


def test_downgrade_then_upgrade_with_a_backup_before_each():
    manager = DatabaseManager()
    try:
        undone = manager.downgrade_database("sessions", "zero")
        assert undone == ["sessions.0001_initial"]
        assert "sessions" not in manager.get_current_revision()
        assert manager.get_pending_migrations() == ["sessions.0001_initial"]
        assert [b.reason for b in list_backups()] == ["pre-migrate"]
    finally:
        applied = manager.upgrade_database()
    assert applied == ["sessions.0001_initial"]
    assert manager.get_current_revision()["sessions"] == "0001_initial"
    assert len(list_backups()) == 2


def test_create_migration_without_model_changes_creates_nothing():
    assert DatabaseManager().create_migration("nothing changed") == []


def test_database_backup_create_backup_returns_the_new_file():
    path = DatabaseBackup().create_backup()
    assert isinstance(path, str) and os.path.exists(path)
    assert read_manifest(path).verification["ok"] is True
