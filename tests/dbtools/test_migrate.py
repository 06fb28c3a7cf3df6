"""manage.py migrate takes a backup first, only when there is something to migrate."""

import io
import json
import re

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from dbtools.backups import list_backups
from dbtools.models import OperationLog

from .backup_support import empty_database_url

pytestmark = pytest.mark.django_db(transaction=True)


def session_table_exists() -> bool:
    with connection.cursor() as cursor:
        return "django_session" in connection.introspection.table_names(cursor)


@pytest.fixture
def restore_sessions():
    """Whatever a test does to the sessions app, the schema is whole again afterwards."""
    yield
    call_command("migrate", "sessions", no_backup=True, verbosity=0)


def test_a_backup_is_taken_only_when_there_is_something_to_migrate(restore_sessions):
    out = io.StringIO()
    call_command("migrate", verbosity=1, stdout=out)
    assert list_backups() == []  # nothing to migrate: no backup
    assert "Pre-migrate backup" not in out.getvalue()

    out = io.StringIO()
    call_command("migrate", "sessions", "zero", verbosity=1, stdout=out)
    [first] = list_backups()
    assert first.reason == "pre-migrate" and first.verified
    assert f"Pre-migrate backup: {first.path}" in out.getvalue()
    assert "django_session" in first.manifest.row_counts  # taken before the table was dropped
    assert not session_table_exists()

    call_command("migrate", verbosity=0)
    assert len(list_backups()) == 2
    assert session_table_exists()
    entry = OperationLog.objects.filter(operation="migrate").first()
    assert entry.outcome == "success" and "sessions.0001_initial" in entry.details["plan"]


def test_no_backup_skips_it(restore_sessions):
    call_command("migrate", "sessions", "zero", no_backup=True, verbosity=0)
    assert list_backups() == []
    assert not session_table_exists()


def test_a_failed_backup_stops_the_migration_before_anything_changes(settings, tmp_path, restore_sessions):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    settings.MCMANAGER_BACKUP_DIR = blocker / "backups"
    with pytest.raises(CommandError) as exc:
        call_command("migrate", "sessions", "zero", verbosity=0)
    assert exc.value.returncode == 2
    assert "nothing was migrated" in str(exc.value)
    assert session_table_exists()  # still migrated: nothing changed


def test_a_fresh_empty_database_migrates_without_a_backup(manage_py, settings):
    url, drop = empty_database_url()
    try:
        done = manage_py("migrate", "-v", "1", env={"DATABASE_URL": url})
        assert done.returncode == 0, done.stderr
        assert "Applying accounts.0001_initial" in done.stdout
        assert "Pre-migrate backup" not in done.stdout
        assert list_backups() == []
        done = manage_py("migrate", "-v", "1", env={"DATABASE_URL": url})
        assert done.returncode == 0 and "No migrations to apply" in done.stdout
        assert list_backups() == []
    finally:
        drop()


@pytest.mark.engines("postgresql", "mysql")
def test_a_database_that_is_not_there_is_one_line_not_a_traceback(manage_py):
    """Django's system checks connect before a command runs (MariaDB's model checks do): a
    missing database ends in one line and exit 2, whichever command meets it first."""
    from tests.conftest import database_url_for

    url = database_url_for().rsplit("/", 1)[0] + "/mcmanager_no_such_database"
    done = manage_py("migrate", "--no-input", env={"DATABASE_URL": url})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("CommandError:") and "mcmanager_no_such_database" in lines[0]


def test_the_log_says_applied_or_unapplied_with_the_right_plural(restore_sessions):
    call_command("migrate", "sessions", "zero", verbosity=0)
    call_command("migrate", "sessions", verbosity=0)
    call_command("migrate", "sessions", "zero", no_backup=True, verbosity=0)
    entries = list(OperationLog.objects.filter(operation="migrate").order_by("id").values_list("message", "outcome"))
    assert entries == [
        ("unapplied 1 migration", "success"),
        ("applied 1 migration", "success"),
        ("unapplied 1 migration", "success"),  # --no-backup: no backup, logged all the same
    ]


def test_plan_message_counts_each_direction():
    from dbtools.management.commands.migrate import plan_message

    assert plan_message([(None, False)] * 3) == "applied 3 migrations"
    assert plan_message([(None, True)] * 2) == "unapplied 2 migrations"
    assert plan_message([(None, False), (None, True)]) == "applied 1 migration, unapplied 1 migration"


def test_the_first_migrate_of_an_empty_database_is_logged(manage_py):
    url, drop = empty_database_url()
    read_log = (
        "import json; from dbtools.models import OperationLog; "
        "print(json.dumps(list(OperationLog.objects.values_list('operation', 'outcome', 'message'))))"
    )
    try:
        done = manage_py("migrate", "-v", "0", env={"DATABASE_URL": url})
        assert done.returncode == 0, done.stderr
        log = manage_py("shell", "-v", "0", "-c", read_log, env={"DATABASE_URL": url})
        assert log.returncode == 0, log.stderr
        [(operation, outcome, message)] = json.loads(log.stdout)
        assert (operation, outcome) == ("migrate", "success")
        assert re.fullmatch(r"applied \d+ migrations", message), message
        again = manage_py("migrate", "-v", "0", env={"DATABASE_URL": url})  # nothing to do: not logged
        assert again.returncode == 0, again.stderr
        assert len(json.loads(manage_py("shell", "-v", "0", "-c", read_log, env={"DATABASE_URL": url}).stdout)) == 1
    finally:
        drop()
