"""Every operation an operator audits is in the log: checks and refused restores too.

A refused restore must leave the live database byte for byte as it was, so refusals
(and the read-only checks) wait in the journal beside the backups; the dashboard shows
them at once and the next logged operation moves them into the operations log.
"""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import User
from dbtools.backups import RetentionPolicy, create_backup, prune_backups
from dbtools.models import OperationLog
from dbtools.oplog import journal_path, pending_journal

from .restore_helpers import flipped_copy, live_fingerprint, make_data

pytestmark = pytest.mark.django_db(transaction=True)


def _ops() -> list[tuple[str, str]]:
    return [(o.operation, o.outcome) for o in OperationLog.objects.order_by("started_at", "id")]


def test_a_refused_restore_is_journalled_and_the_live_database_is_untouched(tmp_path):
    make_data("a")
    good = create_backup().path
    bad = flipped_copy(good, tmp_path)
    before = live_fingerprint()
    with pytest.raises(CommandError):
        call_command("restore", str(bad), "--noinput", stdout=StringIO())
    assert live_fingerprint() == before  # byte for byte on SQLite
    pending = pending_journal()
    assert [(e["operation"], e["outcome"]) for e in pending] == [("restore", "refused")]
    assert pending[0]["file"] == str(bad) and "checksum" in pending[0]["message"]
    assert journal_path().stat().st_mode & 0o777 == 0o600


def test_checks_are_journalled_and_the_next_logged_operation_moves_them_in(tmp_path):
    make_data("a")
    good = create_backup().path
    call_command("backup", "--check", str(good), stdout=StringIO())
    call_command("restore", "--check", str(good), stdout=StringIO())
    bad = flipped_copy(good, tmp_path)
    with pytest.raises(CommandError):
        call_command("restore", "--check", str(bad), stdout=StringIO())
    assert [(e["operation"], e["outcome"]) for e in pending_journal()] == [
        ("verify", "success"),
        ("restore-check", "success"),
        ("restore-check", "refused"),
    ]
    assert _ops() == [("backup", "success")]
    create_backup()  # logs itself, and moves the journal in
    assert _ops() == [
        ("backup", "success"),
        ("verify", "success"),
        ("restore-check", "success"),
        ("restore-check", "refused"),
        ("backup", "success"),
    ]
    assert not journal_path().exists() and pending_journal() == []


def test_the_dashboard_shows_a_refused_restore_at_once(client, tmp_path):
    User.objects.create_superuser("boss", password="pw-for-the-test")
    client.login(username="boss", password="pw-for-the-test")
    make_data("a")
    bad = flipped_copy(create_backup().path, tmp_path)
    with pytest.raises(CommandError):
        call_command("restore", str(bad), "--noinput", stdout=StringIO())
    page = client.get("/admin/health/").content.decode()
    operations = page[page.index('id="operations"') :]
    assert "refused" in operations and "restore" in operations


def test_a_bad_journal_line_does_not_take_down_the_dashboard(client):
    """The journal's own checks are in test_oplog.py; here, the dashboard and the next backup."""
    User.objects.create_superuser("boss", password="pw-for-the-test")
    client.login(username="boss", password="pw-for-the-test")
    path = journal_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    good = {
        "operation": "restore",
        "database": "default",
        "actor": "cron",
        "file": "x",
        "checksum": "",
        "message": "refused for a reason",
        "details": {},
        "outcome": "refused",
        "started_at": "2026-11-29T10:00:00+00:00",
        "finished_at": "2026-11-29T10:00:01+00:00",
        "duration_ms": 1000,
    }
    lines = ["not json", json.dumps({**good, "outcome": "pwned"}), "[1, 2]", json.dumps({**good, "started_at": 5})]
    path.write_text("\n".join([*lines, json.dumps(good)]) + "\n")
    assert client.get("/admin/health/").status_code == 200
    create_backup()
    assert ("restore", "refused") in _ops()


def test_a_prune_logs_each_deleted_file_and_why():
    make_data("a")
    first = create_backup().path
    create_backup()
    result = prune_backups(RetentionPolicy(keep_last=1))
    assert result.deleted == [first.name]
    entry = OperationLog.objects.get(operation="prune")
    assert entry.outcome == "success" and first.name in entry.message
    assert entry.details["deleted"] == [first.name]
    assert entry.details["policy"]["keep_last"] == 1 and "retention policy" in entry.details["why"]
    # A dry run, or a prune that deletes nothing, logs nothing.
    prune_backups(RetentionPolicy(keep_last=1), dry_run=True)
    prune_backups(RetentionPolicy(keep_last=5))
    assert OperationLog.objects.filter(operation="prune").count() == 1


def test_a_missing_file_is_journalled_alike_by_restore_and_both_checks(tmp_path):
    missing = tmp_path / "nope"
    for args in (["restore", str(missing), "--noinput"], ["restore", "--check", str(missing)]):
        with pytest.raises(CommandError) as exc:
            call_command(*args, stdout=StringIO())
        assert exc.value.returncode == 2 and "no such backup" in str(exc.value)
    with pytest.raises(CommandError) as exc:
        call_command("backup", "--check", str(missing), stdout=StringIO())
    assert exc.value.returncode == 2 and str(exc.value) == f"no such backup: {missing} (no such file)"
    assert [(e["operation"], e["outcome"], e["file"]) for e in pending_journal()] == [
        ("restore", "failure", str(missing)),
        ("restore-check", "failure", str(missing)),
        ("verify", "failure", str(missing)),
    ]
    assert all("no such backup" in e["message"] for e in pending_journal())
    assert _ops() == []  # the live database is not written to


def test_restore_latest_with_no_backup_is_journalled_as_refused():
    with pytest.raises(CommandError):
        call_command("restore", "--latest", "--noinput", stdout=StringIO())
    assert [(e["operation"], e["outcome"], e["file"]) for e in pending_journal()] == [
        ("restore", "refused", "--latest")
    ]
