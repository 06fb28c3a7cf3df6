"""The demo data generator (dbtools.demo): exact counts, every rule respected, reproducible by seed."""

import datetime as dt
import json
import random
import sqlite3

import pytest
from django.db import transaction
from django.db.models import CheckConstraint, Count, F, Q
from django.db.models.functions import Lower
from django.utils import timezone

from accounts.models import User
from dbtools.demo.clock import Clock
from dbtools.demo.generator import generate
from dbtools.demo.result import GenerationError
from dbtools.demo.spec import SERVER_FIELDS, batches
from dbtools.demo.writer import BulkWriter
from dbtools.engines.sqlite_demo import LEHMER_MODULUS, LEHMER_MULTIPLIER, _lehmer_at, _lehmer_sql
from servers.models import Configuration, Server

NOW = dt.datetime(2026, 6, 1, 12, 30, tzinfo=dt.UTC)


def snapshot() -> dict[str, list[tuple]]:
    """Every generated row, all columns, in id order."""
    return {model.__name__: list(model.objects.order_by("id").values_list()) for model in (User, Server, Configuration)}


def duplicates(queryset, expression) -> int:
    return queryset.annotate(k=expression).values("k").annotate(n=Count("id")).filter(n__gt=1).count()


def check_violations(model) -> dict[str, int]:
    """Rows breaking each of the model's CHECK constraints, counted by the database."""
    return {
        c.name: model.objects.exclude(c.condition).count()
        for c in model._meta.constraints
        if isinstance(c, CheckConstraint)
    }


@pytest.mark.django_db
def test_counts_are_exact_and_every_rule_holds():
    result = generate(users=300, servers=3000, configs=60, seed=1, now=NOW)

    assert (result.users, result.servers, result.configs) == (300, 3000, 60)
    assert User.objects.count() == 300
    assert Server.objects.count() == 3000
    assert Configuration.objects.count() == 60

    # The models' own rules, counted in SQL over every row.
    for model in (User, Server, Configuration):
        assert set(check_violations(model).values()) == {0}, model
    # The rules validate checks beyond the constraints.
    active = Server.objects.filter(status__in=["Running", "Starting"])
    assert active.count() == result.active_servers > 0
    assert duplicates(active, F("port")) == 0
    assert duplicates(User.objects.all(), Lower("username")) == 0
    assert duplicates(User.objects.exclude(email=None), Lower("email")) == 0
    assert User.objects.filter(email="").count() == 0
    assert User.objects.filter(email=None).count() > 0
    assert User.objects.filter(date_joined__gt=NOW).count() == 0
    assert User.objects.filter(last_login__gt=NOW).count() == 0
    assert User.objects.filter(last_login__lt=F("date_joined")).count() == 0
    assert Server.objects.filter(Q(created_at__gt=NOW) | Q(updated_at__gt=NOW)).count() == 0
    assert Server.objects.filter(updated_at__lt=F("created_at")).count() == 0
    assert Server.objects.filter(created_at__lt=F("owner__date_joined")).count() == 0
    assert Configuration.objects.filter(updated_at__gt=NOW).count() == 0
    assert Server.objects.exclude(owner__in=User.objects.all()).count() == 0
    assert Configuration.objects.exclude(updated_by=None).exclude(updated_by__in=User.objects.all()).count() == 0

    # Realistic variety: statuses, ports, memory sizes, owners.
    assert set(Server.objects.values_list("status", flat=True).distinct()) == {
        "Running",
        "Stopped",
        "Starting",
        "Stopping",
    }
    assert Server.objects.values("port").distinct().count() > 500
    assert Server.objects.values("memory_mb").distinct().count() >= 8
    assert Server.objects.values("owner").distinct().count() > 100
    assert Server.objects.filter(status="Stopped", port=25565).count() > 1  # stopped ones may share

    # Django's validation agrees on a sample of each table.
    for model in (User, Server, Configuration):
        for obj in model.objects.order_by("?")[:40]:
            obj.full_clean()


@pytest.mark.django_db
def test_same_seed_gives_the_same_data_and_another_seed_does_not():
    generate(users=50, servers=400, configs=20, seed=7, now=NOW)
    first = snapshot()
    for model in (Server, Configuration, User):
        model.objects.all().delete()

    generate(users=50, servers=400, configs=20, seed=7, now=NOW)
    assert snapshot() == first

    for model in (Server, Configuration, User):
        model.objects.all().delete()
    generate(users=50, servers=400, configs=20, seed=8, now=NOW)
    other = snapshot()
    for table in ("User", "Server", "Configuration"):
        assert other[table] != first[table]
        assert len(other[table]) == len(first[table])


@pytest.mark.django_db
def test_a_second_run_adds_to_the_first_without_breaking_a_rule():
    admin = User.objects.create_superuser("operator", "ops@example.com", "a-long-password-9")
    first = generate(users=40, servers=300, configs=10, seed=3)
    second = generate(users=40, servers=300, configs=10, seed=3)

    assert second.first_ids["users"] == first.first_ids["users"] + 40
    assert User.objects.count() == 81 and Server.objects.count() == 600
    assert User.objects.filter(pk=admin.pk, is_admin=True).exists()
    active = Server.objects.filter(status__in=["Running", "Starting"])
    assert duplicates(active, F("port")) == 0
    assert duplicates(User.objects.all(), Lower("username")) == 0
    assert duplicates(User.objects.exclude(email=None), Lower("email")) == 0
    assert User.objects.filter(date_joined__gt=timezone.now()).count() == 0


@pytest.mark.django_db
def test_servers_alone_are_owned_by_existing_users_and_need_some():
    with pytest.raises(GenerationError, match="need owners"):
        generate(servers=10)
    assert Server.objects.count() == 0

    owner = User.objects.create_user("only_owner")
    generate(servers=25, seed=2)
    assert set(Server.objects.values_list("owner", flat=True)) == {owner.pk}


@pytest.mark.django_db(transaction=True)
def test_command_adds_the_data_and_reports_it(manage_py):
    done = manage_py(
        "generate_demo_data", "--users", "30", "--servers", "120", "--configs", "7", "--seed", "5", "--json"
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["users"], report["servers"], report["configs"]) == (30, 120, 7)
    assert (User.objects.count(), Server.objects.count(), Configuration.objects.count()) == (30, 120, 7)

    quiet = manage_py("generate_demo_data", "--users", "5", "--servers", "5", "--configs", "1", "-v", "0")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == "" and quiet.stderr == ""
    assert User.objects.count() == 35

    bad = manage_py("generate_demo_data", "--users", "-1")
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and "negative" in bad.stderr


@pytest.mark.engines("sqlite")
@pytest.mark.django_db
def test_sqlite_rows_loaded_without_per_row_checks_are_checked_before_commit():
    """SQLite skips CHECK per row while generating; each batch is checked set-based instead."""
    owner = User.objects.create_user("owner_one")
    stamp = "2026-01-01 00:00:00"
    bad = [
        (1, "port-80-server", owner.pk, 80, 2048, "Stopped", "survival", "normal", "1.21.4", "", "", 20, False, True)
    ]
    writer = BulkWriter("default")
    with writer.fast_mode(), pytest.raises(GenerationError, match="CHECK constraint"), transaction.atomic():
        writer.write(Server, SERVER_FIELDS, [(*bad[0], stamp, stamp)])
        writer.verify(Server, 1, 1)
    assert not Server.objects.exists()
    with pytest.raises(Exception, match="CHECK constraint"), transaction.atomic():
        writer.write(Server, SERVER_FIELDS, [(*bad[0], stamp, stamp)])  # checks are back on


@pytest.mark.engines("sqlite")
@pytest.mark.django_db
def test_sqlite_rows_pointing_to_a_missing_owner_are_caught_before_commit():
    """Foreign keys are not enforced per row while generating; verify() finds the orphan."""
    owner = User.objects.create_user("owner_one")
    stamp = "2026-01-01 00:00:00"
    row = (1, "orphan-server", owner.pk + 1000, 25565, 2048, "Stopped", "survival", "normal", "1.21.4", "", "", 20)
    writer = BulkWriter("default")
    with writer.fast_mode(), pytest.raises(GenerationError, match=r"foreign key \(ids \[1\]\)"), transaction.atomic():
        writer.write(Server, SERVER_FIELDS, [(*row, False, True, stamp, stamp)])
        writer.verify(Server, 1, 1)
    assert not Server.objects.exists()


@pytest.mark.engines("sqlite")
@pytest.mark.django_db(transaction=True)
def test_sqlite_load_outside_a_transaction_leaves_the_connection_as_it_found_it():
    """The load leaves WAL for a rollback journal and turns foreign keys off; both come back."""
    from django.db import connection

    result = generate(users=200, servers=2000, configs=20, seed=3, now=NOW)
    assert (result.users, result.servers, result.configs) == (200, 2000, 20)
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
        cursor.execute("PRAGMA foreign_keys")
        assert cursor.fetchone()[0] == 1
        cursor.execute("PRAGMA ignore_check_constraints")
        assert cursor.fetchone()[0] == 0
        cursor.execute("PRAGMA foreign_key_check")
        assert cursor.fetchall() == []
    assert all(n == 0 for n in check_violations(Server).values())
    assert Server.objects.count() == 2000


@pytest.mark.engines("sqlite")
@pytest.mark.django_db(transaction=True)
def test_sqlite_load_stays_in_wal_while_another_connection_is_open(settings):
    """Another process's connection keeps the WAL: the switch is refused and the load goes on."""
    import sqlite3

    from django.db import connection

    other = sqlite3.connect(settings.DATABASES["default"]["NAME"])
    try:
        other.execute("SELECT count(*) FROM accounts_user").fetchone()
        generate(users=50, servers=400, configs=5, seed=5, now=NOW)
        assert other.execute("SELECT count(*) FROM servers_server").fetchone()[0] == 400
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"


@pytest.mark.django_db
def test_progress_is_reported_after_every_batch():
    calls = []
    generate(users=250, servers=300, configs=5, seed=4, now=NOW, batch_size=100, progress=lambda *a: calls.append(a))
    assert [c for c in calls if c[0] == "users"] == [("users", 100, 250), ("users", 200, 250), ("users", 250, 250)]
    assert [c for c in calls if c[0] == "servers"] == [
        ("servers", 100, 300),
        ("servers", 200, 300),
        ("servers", 300, 300),
    ]
    assert calls[-1] == ("configuration", 5, 5)


@pytest.mark.engines("sqlite")
@pytest.mark.django_db
def test_sqlite_servers_do_not_depend_on_the_batch_size():
    """SQLite computes the servers from (seed, id): batching them differently changes nothing."""
    generate(users=60, servers=700, configs=3, seed=9, now=NOW)
    first = snapshot()
    for model in (Server, Configuration, User):
        model.objects.all().delete()
    generate(users=60, servers=700, configs=3, seed=9, now=NOW, batch_size=97)
    assert snapshot() == first


@pytest.mark.django_db
def test_servers_vary_in_every_setting():
    generate(users=100, servers=2000, configs=1, seed=11, now=NOW)
    for column, at_least in [
        ("gamemode", 4),
        ("difficulty", 4),
        ("version", 8),
        ("motd", 10),
        ("max_players", 6),
        ("hardcore", 2),
        ("pvp", 2),
        ("seed", 100),
    ]:
        assert Server.objects.values(column).distinct().count() >= at_least, column
    assert Server.objects.filter(seed="").count() > 500
    # Owners are skewed: the busiest owns many times the average.
    busiest = Server.objects.values("owner").annotate(n=Count("id")).order_by("-n").first()["n"]
    assert busiest >= 3 * 2000 / 100
    # Updated mostly lately: the median server was updated well after it was created.
    assert Server.objects.filter(updated_at__gt=F("created_at")).count() > 1900


def test_lehmer_jump_matches_stepping():
    base, x = 123_456_789, 123_456_789
    for n in range(1, 50):
        x = x * LEHMER_MULTIPLIER % LEHMER_MODULUS
        assert _lehmer_at(base, n) == x


@pytest.mark.parametrize(
    ("start", "total", "first", "last"), [(1, 3000, 1, 3000), (1000, 2100, 1500, 3099), (5, 1, 5, 5)]
)
def test_lehmer_rows_are_the_generator_stepped_once_per_id(start, total, first, last):
    """The SQL row source (two lookup tables joined) gives every id in the range once, with h1 = base * g**id."""
    cte, tables = _lehmer_sql(random.Random(3), 2, start, total)
    replay = random.Random(3)
    base = replay.randrange(1, LEHMER_MODULUS)
    k2 = replay.randrange(1 << 20, LEHMER_MODULUS)
    db = sqlite3.connect(":memory:")
    for name, (definition, rows) in tables.items():
        db.execute(f"CREATE TEMP TABLE {name} ({definition})")
        db.executemany(f"INSERT INTO temp.{name} VALUES (?, ?)", rows)
    got = db.execute(f"{cte} SELECT id, h1, h2 FROM s ORDER BY id", (first, last)).fetchall()
    assert [row[0] for row in got] == list(range(first, last + 1))
    for n, h1, h2 in got:
        assert h1 == _lehmer_at(base, n)
        assert h2 == h1 * k2 % LEHMER_MODULUS


def test_batches_cover_the_total_with_a_small_first_one():
    assert list(batches(10, 4)) == [(0, 4), (4, 4), (8, 2)]
    assert list(batches(10, 4, first=1)) == [(0, 1), (1, 4), (5, 4), (9, 1)]
    assert list(batches(3, 4, first=10)) == [(0, 3)]
    assert list(batches(0, 4, first=1)) == []


def test_clock_formats_timestamps_before_the_anchor():
    clock = Clock(dt.datetime(2026, 6, 1, 12, 30, 5), "")
    assert clock.ago(0) == "2026-06-01 12:30:05"
    assert clock.ago(3600 * 12 + 30 * 60 + 6) == "2026-05-31 23:59:59"
    assert Clock(dt.datetime(2026, 6, 1), "+00").ago(1) == "2026-05-31 23:59:59+00"


def test_clock_formats_the_same_with_and_without_its_tables():
    for suffix in ("", "+00"):
        clock = Clock(dt.datetime(2026, 3, 29, 1, 2, 3), suffix)
        for seconds in (0, 1, 3723, 86399, 86400, 86401, 90 * 86400 + 17, clock.span - 1):
            assert clock.ago_once(seconds) == clock.ago(seconds)


@pytest.mark.django_db
def test_users_vary_in_name_email_and_activity():
    generate(users=2000, seed=12, now=NOW)
    users = User.objects.all()
    assert users.filter(username__contains="_").exists() and users.filter(username__contains="-").exists()
    assert users.filter(username__regex=r"^[A-Z][a-z]+[A-Z]").exists()  # FirstLast123
    assert users.filter(username__regex=r"^[a-z]+[0-9]+$").exists()  # first123
    assert 150 < users.filter(email=None).count() < 450
    assert users.filter(email__regex=r"^[A-Z]").exists()
    assert 400 < users.filter(last_login=None).count() < 800
    assert users.filter(is_active=False).exists()
    assert users.values("date_joined").distinct().count() > 1900


@pytest.mark.django_db
def test_servers_of_existing_owners_are_created_after_they_joined():
    generate(users=30, seed=13, now=NOW)
    generate(servers=500, seed=14, now=NOW)
    assert Server.objects.count() == 500
    assert Server.objects.filter(created_at__lt=F("owner__date_joined")).count() == 0
    assert Server.objects.filter(Q(created_at__gt=NOW) | Q(updated_at__gt=NOW)).count() == 0
