"""A backup counts only for the database it is of: health, dbstats, --latest and retention agree.

One backup directory shared by several databases (two URLs, two engines): each database
sees only the backups whose manifest says they are of its engine and its database.
"""

import json
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from dbtools.backups import (
    RetentionPolicy,
    belongs_to,
    create_backup,
    latest_verified_backup,
    list_backups,
    prune_backups,
)
from dbtools.manifest import BackupManifest, manifest_path, write_manifest
from dbtools.monitoring import HEALTHY, UNHEALTHY, backup_state, check_backup_freshness

from .restore_helpers import data_digest, make_data

pytestmark = pytest.mark.django_db(transaction=True)

OTHER_ENGINE = {"sqlite": "postgresql", "postgresql": "mysql", "mysql": "sqlite"}
# A database identity that is no database of this machine: no such SQLite file here, no
# server's identity.
ELSEWHERE = "old-machine:gone/mcmanager.sqlite3"


def _foreign_copy(source: Path, hours_newer: float, **changes) -> Path:
    """A copy of ``source`` claiming to be of another database (signed by us: a real backup
    of that other database, made by this installation), ``hours_newer`` than ``source``."""
    data = json.loads(manifest_path(source).read_text())
    when = timezone.now() + timedelta(hours=hours_newer)
    name = f"db_backup_{when:%Y%m%d_%H%M%S}{source.name[len('db_backup_20260101_000000') :]}"
    target = source.with_name(name)
    target.write_bytes(source.read_bytes())
    data.update(changes, file=name, created_at=when.isoformat())
    data.pop("signature", None)
    write_manifest(target, BackupManifest.from_dict(data))
    return target


def test_each_database_sees_only_its_own_backups():
    make_data("own")
    own = create_backup().path
    other_db = _foreign_copy(own, 1, database_name="another")
    other_engine = _foreign_copy(own, 2, engine=OTHER_ENGINE[connection.vendor])
    listed = {b.name: b for b in list_backups()}
    assert belongs_to(listed[own.name].manifest, "default")
    assert not belongs_to(listed[other_db.name].manifest, "default")
    assert not belongs_to(listed[other_engine.name].manifest, "default")
    # --latest and the health check: the newest of this database, not the newer others.
    assert latest_verified_backup(database="default").name == own.name
    state = backup_state(database="default")
    assert state["count"] == 1 and state["newest_verified"]["name"] == own.name
    assert state["other_databases"] == 2
    out = StringIO()
    call_command("restore", "--check", "--latest", stdout=out)
    assert own.name in out.getvalue()
    # Retention prunes this database's backups only: the others' are not its to keep or delete.
    result = prune_backups(RetentionPolicy(keep_last=1))
    assert result.deleted == [] and set(result.kept) == {own.name} and result.others == 2
    assert other_db.exists() and other_engine.exists()


def test_only_other_databases_backups_is_no_backup():
    make_data("own")
    own = create_backup().path
    _foreign_copy(own, 1, database_name="another")
    own.unlink()
    manifest_path(own).unlink()
    check = check_backup_freshness("default")
    assert check.status == UNHEALTHY, check
    out = StringIO()
    call_command("dbstats", "--json", stdout=out)
    assert json.loads(out.getvalue())["backup"]["newest_verified"] is None


def test_restore_latest_takes_this_databases_backup():
    make_data("own")
    before = data_digest()
    own = create_backup().path
    _foreign_copy(own, 1, database_name="another")
    make_data("later")
    call_command("restore", "--latest", "--noinput", stdout=StringIO())
    assert data_digest() == before
    assert check_backup_freshness("default").status == HEALTHY


def test_a_new_machine_restores_the_only_other_databases_backup_but_never_guesses():
    """restore --latest on a database with no backup of its own (a new machine): the newest
    backup of the old machine's database (recorded elsewhere: a path that does not exist
    here, another server) when all are of one database; refused, naming them, when several."""
    make_data("old")
    expected = data_digest()
    own = create_backup().path
    old_machine = _foreign_copy(own, 1, database_name="old-machine-db", database_identity=ELSEWHERE)
    own.unlink()
    manifest_path(own).unlink()
    make_data("new")
    out = StringIO()
    call_command("restore", "--latest", "--noinput", stdout=out)
    assert old_machine.name in out.getvalue() and data_digest() == expected
    # Two other databases: no guess.
    safety = [b for b in list_backups() if b.reason == "pre-restore"]
    for b in safety:
        b.path.unlink()
        manifest_path(b.path).unlink()
    _foreign_copy(old_machine, 2, database_name="staging-db")  # 2: another name than old_machine's
    with pytest.raises(CommandError, match="backups of 2 other .* database\\(s\\): 'old-machine-db'.*'staging-db'"):
        call_command("restore", "--latest", "--noinput", stdout=StringIO())
