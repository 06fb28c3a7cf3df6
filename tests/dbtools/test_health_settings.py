"""The system checks that refuse nonsense in the dbtools settings (dbtools.E001...)."""

import pytest
from django.core.checks import run_checks


def ids(**overrides) -> set[str]:
    return {message.id for message in run_checks(tags=["dbtools"]) if message.id.startswith("dbtools.")}


def test_defaults_pass(settings):
    assert ids() == set()


@pytest.mark.parametrize("value", [0, -1, "26", None])
def test_backup_max_age(settings, value):
    settings.MCMANAGER_BACKUP_MAX_AGE_HOURS = value
    assert ids() == {"dbtools.E001"}


def test_backup_max_age_of_months_warns(settings):
    settings.MCMANAGER_BACKUP_MAX_AGE_HOURS = 24 * 90
    assert ids() == {"dbtools.W001"}


def test_compression(settings):
    settings.MCMANAGER_BACKUP_COMPRESSION = "lz4"
    assert ids() == {"dbtools.E002"}


@pytest.mark.parametrize(
    "name", ["MCMANAGER_KEEP_LAST", "MCMANAGER_KEEP_DAILY", "MCMANAGER_KEEP_WEEKLY", "MCMANAGER_KEEP_MONTHLY"]
)
def test_keep_settings(settings, name):
    setattr(settings, name, -1)
    assert ids() == {"dbtools.E003"}
    setattr(settings, name, 0)
    assert ids() == set()


def test_min_free(settings):
    settings.MCMANAGER_BACKUP_MIN_FREE_MB = -1
    assert ids() == {"dbtools.E004"}


def test_malformed_environment_is_named(monkeypatch, settings):
    monkeypatch.setenv("MCMANAGER_BACKUP_MAX_AGE_HOURS", "abc")
    settings.MCMANAGER_BACKUP_MAX_AGE_HOURS = -1  # what env_int makes of it
    (message,) = [m for m in run_checks(tags=["dbtools"]) if m.id == "dbtools.E001"]
    assert "'abc'" in message.msg


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("command", ["backup", "restore", "validate", "dbstats"])
def test_operations_commands_still_run_their_own_checks(manage_py, command):
    """The operations commands skip the URL/admin checks, not the secret key's or their settings'."""
    done = manage_py(command, env={"DJANGO_SECRET_KEY": ""})
    assert done.returncode == 1 and "mcmanager.E001" in done.stderr, done.stderr
    done = manage_py(command, env={"MCMANAGER_BACKUP_COMPRESSION": "lz4"})
    assert done.returncode == 1 and "dbtools.E002" in done.stderr, done.stderr
