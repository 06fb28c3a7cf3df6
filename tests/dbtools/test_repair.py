"""validate --fix: each safe repair planted through raw SQL, planned, applied after a backup, logged.

Rows are planted past the constraints and committed (the fix takes a backup, which must
see them): SQLite with foreign keys and CHECKs off, PostgreSQL with its foreign-key
triggers off (session_replication_role), MariaDB with foreign_key_checks and
check_constraint_checks off. Every other row is compared before and after, row by row.
"""

import json
from contextlib import contextmanager
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from accounts.models import User
from dbtools.backups import list_backups, read_manifest
from dbtools.models import OperationLog
from servers.models import Configuration, Server

from .restore_helpers import DATA_TABLES, make_data, table_rows

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def rules_off():
    """Let raw SQL break foreign keys (and CHECKs where the engine has a switch) and commit."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA foreign_keys = OFF")
            cursor.execute("PRAGMA ignore_check_constraints = ON")
        elif connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = replica")
        else:
            cursor.execute("SET SESSION foreign_key_checks = 0")
            cursor.execute("SET SESSION check_constraint_checks = 0")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute("PRAGMA foreign_keys = ON")
                cursor.execute("PRAGMA ignore_check_constraints = OFF")
            elif connection.vendor == "postgresql":
                cursor.execute("SET session_replication_role = DEFAULT")
            else:
                cursor.execute("SET SESSION foreign_key_checks = 1")
                cursor.execute("SET SESSION check_constraint_checks = 1")


def execute(sql: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def rows_by_id() -> dict[tuple[str, str], tuple]:
    return {(table, row[0]): row for table in DATA_TABLES for row in table_rows(table)}


def run_validate(*args) -> tuple[int, dict | str]:
    out = StringIO()
    try:
        call_command("validate", *args, "--json", stdout=out, stderr=StringIO())
        code = 0
    except CommandError as exc:
        code = exc.returncode
        if not out.getvalue():
            return code, str(exc)
    return code, json.loads(out.getvalue())


def plan_for(result: dict, rule: str) -> dict:
    return next(p for p in result["plans"] if p["rule"] == rule)


@pytest.fixture
def planted():
    """A dangling configuration author, two orphaned servers, three live servers on one port."""
    make_data("r", users=3, servers_each=2)
    owner = User.objects.get(username="r_user0")
    config = Configuration.objects.create(key="r.author_gone", value="x", updated_by=owner)
    orphans = [Server.objects.create(server_name=f"orphan{i}", owner=owner, port=26000 + i) for i in range(2)]
    now = timezone.now()
    clash = []
    for i, status in enumerate(["Starting", "Running", "Running"]):
        server = Server.objects.create(server_name=f"clash{i}", owner=owner, port=30000, status=status)
        # clash1 has run longest: its updated_at is the earliest.
        Server.objects.filter(pk=server.pk).update(updated_at=now - timedelta(hours=[2, 5, 1][i]))
        clash.append(server.pk)
    ghost = 999_999
    with rules_off():
        execute("UPDATE servers_configuration SET updated_by_id = %s WHERE id = %s", [ghost, config.pk])
        execute(
            f"UPDATE servers_server SET owner_id = %s WHERE id IN ({', '.join(str(s.pk) for s in orphans)})",
            [ghost],
        )
    return {"config": config.pk, "orphans": sorted(s.pk for s in orphans), "clash": clash}


def test_dry_run_plans_and_changes_nothing(planted):
    before = rows_by_id()
    code, result = run_validate("--fix")
    assert code == 1
    assert not result["applied"]
    assert plan_for(result, "updated_by_id_exists")["sample_ids"] == [planted["config"]]
    assert plan_for(result, "owner_id_exists")["sample_ids"] == planted["orphans"]
    clash = plan_for(result, "active_port_unique")
    assert clash["fixable"] and clash["sample_ids"] == sorted([planted["clash"][0], planted["clash"][2]])
    assert rows_by_id() == before
    assert list_backups() == []
    assert not OperationLog.objects.filter(operation="repair").exists()


def test_fix_yes_repairs_after_a_backup_and_logs_each_fix(planted):
    before = rows_by_id()
    code, result = run_validate("--fix", "--yes")
    assert code == 0, result
    assert result["applied"] and result["after"]["ok"]

    backups = list_backups()
    assert len(backups) == 1 and str(backups[0].path) == result["backup"]
    assert read_manifest(backups[0].path).reason == "pre-fix"

    assert Configuration.objects.get(pk=planted["config"]).updated_by_id is None
    holder = User.objects.get(username="orphaned_servers")
    assert not holder.is_admin and not holder.has_usable_password()
    assert sorted(Server.objects.filter(owner=holder).values_list("pk", flat=True)) == planted["orphans"]
    statuses = dict(Server.objects.filter(pk__in=planted["clash"]).values_list("pk", "status"))
    first, longest, last = planted["clash"]
    assert statuses == {first: "Stopped", longest: "Running", last: "Stopped"}

    changed = {("servers_configuration", str(planted["config"]))}
    changed |= {("servers_server", str(pk)) for pk in planted["orphans"] + [first, last]}
    after = rows_by_id()
    assert {k: v for k, v in after.items() if k not in changed and k != ("accounts_user", str(holder.pk))} == {
        k: v for k, v in before.items() if k not in changed
    }, "nothing else changed"

    entries = {e.details["rule"]: e for e in OperationLog.objects.filter(operation="repair")}
    assert set(entries) == {"updated_by_id_exists", "owner_id_exists", "active_port_unique"}
    assert entries["owner_id_exists"].details["changed_ids"] == planted["orphans"]
    assert entries["active_port_unique"].details["changed_ids"] == sorted([first, last])
    assert all(e.details["digest_before"] != e.details["digest_after"] for e in entries.values())
    assert all(e.details["pre_fix_backup"] == result["backup"] for e in entries.values())

    code, again = run_validate()
    assert code == 0 and again["ok"]


def test_no_holding_account_reports_orphans_only(planted, settings):
    settings.MCMANAGER_ORPHAN_OWNER = ""
    code, result = run_validate("--fix", "--yes")
    assert code == 1
    orphans = plan_for(result, "owner_id_exists")
    assert not orphans["fixable"] and "MCMANAGER_ORPHAN_OWNER" in orphans["action"]
    assert Server.objects.filter(pk__in=planted["orphans"], owner_id=999_999).count() == 2
    assert Configuration.objects.get(pk=planted["config"]).updated_by_id is None, "the other fixes still ran"


def test_an_admin_as_holding_account_is_refused_and_nothing_changes(planted, settings):
    User.objects.create_superuser("boss", password="pw-123456")
    settings.MCMANAGER_ORPHAN_OWNER = "boss"
    before = rows_by_id()
    code, message = run_validate("--fix", "--yes")
    assert code == 1 and "admin" in message
    assert rows_by_id() == before, "one transaction: no fix is half done"


@pytest.mark.engines("sqlite", "postgresql")
def test_users_equal_but_for_case_are_reported_never_merged():
    make_data("c", users=1)
    steve = User.objects.create_user("Steve")
    twin = User(username="steve")
    twin.set_unusable_password()
    twin.save()
    code, result = run_validate("--fix", "--yes")
    assert code == 1
    plan = plan_for(result, "username_unique_ignoring_case")
    assert not plan["fixable"] and not result["applied"]
    assert any(f"id {steve.pk} (Steve)" in line and f"id {twin.pk} (steve)" in line for line in plan["manual"])
    assert User.objects.filter(pk__in=[steve.pk, twin.pk]).count() == 2
    assert list_backups() == [], "nothing to fix: no backup taken"


@pytest.mark.engines("sqlite", "mysql")
def test_rows_breaking_a_check_are_listed_with_the_sql_to_fix_them():
    make_data("k", users=1)
    server = Server.objects.get(server_name="k_srv0_0")
    with rules_off():
        execute("UPDATE servers_server SET memory_mb = 100 WHERE id = %s", [server.pk])
    code, result = run_validate("--fix", "--yes")
    assert code == 1
    plan = plan_for(result, "server_memory_range")
    assert not plan["fixable"]
    assert any("UPDATE" in line and "memory_mb" in line and f"id = {server.pk}" in line for line in plan["manual"])
    assert f"/admin/servers/server/{server.pk}/change/" in plan["manual"]
    assert Server.objects.get(pk=server.pk).memory_mb == 100


def test_yes_without_fix_is_bad_usage():
    code, message = run_validate("--yes")
    assert code == 2 and "--fix" in message


def test_clean_database_needs_no_fix_and_no_backup():
    make_data("ok")
    code, result = run_validate("--fix", "--yes")
    assert code == 0 and result["plans"] == [] and not result["applied"]
    assert list_backups() == []
