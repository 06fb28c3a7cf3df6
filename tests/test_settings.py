import pytest
from django.core.checks import run_checks
from django.db import connection


@pytest.mark.engines("sqlite")
def test_sqlite_connections_use_wal_and_foreign_keys(db):
    with connection.cursor() as cur:
        assert cur.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert cur.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert cur.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000


def test_missing_secret_key_stops_start_up(settings):
    settings.DEBUG = False
    settings.SECRET_KEY = settings.MISSING_SECRET_KEY
    ids = {m.id for m in run_checks()}
    assert "mcmanager.E001" in ids


def test_short_secret_key_is_refused(settings):
    settings.DEBUG = False
    settings.SECRET_KEY = "django-insecure-abc"
    ids = {m.id for m in run_checks()}
    assert "mcmanager.E002" in ids


def test_good_secret_key_passes(settings):
    settings.DEBUG = False
    settings.SECRET_KEY = "k" * 20 + "abcdefghijklmnopqrstuvwxyz0123456789"
    ids = {m.id for m in run_checks()}
    assert not ids & {"mcmanager.E001", "mcmanager.E002"}
