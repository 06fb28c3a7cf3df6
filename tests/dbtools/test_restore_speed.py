"""What the restore's speed work must not change (issue 16, part 4).

The safety backup runs alongside the load, but a refused restore still leaves nothing of
it (no file, no log entry) and a restore that goes ahead logs it before its own entry; the
replaced database is dropped while the restore validates, but gone when restore returns;
SQLite's migrated schema comes from a cached template that is keyed by the migrations.
"""

import json
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection, connections

from dbtools.backups import create_backup, list_backups
from dbtools.manifest import manifest_path
from dbtools.models import OperationLog
from dbtools.restore import restore_backup

from .restore_helpers import _copy_manifest, data_digest, edit_manifest, live_fingerprint, make_data

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def backup_file():
    make_data("a")
    return Path(create_backup(reason="manual").path)


def _pre_restore_backups() -> list[str]:
    return [str(i.path) for i in list_backups() if i.reason == "pre-restore"]


def test_a_refused_restore_keeps_nothing_of_its_safety_backup(backup_file, tmp_path):
    make_data("b")
    # A manifest whose row counts the file does not have: refused after the load, while
    # (or after) the safety backup ran alongside it.
    bad = tmp_path / backup_file.name
    bad.write_bytes(backup_file.read_bytes())
    _copy_manifest(backup_file, bad)
    counts = json.loads(manifest_path(bad).read_text())["row_counts"]
    edit_manifest(bad, row_counts={**counts, "accounts_user": 999})
    before = live_fingerprint()
    with pytest.raises(CommandError, match="does not load as its manifest says"):
        call_command("restore", str(bad), "--noinput", stdout=StringIO(), stderr=StringIO())
    assert live_fingerprint() == before
    assert _pre_restore_backups() == []


def test_the_safety_backup_is_logged_before_the_restore(backup_file):
    make_data("b")
    result = restore_backup(str(backup_file), actor="tester")
    assert result.safety_backup and Path(result.safety_backup).exists()
    assert _pre_restore_backups() == [result.safety_backup]
    entries = list(OperationLog.objects.order_by("started_at", "id").values_list("operation", "file", "outcome"))
    safety = entries.index(("backup", result.safety_backup, "success"))
    restore = entries.index(("restore", str(backup_file), "success"))
    assert safety < restore


@pytest.mark.engines("postgresql", "mysql")
def test_the_replaced_database_is_gone_when_restore_returns(backup_file):
    make_data("b")
    restore_backup(str(backup_file))
    like = connection.settings_dict["NAME"][:30] + "_old_%"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [like])
        else:
            cursor.execute("SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE %s", [like])
        assert list(cursor.fetchall()) == []


@pytest.mark.engines("sqlite")
def test_sqlite_schema_template_is_cached_and_used(backup_file):
    cache = Path(settings.INSTANCE_DIR) / "cache" / "sqlite-schema"
    for old in cache.glob("*.sqlite3"):
        old.unlink()
    expected = data_digest()
    make_data("b")
    restore_backup(str(backup_file), safety_backup=False)
    connections.close_all()
    assert data_digest() == expected
    templates = list(cache.glob("*.sqlite3"))
    assert len(templates) == 1
    assert cache.stat().st_mode & 0o777 == 0o700
    assert templates[0].stat().st_mode & 0o777 == 0o600
    # The second restore copies the template instead of migrating: same result.
    make_data("c")
    restore_backup(str(backup_file), safety_backup=False)
    connections.close_all()
    assert data_digest() == expected
    assert list(cache.glob("*.sqlite3")) == templates


@pytest.mark.engines("sqlite")
def test_sqlite_schema_template_key_follows_the_migrations(backup_file):
    from django.db.migrations.executor import MigrationExecutor

    from dbtools.engines.sqlite_template import schema_template

    plan = MigrationExecutor(connection).loader.graph.forwards_plan(("servers", "0001_initial"))
    loader = MigrationExecutor(connection).loader
    full = [(loader.graph.nodes[key], False) for key in plan]
    shorter = full[:-1]
    assert schema_template(full) != schema_template(shorter)
    assert schema_template(full) == schema_template(list(full))
    # A plan that goes backwards is never cached.
    assert schema_template([(full[0][0], True)]) is None


@pytest.mark.engines("postgresql")
def test_postgresql_statistics_are_gathered_when_restore_returns(backup_file):
    """pg_restore leaves no column statistics; the restore's ANALYZE (on a thread after the
    swap, joined before it returns) has gathered them for the restored tables."""
    make_data("b")
    restore_backup(str(backup_file), safety_backup=False)
    connections.close_all()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM pg_stats WHERE schemaname = current_schema() AND tablename = 'servers_server'"
        )
        assert cursor.fetchone()[0] > 0
        cursor.execute("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'servers_server'")
        assert cursor.fetchone()[0] is not None


@pytest.mark.engines("postgresql")
def test_every_constraint_a_rule_names_is_one_pg_restore_builds(backup_file):
    """The rules' enforced_by and the catalogue's answer have one shape: on our schema each
    unique and foreign-key rule is matched (else the restore would run it for nothing)."""
    from dbtools.engines import get_engine
    from dbtools.validation.rules import checked_models, data_rules

    engine = get_engine()
    built = engine.constraints_built_by_load()
    named = [(r.table, *r.enforced_by) for r in data_rules(engine, checked_models("default")) if r.enforced_by]
    assert ("servers_server", "unique", ("server_name",), "") in named
    assert ("servers_server", "foreign_key", ("owner_id",), "accounts_user") in named
    assert [n for n in named if n not in built] == []


@pytest.mark.engines("postgresql")
def test_restore_runs_a_rule_whose_constraint_the_backup_lacks(backup_file, monkeypatch):
    """Only a constraint the load built is taken as proof: a backup of a database whose
    unique constraint was dropped (and whose rows then broke it) restores with the rule run
    on the scratch, and its duplicates reported; with the constraint, the rule is not run."""
    from dbtools.validation import rules

    counted = []
    original = rules._duplicate_count
    monkeypatch.setattr(
        rules,
        "_duplicate_count",
        lambda model, engine, keys, *a, **k: (
            counted.extend(str(e) for e in keys.values()) or original(model, engine, keys, *a, **k)
        ),
    )
    result = restore_backup(str(backup_file), safety_backup=False)
    assert result.validation_ok and "F(server_name)" not in counted  # proven by pg_restore's unique index
    assert "F(port)" in counted  # a conditional unique constraint: counted as ever
    connections.close_all()
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "servers_server")
    unique = next(n for n, i in constraints.items() if i["unique"] and i["columns"] == ["server_name"])
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER TABLE servers_server DROP CONSTRAINT "{unique}"')
            cursor.execute("UPDATE servers_server SET server_name = 'a_srv0_0' WHERE server_name = 'a_srv0_1'")
        lacking = Path(create_backup(reason="manual").path)
        counted.clear()
        result = restore_backup(str(lacking), safety_backup=False)
        connections.close_all()
        assert "F(server_name)" in counted
        assert result.validation_ok is False
        found = result.validation["problems"]["constraint_violations"]
        assert [(p["rule"], p["count"]) for p in found] == [("server_name_unique", 2)]
    finally:
        connections.close_all()
        with connection.cursor() as cursor:
            cursor.execute("UPDATE servers_server SET server_name = 'a_srv0_1' WHERE id = (SELECT MAX(id) FROM "
                           "servers_server WHERE server_name = 'a_srv0_0')")  # fmt: skip
            cursor.execute(
                "SELECT 1 FROM pg_constraint WHERE conrelid = 'servers_server'::regclass AND conname = %s", [unique]
            )
            if cursor.fetchone() is None:
                cursor.execute(f'ALTER TABLE servers_server ADD CONSTRAINT "{unique}" UNIQUE (server_name)')
