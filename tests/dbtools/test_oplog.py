"""dbtools.oplog: the operations log, and the journal of operations that must not write the live database.

The journal (``.operations-journal.jsonl`` beside the backups) is read as untrusted data:
its directory is the backup directory, which others may be able to write.
"""

import json
import logging
import os
from datetime import UTC, datetime

import pytest
from django.db.models.query import QuerySet

from dbtools.errors import RestoreRefused
from dbtools.models import OperationLog
from dbtools.oplog import (
    JOURNAL_MAX_BYTES,
    OperationRecord,
    append_journal,
    journal_operation,
    journal_path,
    merge_journal,
    pending_journal,
    record_operation,
)

pytestmark = pytest.mark.django_db

STARTED = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)


def _entry(**changes) -> dict:
    """A sound journal line's fields, with ``changes``."""
    return {
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
        **changes,
    }


def _write_journal(*lines) -> None:
    path = journal_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))


# --- record_operation: the log in the database -----------------------------------------


def test_record_operation_logs_the_outcome_and_what_the_block_filled_in():
    with record_operation("backup", actor="ops") as record:
        record.file = "/backups/a"
        record.message = "done"
        record.details["size"] = 5
    entry = OperationLog.objects.get()
    assert (entry.operation, entry.outcome, entry.actor) == ("backup", "success", "ops")
    assert entry.file == "/backups/a" and entry.message == "done" and entry.details == {"size": 5}
    assert entry.finished_at >= entry.started_at and entry.duration_ms >= 0


@pytest.mark.parametrize(
    ("exc", "outcome", "message"),
    [
        (RestoreRefused("the checksum differs"), "refused", "the checksum differs"),
        (ValueError("bad value"), "failure", "bad value"),
        (KeyboardInterrupt(), "failure", "KeyboardInterrupt"),  # no message: the class name
    ],
)
def test_an_exception_is_logged_with_its_outcome_and_goes_on_up(exc, outcome, message):
    with pytest.raises(type(exc)), record_operation("restore"):
        raise exc
    entry = OperationLog.objects.get()
    assert (entry.outcome, entry.message) == (outcome, message)


def test_a_message_set_before_the_exception_is_kept():
    with pytest.raises(ValueError), record_operation("restore") as record:
        record.message = "what the operation said first"
        raise ValueError("later")
    assert OperationLog.objects.get().message == "what the operation said first"


def test_a_log_that_cannot_be_written_never_hides_the_result(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no such table: dbtools_operationlog")

    monkeypatch.setattr(QuerySet, "create", broken)
    with caplog.at_level(logging.WARNING, logger="dbtools.oplog"), record_operation("backup") as record:
        record.message = "fine"
    assert "could not write the operations log" in caplog.text


# --- the journal -----------------------------------------------------------------------


def test_journal_operation_writes_the_journal_not_the_log():
    with journal_operation("verify", actor="ops") as record:
        record.message = "verified (quick)"
    assert not OperationLog.objects.exists()
    [entry] = pending_journal()
    assert (entry["operation"], entry["outcome"], entry["actor"]) == ("verify", "success", "ops")
    assert entry["started_at"].tzinfo is not None and entry["duration_ms"] >= 0
    assert journal_path().stat().st_mode & 0o777 == 0o600
    assert journal_path().parent.stat().st_mode & 0o777 == 0o700


def test_a_refused_journalled_operation_is_refused_and_raises():
    with pytest.raises(RestoreRefused), journal_operation("restore"):
        raise RestoreRefused("not signed by this installation")
    [entry] = pending_journal()
    assert (entry["outcome"], entry["message"]) == ("refused", "not signed by this installation")


def test_details_that_are_not_json_are_written_as_text():
    with journal_operation("verify") as record:
        record.details = {"path": journal_path().parent, "when": STARTED}
    [entry] = pending_journal()
    assert entry["details"] == {"path": str(journal_path().parent), "when": str(STARTED)}


def test_a_journal_that_cannot_be_written_never_fails_the_operation(settings, tmp_path, caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    settings.MCMANAGER_BACKUP_DIR = blocker / "backups"
    with caplog.at_level(logging.WARNING, logger="dbtools.oplog"), journal_operation("verify") as record:
        record.message = "verified"
    assert "could not write the operations journal" in caplog.text
    assert pending_journal() == []


def test_the_journal_is_never_written_through_a_symlink(tmp_path):
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("precious\n")
    journal_path().parent.mkdir(parents=True)
    journal_path().symlink_to(elsewhere)
    append_journal(OperationRecord(operation="verify"), STARTED, 0.5)
    assert elsewhere.read_text() == "precious\n"


def test_a_full_journal_takes_no_more_entries(caplog):
    _write_journal(_entry())
    with journal_path().open("a") as f:
        f.write("x" * JOURNAL_MAX_BYTES + "\n")
    size = journal_path().stat().st_size
    with caplog.at_level(logging.WARNING, logger="dbtools.oplog"):
        append_journal(OperationRecord(operation="verify"), STARTED, 0.5)
    assert journal_path().stat().st_size == size
    assert "is full" in caplog.text
    assert [e["operation"] for e in pending_journal()] == ["restore"]


@pytest.mark.parametrize(
    "line",
    [
        "not json",
        "[1, 2]",
        '"a string"',
        json.dumps(_entry(outcome="pwned")),
        json.dumps(_entry(started_at=5)),
        json.dumps(_entry(started_at="2026-11-29T10:00:00")),  # no time zone
        json.dumps(_entry(duration_ms=-1)),
        json.dumps(_entry(duration_ms="1000")),
        json.dumps(_entry(details=["a", "list"])),
        json.dumps(_entry(message=["not", "text"])),
        json.dumps({k: v for k, v in _entry().items() if k != "finished_at"}),
        "[" * 100_000,  # nested past the parser's recursion limit
    ],
)
def test_a_bad_journal_line_is_skipped_and_the_others_read(line):
    _write_journal(line, _entry(message="the sound one"))
    assert [e["message"] for e in pending_journal()] == ["the sound one"]


def test_overlong_fields_are_cut_to_the_log_columns():
    _write_journal(_entry(operation="o" * 100, actor="a" * 500, file="f" * 5000, message="m" * 20_000))
    [entry] = pending_journal()
    assert (len(entry["operation"]), len(entry["actor"]), len(entry["file"]), len(entry["message"])) == (
        32,
        150,
        1024,
        10_000,
    )
    assert merge_journal("default") == 1
    assert len(OperationLog.objects.get().operation) == 32


def test_pending_journal_of_one_database():
    _write_journal(_entry(database="default", message="mine"), _entry(database="other", message="theirs"))
    assert [e["message"] for e in pending_journal("default")] == ["mine"]
    assert [e["message"] for e in pending_journal()] == ["mine", "theirs"]


# --- merging the journal into the log --------------------------------------------------


def test_merge_moves_this_databases_entries_and_keeps_the_others():
    _write_journal(
        _entry(database="default", message="mine", duration_ms=1001),
        _entry(database="other", message="theirs", duration_ms=1001, details={"level": "full"}),
    )
    assert merge_journal("default") == 1
    moved = OperationLog.objects.get()
    assert (moved.message, moved.outcome, moved.duration_ms) == ("mine", "refused", 1001)
    [kept] = pending_journal()
    assert (kept["database"], kept["message"], kept["details"]) == ("other", "theirs", {"level": "full"})
    assert kept["duration_ms"] == 1001  # back in the journal with its duration to the millisecond
    assert kept["started_at"] == datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)
    assert kept["finished_at"] == datetime(2026, 11, 29, 10, 0, 1, tzinfo=UTC)


def test_merge_without_a_journal_does_nothing():
    assert merge_journal("default") == 0
    assert not journal_path().exists() and not OperationLog.objects.exists()


def test_a_journal_claimed_by_another_process_is_left_to_it():
    _write_journal(_entry())
    claimed = journal_path().with_name(f"{journal_path().name}.99999.merging")
    os.rename(journal_path(), claimed)
    assert merge_journal("default") == 0
    assert claimed.exists() and not OperationLog.objects.exists()


def test_a_merge_that_fails_puts_the_journal_back(monkeypatch, caplog):
    _write_journal(_entry(message="keep me"))

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(QuerySet, "bulk_create", broken)
    with caplog.at_level(logging.WARNING, logger="dbtools.oplog"):
        assert merge_journal("default") == 0
    assert "could not merge the operations journal" in caplog.text
    assert [e["message"] for e in pending_journal()] == ["keep me"]
    assert sorted(p.name for p in journal_path().parent.iterdir()) == [journal_path().name]


def test_the_next_logged_operation_merges_the_journal():
    with journal_operation("verify") as record:
        record.message = "checked"
    with record_operation("backup") as record:
        record.message = "backed up"
    assert sorted(OperationLog.objects.values_list("operation", "message")) == [
        ("backup", "backed up"),
        ("verify", "checked"),
    ]
    assert not journal_path().exists()
