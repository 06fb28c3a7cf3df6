"""``validate`` finds what reached the database around its constraints, on every engine.

Bad rows are planted with raw SQL past the constraints (SQLite: ignore_check_constraints
and deferred foreign keys; PostgreSQL: deferred foreign keys and a constraint dropped
inside the test's transaction; MariaDB: foreign_key_checks and check_constraint_checks
off), then each problem must be reported with its count and sample ids.
"""

import json
import os
import sqlite3
from contextlib import contextmanager
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections, models, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from dbtools.api import DatabaseValidator
from dbtools.engines import get_engine
from dbtools.models import OperationLog, StoredReport
from dbtools.validation import DATA_CATEGORIES, SCHEMA_CATEGORIES, run_validation, runner, validate_database
from servers.models import Configuration, Server


@pytest.fixture
def planted(db):
    """The test plants bad rows; its transaction is rolled back without Django's
    end-of-test constraint check (which would rightly refuse them)."""
    yield
    transaction.set_rollback(True)


@contextmanager
def constraints_off(*checks: tuple[str, str]):
    """Let raw SQL break CHECK constraints and foreign keys for the rest of the test.

    ``checks`` names (table, constraint) pairs PostgreSQL must drop: it has no switch for
    CHECKs. The drop happens inside the test's transaction and is rolled back with it.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA ignore_check_constraints = ON")
        elif connection.vendor == "postgresql":
            # ALTER TABLE refuses while deferred foreign-key checks are pending.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            for table, name in checks:
                cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        else:
            cursor.execute("SET SESSION foreign_key_checks = 0")
            cursor.execute("SET SESSION check_constraint_checks = 0")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute("PRAGMA ignore_check_constraints = OFF")
            elif connection.vendor == "mysql":
                cursor.execute("SET SESSION foreign_key_checks = 1")
                cursor.execute("SET SESSION check_constraint_checks = 1")


def execute(sql: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def make_user(name: str, **extra) -> User:
    return User.objects.create_user(name, **extra)


def make_server(name: str, owner: User, **extra) -> Server:
    return Server.objects.create(server_name=name, owner=owner, **extra)


def server_name_unique_index() -> str:
    """The name of the unique index (or constraint) on servers_server.server_name."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "servers_server")
    return next(
        name
        for name, info in constraints.items()
        if info["unique"] and info["columns"] == ["server_name"] and not info["primary_key"]
    )


def find(report, category: str, rule: str):
    matches = [p for p in report.problems if p.category == category and p.rule == rule]
    assert len(matches) == 1, f"expected one {category}/{rule}, got {[(p.category, p.rule) for p in report.problems]}"
    return matches[0]


def test_clean_database_is_clean(db):
    alice = make_user("alice", email="alice@example.org")
    make_server("alpha", alice, status="Running", port=25565)
    make_server("beta", alice, status="Stopped", port=25565)  # stopped servers may share a port
    Configuration.objects.create(key="panel.name", value="x", updated_by=alice)
    report = run_validation()
    assert report.ok, [p.as_dict() for p in report.problems]
    assert report.rules_run > 20
    as_dict = report.as_dict()
    assert set(as_dict["problems"]) == set(DATA_CATEGORIES + SCHEMA_CATEGORIES)
    assert all(v == [] for v in as_dict["problems"].values())


def test_orphaned_servers_and_dangling_configuration(planted):
    alice = make_user("alice")
    servers = [make_server(f"srv{i}", alice) for i in range(12)]
    config = Configuration.objects.create(key="panel.name", value="x", updated_by=alice)
    ghost = alice.pk + 1000
    with constraints_off():
        ids = [s.pk for s in servers]
        execute(f"UPDATE servers_server SET owner_id = %s WHERE id IN ({', '.join(map(str, ids))})", [ghost])
        execute("UPDATE servers_configuration SET updated_by_id = %s WHERE id = %s", [ghost, config.pk])
    report = run_validation(schema=False)
    orphans = find(report, "orphaned_records", "owner_id_exists")
    assert orphans.table == "servers_server"
    assert orphans.count == 12
    assert orphans.sample_ids == sorted(ids)[:10]
    dangling = find(report, "foreign_key_violations", "updated_by_id_exists")
    assert (dangling.table, dangling.count, dangling.sample_ids) == ("servers_configuration", 1, [config.pk])
    assert "NULL" in dangling.fix


def test_check_constraints_come_from_the_models(planted):
    alice = make_user("alice")
    low = make_server("low", alice)
    high = make_server("high", alice)
    lower_case = make_server("lowercase", alice)
    conf = Configuration.objects.create(key="k", value="v")
    with constraints_off(
        ("servers_server", "server_port_range"),
        ("servers_server", "server_status_valid"),
        ("servers_configuration", "configuration_value_not_empty"),
    ):
        execute("UPDATE servers_server SET port = 80 WHERE id IN (%s, %s)", [low.pk, high.pk])
        # 'running' is not 'Running': comparisons are exact on every engine.
        execute("UPDATE servers_server SET status = 'running' WHERE id = %s", [lower_case.pk])
        execute("UPDATE servers_configuration SET value = '' WHERE id = %s", [conf.pk])
    report = run_validation(schema=False)
    port = find(report, "constraint_violations", "server_port_range")
    assert (port.table, port.count, port.sample_ids) == ("servers_server", 2, sorted([low.pk, high.pk]))
    status = find(report, "constraint_violations", "server_status_valid")
    assert (status.count, status.sample_ids) == (1, [lower_case.pk])
    value = find(report, "constraint_violations", "configuration_value_not_empty")
    assert (value.table, value.count, value.sample_ids) == ("servers_configuration", 1, [conf.pk])
    assert "1024 and 65535" in port.message


def test_a_new_model_constraint_is_validated_without_new_code(db, monkeypatch):
    alice = make_user("alice")
    big = make_server("big", alice, max_players=500)
    make_server("small", alice, max_players=50)
    extra = models.CheckConstraint(condition=Q(max_players__lte=100), name="server_at_most_100_players")
    monkeypatch.setattr(Server._meta, "constraints", [*Server._meta.constraints, extra])
    report = run_validation(schema=False)
    problem = find(report, "constraint_violations", "server_at_most_100_players")
    assert (problem.count, problem.sample_ids) == (1, [big.pk])


def test_null_passes_a_check_as_in_sql(db):
    # email IS NULL satisfies user_email_valid; exclude() would have counted it.
    make_user("nomail")
    report = run_validation(schema=False)
    assert report.ok, [p.as_dict() for p in report.problems]


def test_running_servers_on_one_port(db):
    alice = make_user("alice")
    a = make_server("a-srv", alice, status="Running", port=25570)
    b = make_server("b-srv", alice, status="Starting", port=25570)
    make_server("c-srv", alice, status="Stopped", port=25570)
    make_server("d-srv", alice, status="Running", port=25571)
    report = run_validation(schema=False)
    problem = find(report, "data_inconsistencies", "active_port_unique")
    assert (problem.table, problem.count, problem.sample_ids) == ("servers_server", 2, sorted([a.pk, b.pk]))


def test_timestamps_in_the_future(db):
    alice = make_user("alice")
    srv = make_server("srv", alice)
    future = timezone.now() + timedelta(days=3)
    Server.objects.filter(pk=srv.pk).update(created_at=future)
    User.objects.filter(pk=alice.pk).update(date_joined=future)
    report = run_validation(schema=False)
    assert find(report, "data_inconsistencies", "created_at_not_in_future").sample_ids == [srv.pk]
    assert find(report, "data_inconsistencies", "date_joined_not_in_future").sample_ids == [alice.pk]


@pytest.mark.engines("sqlite", "postgresql")
def test_names_equal_ignoring_case(planted):
    # MariaDB's collation already refuses these; elsewhere only the ci index on email does.
    a = make_user("Steve", email="steve@example.org")
    b = make_user("steve")
    c = make_user("other")
    execute("DROP INDEX user_email_ci_unique")
    execute("UPDATE accounts_user SET email = 'STEVE@example.org' WHERE id = %s", [c.pk])
    report = run_validation()
    names = find(report, "data_inconsistencies", "username_unique_ignoring_case")
    assert (names.count, names.sample_ids) == (2, sorted([a.pk, b.pk]))
    emails = find(report, "constraint_violations", "user_email_ci_unique")
    assert (emails.count, emails.sample_ids) == (2, sorted([a.pk, c.pk]))
    # The dropped index is a schema finding too.
    assert find(report, "missing_constraints", "constraints_exist").sample_ids == ["user_email_ci_unique"]


@pytest.mark.engines("postgresql")
def test_duplicate_unique_field(planted):
    # Only PostgreSQL can drop the unique index inside the test's transaction.
    alice = make_user("alice")
    one = make_server("one", alice)
    two = make_server("two", alice)
    unique_name = server_name_unique_index()
    execute("SET CONSTRAINTS ALL IMMEDIATE")
    execute(f'ALTER TABLE servers_server DROP CONSTRAINT "{unique_name}"')
    execute("UPDATE servers_server SET server_name = 'one' WHERE id = %s", [two.pk])
    report = run_validation(schema=False)
    problem = find(report, "constraint_violations", "server_name_unique")
    assert (problem.count, problem.sample_ids) == (2, [one.pk, two.pk])
    # Counted with hash aggregation off (grouping_in_key_order), for that query only.
    with connection.cursor() as cursor:
        cursor.execute("SHOW enable_hashagg")
        assert cursor.fetchone()[0] == "on"


@pytest.mark.engines("postgresql")
@pytest.mark.django_db(transaction=True)
def test_duplicate_count_groups_in_key_order_on_its_own_connections():
    """Outside a transaction (validate, restore: a connection per worker) the count runs in a
    transaction of its own whose SET LOCAL ends with it; it groups in key order, not by hashing."""
    from dbtools.engines import get_engine

    engine = get_engine()
    alice = make_user("alice")
    make_server("one", alice)
    make_server("two", alice)
    query = "EXPLAIN SELECT server_name, COUNT(*) FROM servers_server GROUP BY server_name HAVING COUNT(*) > 1"
    with connection.cursor() as cursor:
        cursor.execute(query)
        assert "HashAggregate" in "\n".join(row[0] for row in cursor.fetchall())  # as the planner likes it
    with engine.grouping_in_key_order(), connection.cursor() as cursor:
        cursor.execute(query)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "HashAggregate" not in plan and "GroupAggregate" in plan, plan
    assert not connection.in_atomic_block
    with connection.cursor() as cursor:
        cursor.execute("SHOW enable_hashagg")
        assert cursor.fetchone()[0] == "on"
    report = run_validation(schema=False, workers=2)
    assert not [p for p in report.problems if p.rule == "server_name_unique"]


def test_schema_clean_and_migrations(planted):
    assert run_validation(data=False).ok
    execute("DELETE FROM django_migrations WHERE app = %s", ["dbtools"])
    execute(
        "INSERT INTO django_migrations (app, name, applied) VALUES (%s, %s, %s)",
        ["servers", "9999_from_the_future", timezone.now()],
    )
    report = run_validation(data=False)
    unapplied = find(report, "unapplied_migrations", "all_migrations_applied")
    assert "dbtools.0001_initial" in unapplied.sample_ids
    unknown = find(report, "unknown_migrations", "no_unknown_migrations")
    assert unknown.sample_ids == ["servers.9999_from_the_future"]
    assert {p.category for p in report.problems} == {"unapplied_migrations", "unknown_migrations"}


@pytest.mark.engines("sqlite", "postgresql")
def test_missing_table_and_column(planted):
    # DDL inside the test's transaction: rolled back on SQLite and PostgreSQL (not MariaDB).
    execute("ALTER TABLE servers_server DROP COLUMN motd")
    execute("DROP TABLE django_admin_log")
    report = run_validation()
    assert find(report, "missing_tables", "table_exists").table == "django_admin_log"
    columns = find(report, "missing_columns", "columns_exist")
    assert (columns.table, columns.sample_ids) == ("servers_server", ["motd"])
    # The data rules skip a table that is not whole instead of failing on it.
    assert not any(p.table == "servers_server" and p.category in DATA_CATEGORIES for p in report.problems)


@pytest.mark.engines("sqlite", "postgresql")
def test_missing_index(planted):
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'servers_server' "
                "AND sql LIKE '%(\"port\")%'"
            )
            port_index = cursor.fetchone()[0]
    else:
        with connection.cursor() as cursor:
            constraints = connection.introspection.get_constraints(cursor, "servers_server")
        port_index = next(n for n, i in constraints.items() if i["index"] and i["columns"] == ["port"])
    execute(f'DROP INDEX "{port_index}"')
    report = run_validation(data=False)
    problem = find(report, "missing_indexes", "indexes_exist")
    assert (problem.table, problem.sample_ids) == ("servers_server", ["port"])


@pytest.mark.engines("sqlite")
def test_sqlite_integrity_pragmas_run(planted):
    # A table Django does not know, with a broken foreign key: only foreign_key_check sees it.
    execute(
        'CREATE TABLE legacy_note (id integer PRIMARY KEY, user_id integer REFERENCES "accounts_user" ("id") DEFERRABLE INITIALLY DEFERRED)'
    )
    execute("INSERT INTO legacy_note (id, user_id) VALUES (1, 424242)")
    report = run_validation(data=False)
    problem = find(report, "schema_inconsistencies", "sqlite_foreign_key_check")
    assert (problem.table, problem.count) == ("legacy_note", 1)


@pytest.mark.engines("postgresql")
def test_postgresql_invalid_index(planted):
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "servers_server")
        port_index = next(n for n, i in constraints.items() if i["index"] and i["columns"] == ["port"])
        cursor.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass", [port_index])
    report = run_validation(data=False)
    problem = find(report, "schema_inconsistencies", "postgresql_invalid_index")
    assert (problem.table, problem.sample_ids) == ("servers_server", [port_index])


def test_validate_database_stores_and_logs(db):
    alice = make_user("alice")
    make_server("a-srv", alice, status="Running", port=25570)
    make_server("b-srv", alice, status="Running", port=25570)
    report = validate_database(actor="tester")
    assert not report.ok
    stored = StoredReport.objects.get(kind="validation")
    assert stored.ok is False and stored.problem_count == 1
    assert stored.report["problems"]["data_inconsistencies"][0]["rule"] == "active_port_unique"
    entry = OperationLog.objects.get(operation="validate")
    assert (entry.actor, entry.outcome) == ("tester", "failure")
    validate_database(data=False)
    # A partial run never passes for a full one.
    assert StoredReport.objects.filter(kind="validation").count() == 1
    assert StoredReport.objects.filter(kind="validation:schema").count() == 1


# --- the command ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_command_exit_codes(manage_py):
    done = manage_py("validate")
    assert done.returncode == 0, done.stderr
    assert "No problems found" in done.stdout

    alice = make_user("alice")
    a = make_server("a-srv", alice, status="Running", port=25570)
    b = make_server("b-srv", alice, status="Running", port=25570)
    done = manage_py("validate", "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is False
    (problem,) = report["problems"]["data_inconsistencies"]
    assert problem["sample_ids"] == sorted([a.pk, b.pk])
    assert "found 1 problem (2 rows or items)" in done.stderr and "Traceback" not in done.stderr

    done = manage_py("validate", "--schema-only")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.django_db(transaction=True)
def test_command_cannot_run(manage_py):
    url = {
        "sqlite": "postgres://nobody:s3cret-pw@127.0.0.1:1/nothing",
        "postgresql": "postgres://nobody:s3cret-pw@127.0.0.1:1/nothing",
        "mysql": "mysql://nobody:s3cret-pw@127.0.0.1:1/nothing",
    }[connection.vendor]
    done = manage_py("validate", env={"DATABASE_URL": url})
    assert done.returncode == 2
    assert "cannot reach" in done.stderr
    assert "s3cret-pw" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.engines("sqlite")
def test_sqlite_deep_runs_integrity_check(db, monkeypatch):
    ran = []
    engine_class = type(get_engine())
    real = engine_class.integrity_problems

    def spy(self, covered, deep=False, **options):
        ran.append(deep)
        return real(self, covered, deep=deep, **options)

    monkeypatch.setattr(engine_class, "integrity_problems", spy)
    assert run_validation(data=False).ok
    assert run_validation(data=False, deep=True).ok
    assert ran == [False, True]


@pytest.mark.django_db(transaction=True)
@pytest.mark.engines("sqlite")
def test_sqlite_damaged_index_is_found(manage_py, tmp_path):
    """An index that no longer matches its table: quick_check misses it, integrity_check (--deep) finds it."""
    alice = make_user("alice")
    for i in range(5):
        make_server(f"srv{i}", alice, port=30000 + i)
    copy = tmp_path / "damaged.sqlite3"
    # The backup API copies what is committed, WAL included; the test database stays untouched.
    source = sqlite3.connect(connection.settings_dict["NAME"])
    raw = sqlite3.connect(copy)
    source.backup(raw)
    source.close()
    # Make the port index claim to index memory_mb: its entries no longer match the rows.
    (index,) = raw.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'servers_server' AND sql LIKE '%(\"port\")%'"
    ).fetchone()
    raw.execute("PRAGMA writable_schema = ON")
    raw.execute("UPDATE sqlite_master SET sql = replace(sql, '(\"port\")', '(\"memory_mb\")') WHERE name = ?", [index])
    raw.commit()
    raw.close()
    done = manage_py("validate", "--schema-only", "--json", env={"DATABASE_URL": f"sqlite:///{copy}"})
    # The port index looks gone (it says memory_mb); quick_check does not compare index entries.
    assert done.returncode == 1, done.stderr
    problems = json.loads(done.stdout)["problems"]
    assert [p["rule"] for p in problems["missing_indexes"]] == ["indexes_exist"]
    assert problems["schema_inconsistencies"] == []
    done = manage_py("validate", "--schema-only", "--deep", "--json", env={"DATABASE_URL": f"sqlite:///{copy}"})
    assert done.returncode == 1, done.stderr
    problems = json.loads(done.stdout)["problems"]["schema_inconsistencies"]
    assert [p["rule"] for p in problems] == ["sqlite_integrity_check"]
    assert any(index in line for line in problems[0]["sample_ids"])


@pytest.mark.django_db(transaction=True)
@pytest.mark.engines("mysql")
def test_mariadb_missing_index_and_check(manage_py):
    # MariaDB commits DDL at once, so the test puts back what it drops.
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "servers_server")
    port_index = next(n for n, i in constraints.items() if i["index"] and i["columns"] == ["port"])
    execute(f"DROP INDEX `{port_index}` ON servers_server")
    execute("ALTER TABLE servers_server DROP CONSTRAINT server_port_range")
    try:
        report = run_validation(data=False)
        assert find(report, "missing_indexes", "indexes_exist").sample_ids == ["port"]
        assert find(report, "missing_constraints", "constraints_exist").sample_ids == ["server_port_range"]
    finally:
        execute(f"CREATE INDEX `{port_index}` ON servers_server (port)")
        execute("ALTER TABLE servers_server ADD CONSTRAINT server_port_range CHECK (port >= 1024 AND port <= 65535)")
    assert run_validation(data=False).ok


def test_seed_validator_names(planted):
    alice = make_user("alice")
    srv = make_server("srv", alice)
    with constraints_off():
        execute("UPDATE servers_server SET owner_id = %s WHERE id = %s", [alice.pk + 500, srv.pk])
    data = DatabaseValidator().validate_data_integrity()
    assert set(data) == {"foreign_key_violations", "constraint_violations", "data_inconsistencies", "orphaned_records"}
    assert [p["sample_ids"] for p in data["orphaned_records"]] == [[srv.pk]]
    schema = DatabaseValidator().validate_schema()
    assert {"missing_tables", "missing_columns", "schema_inconsistencies", "unapplied_migrations"} <= set(schema)
    assert all(v == [] for v in schema.values())


def test_unknown_alias_cannot_run(db):
    with pytest.raises(CommandError) as caught:
        call_command("validate", "--database", "nope", stdout=StringIO())
    assert caught.value.returncode == 2
    assert "no database 'nope'" in str(caught.value)


@pytest.mark.django_db(transaction=True)
@pytest.mark.engines("mysql")
def test_mariadb_duplicate_unique_field():
    # MariaDB commits DDL at once: the unique index is put back before the test ends.
    alice = make_user("alice")
    one = make_server("one", alice)
    two = make_server("two", alice)
    unique_name = server_name_unique_index()
    execute(f"ALTER TABLE servers_server DROP INDEX `{unique_name}`")
    try:
        execute("UPDATE servers_server SET server_name = 'one' WHERE id = %s", [two.pk])
        report = run_validation()
        problem = find(report, "constraint_violations", "server_name_unique")
        assert (problem.count, problem.sample_ids) == (2, [one.pk, two.pk])
        assert "server_name" in find(report, "missing_indexes", "indexes_exist").sample_ids
    finally:
        execute("UPDATE servers_server SET server_name = 'two' WHERE id = %s", [two.pk])
        execute(f"ALTER TABLE servers_server ADD CONSTRAINT `{unique_name}` UNIQUE (server_name)")
    assert run_validation().ok


def _signature(report):
    return sorted((p.category, p.table, p.rule, p.count, tuple(p.sample_ids)) for p in report.problems)


@pytest.mark.django_db(transaction=True)
def test_parallel_run_finds_what_the_serial_run_finds(monkeypatch):
    """Committed bad rows: two workers (a table's scan split in two by primary key) report
    exactly what one worker reports, counts added up across the halves."""
    alice = make_user("alice")
    servers = [make_server(f"srv{i}", alice, port=30000 + i) for i in range(40)]
    first, last = servers[0].pk, servers[-1].pk
    # Rules no constraint enforces, so nothing needs switching off: a server created in the
    # future in each half of the id range, and two running servers on one port.
    future = timezone.now() + timedelta(days=3)
    Server.objects.filter(pk__in=[first, last]).update(created_at=future)
    Server.objects.filter(pk__in=[servers[5].pk, servers[6].pk]).update(status="Running", port=31000)
    monkeypatch.setattr(runner, "SPLIT_SCAN_ROWS", 10)
    assert len(runner._pk_slices(Server, get_engine("default"), 2)) == 2
    try:
        serial = run_validation(workers=1)
        parallel = run_validation(workers=2)
        future_rows = find(parallel, "data_inconsistencies", "created_at_not_in_future")
        assert (future_rows.count, future_rows.sample_ids) == (2, [first, last])
        find(parallel, "data_inconsistencies", "active_port_unique")
        assert _signature(parallel) == _signature(serial)
    finally:
        Server.objects.all().delete()


@pytest.mark.django_db(transaction=True)
@pytest.mark.engines("sqlite")
def test_sqlite_validation_reads_without_taking_the_write_lock():
    """Another connection holds SQLite's write lock (a panel request mid-write): validate
    still runs at once. A read wrapped in Django's BEGIN IMMEDIATE would wait for the
    busy timeout and fail with 'database is locked'."""
    make_user("alice")
    writer = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None, timeout=0)
    writer.execute("BEGIN IMMEDIATE")
    try:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA busy_timeout = 100")
        assert run_validation(workers=1).ok
        assert run_validation(workers=2).ok
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        connection.close()


@pytest.mark.engines("sqlite", "postgresql")
def test_column_checks_are_rules_too(planted):
    """A Positive*Field's own CHECK (no model constraint names it) is a rule with ids."""
    report_row = StoredReport.objects.create(kind="validation", created_at=timezone.now(), ok=True)
    with constraints_off(("dbtools_storedreport", "dbtools_storedreport_problem_count_check")):
        execute("UPDATE dbtools_storedreport SET problem_count = -3 WHERE id = %s", [report_row.pk])
    report = run_validation(schema=False)
    problem = find(report, "constraint_violations", "problem_count_check")
    assert (problem.table, problem.count, problem.sample_ids) == ("dbtools_storedreport", 1, [report_row.pk])


@pytest.mark.django_db(transaction=True)
@pytest.mark.engines("sqlite")
def test_sqlite_file_check_skips_only_the_checks_the_rules_evaluate():
    """The data rules evaluate the model tables' CHECKs, so quick_check skips those; a
    CHECK no rule knows (a table Django does not know) is still evaluated by the engine."""
    alice = make_user("alice")
    server = make_server("srv", alice)
    execute('CREATE TABLE legacy_limits (id integer PRIMARY KEY, "max" integer CHECK ("max" > 0))')
    try:
        with transaction.atomic(), constraints_off():
            execute("INSERT INTO legacy_limits (id, max) VALUES (1, -1)")
            execute("UPDATE servers_server SET memory_mb = 1 WHERE id = %s", [server.pk])
        report = run_validation()
        memory = find(report, "constraint_violations", "server_memory_range")
        assert memory.sample_ids == [server.pk]
        damage = find(report, "schema_inconsistencies", "sqlite_quick_check")
        assert damage.sample_ids == ["CHECK constraint failed in legacy_limits"]
        # With --schema-only no rule evaluates the model tables' CHECKs: the engine does.
        report = run_validation(data=False)
        damage = find(report, "schema_inconsistencies", "sqlite_quick_check")
        assert sorted(damage.sample_ids) == [
            "CHECK constraint failed in legacy_limits",
            "CHECK constraint failed in servers_server",
        ]
    finally:
        execute("DROP TABLE legacy_limits")
        Server.objects.all().delete()


# Each engine's way of making a trigger that would make every user an admin, a view,
# and (where the engine has them) a routine: (create statements, drop statements).
FOREIGN_OBJECTS = {
    "sqlite": (
        [
            "CREATE TRIGGER evil_admin AFTER INSERT ON dbtools_operationlog "
            "BEGIN UPDATE accounts_user SET is_admin = 1; END",
            "CREATE VIEW evil_view AS SELECT id FROM accounts_user",
        ],
        ["DROP TRIGGER IF EXISTS evil_admin", "DROP VIEW IF EXISTS evil_view"],
    ),
    "postgresql": (
        [
            "CREATE FUNCTION evil_fn() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN UPDATE accounts_user SET is_admin = true; RETURN NEW; END $$",
            "CREATE TRIGGER evil_admin AFTER INSERT ON dbtools_operationlog FOR EACH ROW EXECUTE FUNCTION evil_fn()",
            "CREATE VIEW evil_view AS SELECT id FROM accounts_user",
        ],
        [
            "DROP TRIGGER IF EXISTS evil_admin ON dbtools_operationlog",
            "DROP FUNCTION IF EXISTS evil_fn()",
            "DROP VIEW IF EXISTS evil_view",
        ],
    ),
    "mysql": (
        [
            "CREATE TRIGGER evil_admin AFTER INSERT ON dbtools_operationlog "
            "FOR EACH ROW UPDATE accounts_user SET is_admin = 1",
            "CREATE VIEW evil_view AS SELECT id FROM accounts_user",
            "CREATE PROCEDURE evil_proc() SELECT 1",
        ],
        ["DROP TRIGGER IF EXISTS evil_admin", "DROP VIEW IF EXISTS evil_view", "DROP PROCEDURE IF EXISTS evil_proc"],
    ),
}


@pytest.mark.django_db(transaction=True)
def test_triggers_views_and_routines_the_migrations_did_not_create_are_reported(vendor):
    assert not [p for p in run_validation(data=False).problems if p.rule == "foreign_schema_object"]
    create, drop = FOREIGN_OBJECTS[vendor]
    try:
        for statement in create:
            execute(statement)
        report = run_validation(data=False)
        found = {p.sample_ids[0]: p for p in report.problems if p.rule == "foreign_schema_object"}
        expected = {"evil_admin", "evil_view"} | {"postgresql": {"evil_fn"}, "mysql": {"evil_proc"}}.get(vendor, set())
        assert set(found) == expected
        trigger = found["evil_admin"]
        assert trigger.category == "schema_inconsistencies"
        assert trigger.table == "dbtools_operationlog"
        assert trigger.message.startswith(
            "trigger evil_admin on dbtools_operationlog was not created by mcmanager's migrations"
        )
        assert trigger.fix.startswith("DROP TRIGGER ") and "after checking who created it" in trigger.fix
        assert found["evil_view"].fix.startswith("DROP VIEW ")
        if vendor == "postgresql":
            assert found["evil_fn"].fix.startswith("DROP FUNCTION evil_fn()")
        # The command says so and exits 1.
        with pytest.raises(CommandError) as exc:
            call_command("validate", "--schema-only", stdout=StringIO(), stderr=StringIO())
        assert exc.value.returncode == 1
        # Each fix, run as written, removes what it names (a trigger before its function).
        for problem in sorted(found.values(), key=lambda p: not p.fix.startswith("DROP TRIGGER")):
            execute(problem.fix.split(" after checking")[0])
        assert not [p for p in run_validation(data=False).problems if p.rule == "foreign_schema_object"]
    finally:
        for statement in drop:
            execute(statement)


@pytest.mark.django_db(transaction=True)
def test_runs_side_by_side_where_other_connections_see_the_database():
    """A file or a server is seen by every connection: one worker per core, up to four."""
    engine = get_engine()
    assert engine.shared_between_connections()
    assert runner._worker_count(engine, None) == max(1, min(runner.MAX_WORKERS, os.cpu_count() or 1))


@pytest.mark.django_db(transaction=True)
@pytest.mark.engines("sqlite")
def test_sqlite_in_memory_database_runs_on_one_connection():
    """SQLite's in-memory database is private to its connection: one worker, and it still validates."""
    base = connections["default"]
    memory = base.__class__(dict(base.settings_dict, NAME=":memory:"), alias="in_memory")
    connections["in_memory"] = memory
    try:
        engine = get_engine("in_memory")
        assert not engine.shared_between_connections()
        assert runner._worker_count(engine, None) == 1
        report = run_validation("in_memory")
        assert {p.category for p in report.problems} == {"missing_tables", "unapplied_migrations"}
    finally:
        del connections["in_memory"]
        memory.close()
