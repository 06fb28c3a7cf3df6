"""Two live databases sharing one backup directory: each one's backups, prunes and journal
entries are its own, by engine, name and identity (where the database lives), never by the
alias or the name alone.

The second database is real: on SQLite a file of the same name in another directory, on
PostgreSQL and MariaDB another database on the same server, migrated and backed up by
``manage.py`` in a subprocess, as a second installation would.
"""

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from dbtools.backups import (
    RetentionPolicy,
    belongs_to,
    create_backup,
    latest_verified_backup,
    list_backups,
    prune_backups,
)
from dbtools.engines import get_engine
from dbtools.manifest import manifest_path, read_manifest
from dbtools.models import OperationLog
from dbtools.monitoring import HEALTHY, backup_state, check_backup_freshness
from dbtools.oplog import (
    JOURNAL_NAME,
    OperationRecord,
    append_journal,
    journal_path,
    merge_journal,
    pending_journal,
    record_operation,
)

from ..conftest import database_url_for
from .restore_helpers import data_digest, make_data
from .test_backups_per_database import _foreign_copy

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def second_database(tmp_path):
    """The URL of a second live database, migrated, that a shared backup directory may confuse
    with this one: the same SQLite file name in another directory, or another database on
    the same server. Dropped afterwards."""
    engine = get_engine("default")
    name = engine.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        other = tmp_path / "elsewhere" / Path(name).name
        other.parent.mkdir()
        url, dropped = f"sqlite:///{other}", str(other)
    else:
        dropped = f"{name}_second"
        engine.drop_database(dropped)
        engine.create_database(dropped)
        url = database_url_for().rsplit("/", 1)[0] + "/" + dropped
    yield url
    engine.drop_database(dropped)


def _run(manage_py, url, *args):
    return manage_py(*args, env={"DATABASE_URL": url})


def test_two_live_databases_share_a_backup_directory(manage_py, second_database):
    make_data("first")
    own = create_backup().path
    before = data_digest()
    migrated = _run(manage_py, second_database, "migrate", "--no-backup", "-v", "0")
    assert migrated.returncode == 0, migrated.stderr

    # restore --latest in the second database: the first's backup is of a live database of
    # this machine, never a new machine's fallback.
    refused = _run(manage_py, second_database, "restore", "--latest", "--noinput")
    assert refused.returncode != 0
    assert "restore one by its file name" in refused.stderr and own.name not in refused.stdout
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert [b.name for b in list_backups()] == [own.name]  # no safety backup, nothing restored
    # Its refusal is journalled for the second database only: the first's next logged
    # operation leaves it there, and the first's dashboard does not show it.
    assert [(e["operation"], e["outcome"]) for e in pending_journal()] == [("restore", "refused")]
    assert pending_journal("default") == []
    with record_operation("maintain"):
        pass
    assert not OperationLog.objects.filter(operation="restore").exists()
    assert len(pending_journal()) == 1

    # The second database's backup (newer) is its own: not the first's newest, nor counted.
    made = _run(manage_py, second_database, "backup")
    assert made.returncode == 0, made.stderr
    theirs = Path(made.stdout.strip().splitlines()[0])
    assert not belongs_to(read_manifest(theirs), "default")
    assert latest_verified_backup(database="default").name == own.name
    check = check_backup_freshness("default")
    assert check.status == HEALTHY and check.details["backups"] == 1, check
    state = backup_state(database="default")
    assert state["count"] == 1 and state["newest_verified"]["name"] == own.name
    assert state["other_databases"] == 1
    out = StringIO()
    call_command("dbstats", "--json", stdout=out)
    assert json.loads(out.getvalue())["backup"]["newest_verified"]["name"] == own.name

    # Its --list names each backup's database; --json with its identity.
    listed = _run(manage_py, second_database, "backup", "--list", "--json")
    by_name = {b["name"]: b for b in json.loads(listed.stdout)}
    assert by_name[own.name]["database_identity"] == get_engine("default").database_identity()
    ours, second = ((by_name[n]["database_name"], by_name[n]["database_identity"]) for n in (own.name, theirs.name))
    assert second[1] and second != ours
    text = _run(manage_py, second_database, "backup", "--list").stdout
    own_line = next(line for line in text.splitlines() if line.startswith(own.name))
    assert f" {get_engine('default').backup_identity()} " in own_line

    # Its prune deletes none of the first's backups, and logs in its own log only.
    older = _foreign_copy(own, -48)  # an older backup of the first database
    pruned = _run(manage_py, second_database, "backup", "--prune", "--keep-last", "1")
    assert pruned.returncode == 0, pruned.stderr
    assert own.exists() and older.exists() and theirs.exists()
    # The first's prune deletes its own older backup only.
    result = prune_backups(RetentionPolicy(keep_last=1))
    assert result.deleted == [older.name] and theirs.exists() and result.others == 1
    assert OperationLog.objects.filter(operation="prune", outcome="success").count() == 1

    # The second's own logged operations moved its journal entry into its log.
    assert pending_journal() == []
    assert data_digest() == before


def test_a_backup_of_the_same_name_elsewhere_is_not_this_databases(tmp_path):
    """Same engine and name, another identity (another SQLite file of that name, another
    server): another database's backup for health, --latest and retention."""
    make_data("own")
    own = create_backup().path
    engine = get_engine("default")
    if connection.vendor == "sqlite":
        other_file = tmp_path / "x" / engine.backup_identity()
        other_file.parent.mkdir()
        other_file.write_bytes(b"")
        identity = str(other_file)
    else:
        identity = "another server"
    newer = _foreign_copy(own, 1, database_identity=identity)
    assert read_manifest(newer).database_name == read_manifest(own).database_name
    assert not belongs_to(read_manifest(newer), "default")
    assert latest_verified_backup(database="default").name == own.name
    assert backup_state(database="default")["newest_verified"]["name"] == own.name
    make_data("later")
    call_command("restore", "--latest", "--noinput", stdout=StringIO())
    assert {b.reason for b in list_backups() if b.name not in (own.name, newer.name)} == {"pre-restore"}
    result = prune_backups(RetentionPolicy(keep_last=1))
    assert newer.exists() and newer.name not in result.kept and result.others == 1


def test_restore_latest_never_falls_back_on_another_live_database():
    """No backup of this database; one of another database of this machine (another SQLite
    file that exists here; another database on this server): refused, naming it."""
    make_data("own")
    before = data_digest()
    own = create_backup().path
    identity = get_engine("default").database_identity()  # this machine's
    if connection.vendor == "sqlite":
        identity = str(Path(identity).parent / "neighbour.sqlite3")
        Path(identity).write_bytes(b"")
    _foreign_copy(own, 1, database_name="neighbour", database_identity=identity)
    own.unlink()
    manifest_path(own).unlink()
    make_data("later")
    after = data_digest()
    with pytest.raises(CommandError, match=r"'neighbour' at .*restore one by its file name"):
        call_command("restore", "--latest", "--noinput", stdout=StringIO())
    with pytest.raises(CommandError, match="restore one by its file name"):
        call_command("restore", "--check", "--latest", stdout=StringIO())
    assert data_digest() == after != before
    if connection.vendor == "sqlite":
        Path(identity).unlink()


def test_a_new_machines_restore_names_the_database_the_backup_is_of():
    make_data("old")
    expected = data_digest()
    own = create_backup().path
    old = _foreign_copy(own, 1, database_name="old-db", database_identity="old-machine:gone")
    own.unlink()
    manifest_path(own).unlink()
    make_data("new")
    out = StringIO()
    call_command("restore", "--check", "--latest", stdout=out)
    assert "note: the backup is of another database: 'old-db' at old-machine:gone" in out.getvalue()
    out = StringIO()
    call_command("restore", "--latest", "--noinput", stdout=out)
    assert data_digest() == expected
    assert "'old-db' at old-machine:gone" in out.getvalue() and old.name in out.getvalue()
    entry = OperationLog.objects.filter(operation="restore").latest("id")
    assert "'old-db'" in entry.message and entry.details["backup_of"] == "'old-db' at old-machine:gone"


def test_the_identity_is_signed():
    own = create_backup().path
    manifest = read_manifest(own)
    assert manifest.database_identity == get_engine("default").database_identity() != ""
    assert manifest.signed
    data = json.loads(manifest_path(own).read_text())
    data["database_identity"] = "somewhere else"
    manifest_path(own).write_text(json.dumps(data))
    assert not read_manifest(own).signed


def test_an_old_manifest_without_the_identity_is_matched_by_name():
    own = create_backup().path
    data = json.loads(manifest_path(own).read_text())
    data.pop("database_identity")
    data.pop("signature")
    from dbtools.manifest import BackupManifest, write_manifest

    write_manifest(own, BackupManifest.from_dict(data))
    assert json.loads(manifest_path(own).read_text())["database_identity"] == ""
    assert belongs_to(read_manifest(own), "default")


# --- the journal ------------------------------------------------------------------------


def _journal_line(**changes) -> str:
    entry = {
        "operation": "restore",
        "database": "default",
        "actor": "cron",
        "file": "x",
        "checksum": "",
        "message": "refused",
        "details": {},
        "outcome": "refused",
        "started_at": "2026-11-29T10:00:00+00:00",
        "finished_at": "2026-11-29T10:00:01+00:00",
        "duration_ms": 1000,
        **changes,
    }
    return json.dumps(entry)


def test_journal_entries_carry_their_database_and_merge_only_into_it():
    from django.utils import timezone

    engine = get_engine("default")
    append_journal(OperationRecord(operation="restore-check", message="mine"), timezone.now(), 0.5)
    [mine] = [json.loads(line) for line in journal_path().read_text().splitlines()]
    assert (mine["database"], mine["engine"], mine["database_name"], mine["database_identity"]) == (
        "default",
        engine.vendor,
        engine.backup_identity(),
        engine.database_identity(),
    )
    theirs = _journal_line(
        message="theirs", engine=engine.vendor, database_name=engine.backup_identity(), database_identity="elsewhere"
    )
    other_engine = _journal_line(message="other engine", engine="none", database_name="x", database_identity="")
    with open(journal_path(), "a") as f:
        f.write(theirs + "\n" + other_engine + "\n")
    assert [e["message"] for e in pending_journal("default")] == ["mine"]
    assert merge_journal("default") == 1
    assert list(OperationLog.objects.values_list("message", flat=True)) == ["mine"]
    # The others stay, as they were written, in a journal of their own name.
    assert journal_path().read_text().splitlines() == [theirs, other_engine]
    assert not list(journal_path().parent.glob(f"{JOURNAL_NAME}.*"))


def test_an_old_journal_entry_without_its_database_is_merged_by_alias():
    journal_path().parent.mkdir(parents=True, exist_ok=True)
    journal_path().write_text(_journal_line(message="old") + "\n")
    assert merge_journal("default") == 1
    assert not journal_path().exists()
