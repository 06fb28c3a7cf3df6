"""``import_legacy``: a Flask-era database comes in, checked first, ids and passwords kept."""

import json
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import User
from dbtools.models import OperationLog
from dbtools.validation import run_validation
from servers.models import Configuration, Server

from .legacy_helpers import (
    EXPECTED_PROBLEMS,
    GOOD_IDS,
    PASSWORDS,
    REVISION,
    SOURCE_ROWS,
    flask_database,
    sha256_of,
)

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args):
    out, err = StringIO(), StringIO()
    try:
        call_command("import_legacy", *[str(a) for a in args], stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), str(exc)
    return 0, out.getvalue(), err.getvalue()


def table_counts() -> dict:
    return {
        "user": User.objects.count(),
        "server": Server.objects.count(),
        "configuration": Configuration.objects.count(),
    }


def backups(settings) -> list[Path]:
    directory = Path(settings.MCMANAGER_BACKUP_DIR)
    return sorted(directory.glob("db_backup_*")) if directory.exists() else []


@pytest.fixture
def source(tmp_path):
    old = tmp_path / "old-app" / "instance"
    old.mkdir(parents=True)
    return flask_database(old)


@pytest.fixture
def hashers(settings):
    # conftest keeps only MD5; logins here need the Werkzeug hasher behind a default.
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "accounts.hashers.WerkzeugPasswordHasher",
    ]


def test_dry_run_changes_nothing(source, settings):
    digest = sha256_of(source)
    code, out, _ = run(source, "--dry-run", "--skip-invalid")
    assert code == 0
    assert f"Alembic revision {REVISION}" in out
    assert "user: 7 in the source, would import 3, quarantined 4" in out
    assert "server: 9 in the source, would import 3, quarantined 6" in out
    assert "not carried over: server.spawn_monsters" in out and "server.pid" in out
    assert "Dry run: nothing was changed." in out
    assert table_counts() == {"user": 0, "server": 0, "configuration": 0}
    assert backups(settings) == []
    assert not OperationLog.objects.filter(operation="import_legacy").exists()
    assert not (Path(settings.MCMANAGER_BACKUP_DIR) / "imports").exists()
    assert sha256_of(source) == digest
    assert sorted(p.name for p in source.parent.iterdir()) == ["mcserver.db"]  # no -wal, -shm, -journal


def test_without_skip_invalid_it_stops_with_the_full_list(source, settings):
    code, out, message = run(source)
    assert code == 1
    assert "nothing was imported" in message and "--skip-invalid" in message
    lines = [line.removeprefix("invalid: ").split(": ") for line in out.splitlines() if line.startswith("invalid: ")]
    listed = {(where.split(" ")[0], int(where.split(" ")[1]), rule) for where, rule, *_ in lines}
    assert listed == EXPECTED_PROBLEMS
    assert "server 5: port_range: 80" in out
    assert "owner_quarantined: 4 (its owner, user 4, is quarantined (username_valid))" in out
    assert table_counts() == {"user": 0, "server": 0, "configuration": 0}
    assert backups(settings) == []
    # The refusal is in the operations log, with what was found.
    entry = OperationLog.objects.get(operation="import_legacy")
    assert entry.outcome == "failure" and "nothing was imported" in entry.message
    assert entry.details["source_rows"] == SOURCE_ROWS and entry.details["problems"] == len(EXPECTED_PROBLEMS)
    assert entry.details["imported"] == {"user": 0, "server": 0, "configuration": 0}


def test_json_report_lists_every_problem(source):
    code, out, _ = run(source, "--dry-run", "--json")
    assert code == 1
    report = json.loads(out)
    assert {(p["table"], p["id"], p["rule"]) for p in report["problems"]} == EXPECTED_PROBLEMS
    assert report["revision"] == REVISION and report["source_rows"] == SOURCE_ROWS
    assert all("value" in p for p in report["problems"])


def test_skip_invalid_imports_the_good_rows_and_quarantines_the_rest(source, settings, hashers):
    digest = sha256_of(source)
    code, out, _ = run(source, "--skip-invalid")
    assert code == 0, out
    assert sha256_of(source) == digest

    # Counts add up: imported + quarantined = source.
    assert table_counts() == {t: len(ids) for t, ids in GOOD_IDS.items()}
    quarantine = next((Path(settings.MCMANAGER_BACKUP_DIR) / "imports").glob("*.quarantine.jsonl"))
    entries = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert len(entries) + sum(table_counts().values()) == sum(SOURCE_ROWS.values())
    assert {(e["table"], e["id"], p["rule"]) for e in entries for p in e["problems"]} == EXPECTED_PROBLEMS
    djs = next(e for e in entries if e["table"] == "server" and e["id"] == 8)
    assert djs["row"]["server_name"] == "djs-world" and "user 4" in djs["problems"][0]["message"]
    assert oct(quarantine.stat().st_mode & 0o777) == "0o600"

    # Ids and references kept, fields mapped, timestamps in UTC.
    assert set(User.objects.values_list("id", flat=True)) == GOOD_IDS["user"]
    assert set(Server.objects.values_list("id", flat=True)) == GOOD_IDS["server"]
    assert set(Configuration.objects.values_list("id", flat=True)) == GOOD_IDS["configuration"]
    alice, bob, carol = User.objects.get(pk=1), User.objects.get(pk=2), User.objects.get(pk=50)
    assert alice.is_admin and alice.is_active and not bob.is_active and not carol.is_admin
    assert alice.date_joined == datetime(2023, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert alice.last_login == datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert bob.email == "Bob@Example.org" and carol.email is None
    lobby = Server.objects.get(pk=1)
    assert (lobby.owner_id, lobby.port, lobby.status, lobby.seed, lobby.version) == (
        1,
        25565,
        "Running",
        "12345",
        "1.20.1",
    )
    assert Server.objects.get(pk=60).owner_id == 50 and Server.objects.get(pk=2).motd == ""
    assert Server.objects.get(pk=2).hardcore and not Server.objects.get(pk=2).pvp
    assert Configuration.objects.get(pk=1).updated_by_id == 1

    # Passwords: the old ones work; the inactive user stays locked out.
    assert authenticate(username="alice", password=PASSWORDS["alice"]) is not None
    assert authenticate(username="carol_c-1", password=PASSWORDS["carol"]) is not None
    assert authenticate(username="carol_c-1", password="wrong") is None
    assert authenticate(username="bob", password=PASSWORDS["bob"]) is None
    assert User.objects.get(pk=2).check_password(PASSWORDS["bob"])

    # Sequences are past the largest id: new rows get new ids.
    newcomer = User.objects.create_user("newcomer")
    assert newcomer.pk > 50
    assert Server.objects.create(server_name="fresh", owner=newcomer, port=30000).pk > 60
    assert Configuration.objects.create(key="new.key", value="1").pk > 70

    # A backup first, the operations log after, validate clean.
    from dbtools.manifest import read_manifest

    made = [p for p in backups(settings) if not p.name.endswith(".json")]
    assert len(made) == 1 and read_manifest(made[0]).reason == "pre-import"
    entry = OperationLog.objects.get(operation="import_legacy")
    assert entry.outcome == "success"
    assert entry.details["imported"] == {"user": 3, "server": 3, "configuration": 2}
    assert entry.details["quarantined"] == {"user": 4, "server": 6, "configuration": 4}
    report = run_validation()
    assert report.ok, [p.as_dict() for p in report.problems]


def test_a_second_import_collides_and_writes_nothing(source, settings):
    assert run(source, "--skip-invalid")[0] == 0
    before = table_counts()
    backups_before = backups(settings)
    code, out, message = run(source, "--skip-invalid")
    assert code == 1 and "collide" in message and "nothing was imported" in message
    collided = {(line.split(" ")[1], int(line.split(" ")[2].rstrip(":"))) for line in out.splitlines()
                if line.startswith("collision: ")}  # fmt: skip
    assert collided == {(t, i) for t, ids in GOOD_IDS.items() for i in ids}
    assert "user 1: username_taken: 'alice'" in out
    assert table_counts() == before
    assert backups(settings) == backups_before


def test_collision_with_an_existing_user_writes_nothing(source):
    User.objects.create_user("ALICE")
    code, out, _ = run(source, "--skip-invalid")
    assert code == 1
    assert "collision: user 1: username_taken: 'alice'" in out
    assert table_counts() == {"user": 1, "server": 0, "configuration": 0}


def test_a_clean_source_imports_without_skip_invalid(tmp_path):
    import sqlite3

    path = flask_database(tmp_path)
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM server WHERE id NOT IN (1, 2, 60)")
    conn.execute("DELETE FROM configuration WHERE id NOT IN (1, 70)")
    conn.execute("DELETE FROM user WHERE id NOT IN (1, 2, 50)")
    conn.commit()
    conn.close()
    code, out, _ = run(path, "--json")
    assert code == 0
    report = json.loads(out)
    assert report["written"] and report["quarantine_file"] is None
    assert report["imported"] == {"user": 3, "server": 3, "configuration": 2}
    assert table_counts() == {"user": 3, "server": 3, "configuration": 2}


@pytest.mark.parametrize(
    "kind", ["missing", "text", "other-app", "mcmanager", "lacks-column", "directory", "wal", "journal"]
)
def test_anything_else_is_refused_in_one_line(tmp_path, kind):
    import sqlite3

    path = tmp_path / "thing.db"
    if kind in ("wal", "journal"):
        path = flask_database(tmp_path, "thing.db")
        Path(f"{path}-{kind}").write_bytes(b"\x37\x7f\x06\x82" + b"\x00" * 60)
    elif kind == "text":
        path.write_text("not a database\n" * 10)
    elif kind == "other-app":
        sqlite3.connect(path).executescript("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);")
    elif kind == "mcmanager":
        sqlite3.connect(path).executescript(
            "CREATE TABLE user (id INTEGER); CREATE TABLE server (id INTEGER); "
            "CREATE TABLE configuration (id INTEGER); CREATE TABLE django_migrations (id INTEGER);"
        )
    elif kind == "lacks-column":
        path = flask_database(tmp_path)
        conn = sqlite3.connect(path)
        conn.execute("ALTER TABLE server DROP COLUMN memory_mb")
        conn.commit()
        conn.close()
    elif kind == "directory":
        path = tmp_path
    code, _, message = run(path)
    assert code == 2
    assert "\n" not in message and "Traceback" not in message
    expected = {
        "missing": "cannot read",
        "text": "not a SQLite database",
        "other-app": "not a Flask-era mcServerManager database: tables user, server, configuration missing",
        "mcmanager": "use restore",
        "lacks-column": "table server lacks column memory_mb",
        "directory": "not a regular file",
        "wal": "has a write-ahead log (thing.db-wal) with changes not yet in the file",
        "journal": "has a rollback journal (thing.db-journal)",
    }[kind]
    assert expected in message
    assert table_counts() == {"user": 0, "server": 0, "configuration": 0}


def test_an_unreachable_source_url_is_refused_in_one_line():
    code, _, message = run("postgres://nobody:s3cret@127.0.0.1:1/nothing")
    assert code == 2 and "s3cret" not in message and "\n" not in message
    assert "postgres://nobody@127.0.0.1:1/nothing" in message


@pytest.fixture
def browser(chromium_path):
    from django.db import connections
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=args)
        try:
            yield browser
        finally:
            browser.close()
            connections.close_all()  # the ones Django opened inside Playwright's event loop


@pytest.mark.browser
def test_an_old_admin_logs_in_with_the_old_password(source, settings, browser, live_server, monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the ORM calls here are plain test code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "accounts.hashers.WerkzeugPasswordHasher",
    ]
    assert run(source, "--skip-invalid")[0] == 0
    assert User.objects.get(username="alice").password.startswith("werkzeug$pbkdf2:sha256:600000$")

    page = browser.new_page()
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "not-her-password")
    page.click("input[type=submit]")
    page.wait_for_load_state()
    assert "/admin/login/" in page.url  # a wrong password is refused and changes nothing
    assert User.objects.get(username="alice").password.startswith("werkzeug$")

    page.fill("#id_username", "alice")
    page.fill("#id_password", PASSWORDS["alice"])
    page.click("input[type=submit]")
    page.wait_for_load_state()
    assert page.url == f"{live_server.url}/admin/"
    assert "Site administration" in page.inner_text("body")
    # Django rehashed the password with its default hasher at this first login.
    stored = User.objects.get(username="alice").password
    assert stored.startswith("pbkdf2_sha256$")
    assert User.objects.get(username="alice").check_password(PASSWORDS["alice"])


@pytest.fixture
def server_source():
    """The old application's database on this test run's server (PostgreSQL or MariaDB), as a URL."""
    from django.db import connection

    from tests.conftest import database_url_for

    from .legacy_helpers import fill_server_database

    name = connection.settings_dict["NAME"] + "_flask"
    base = database_url_for()
    url = base.rsplit("/", 1)[0] + "/" + name
    s = connection.settings_dict
    if connection.vendor == "postgresql":
        import psycopg

        def admin(sql):
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(sql)

        admin(f'DROP DATABASE IF EXISTS "{name}"')
        admin(f'CREATE DATABASE "{name}"')
        with psycopg.connect(url) as conn:
            fill_server_database(conn, "postgresql")
        yield url
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        import MySQLdb

        def admin(sql):
            conn = MySQLdb.connect(host=s["HOST"] or "127.0.0.1", user=s["USER"], passwd=s["PASSWORD"] or "",
                                   port=int(s["PORT"] or 3306))  # fmt: skip
            try:
                conn.cursor().execute(sql)
            finally:
                conn.close()

        admin(f"DROP DATABASE IF EXISTS `{name}`")
        # A binary collation, so the old database can hold emails equal but for case.
        admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        conn = MySQLdb.connect(host=s["HOST"] or "127.0.0.1", user=s["USER"], passwd=s["PASSWORD"] or "",
                               port=int(s["PORT"] or 3306), db=name, charset="utf8mb4")  # fmt: skip
        try:
            fill_server_database(conn, "mysql")
        finally:
            conn.close()
        yield url
        admin(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.mark.engines("postgresql", "mysql")
def test_a_server_database_is_read_in_a_read_only_transaction(server_source, hashers):
    from dbtools.engines.legacy import open_legacy_source

    with open_legacy_source(server_source) as src:
        assert sorted(src.tables()) == ["alembic_version", "configuration", "server", "user"]
        # The source connection cannot write, whatever a bug of ours would try.
        with pytest.raises(Exception, match="(?i)read.only"):
            list(src.rows("server", ["id"]))
            cursor = src.conn.cursor()
            cursor.execute("DELETE FROM server")

    code, out, _ = run(server_source, "--skip-invalid")
    assert code == 0, out
    assert f"Alembic revision {REVISION}" in out
    assert table_counts() == {t: len(ids) for t, ids in GOOD_IDS.items()}
    assert User.objects.get(pk=1).is_admin and not User.objects.get(pk=2).is_active
    assert User.objects.get(pk=1).date_joined == datetime(2023, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert authenticate(username="alice", password=PASSWORDS["alice"]) is not None
    with open_legacy_source(server_source) as src:  # the source still holds every row
        assert {t: len(list(src.rows(t, ["id"]))) for t in SOURCE_ROWS} == SOURCE_ROWS
    assert run_validation().ok


def test_a_held_lock_stops_it_before_anything_is_written(source):
    from dbtools.locks import database_lock

    with database_lock("default", "backup"):
        code, _, message = run(source, "--skip-invalid")
    assert code == 2 and "\n" not in message
    assert table_counts() == {"user": 0, "server": 0, "configuration": 0}


def test_progress_goes_to_stderr_only_on_a_terminal(source, settings, tmp_path):
    import os
    import pty
    import subprocess
    import sys

    from tests.conftest import database_url_for

    root = Path(__file__).resolve().parents[2]
    import secrets

    env = dict(
        os.environ,
        DATABASE_URL=database_url_for(),
        MCMANAGER_BACKUP_DIR=str(settings.MCMANAGER_BACKUP_DIR),
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
    )
    argv = [sys.executable, str(root / "manage.py"), "import_legacy", str(source), "--skip-invalid"]
    piped = subprocess.run(argv + ["--dry-run"], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and piped.stderr == ""

    leader, follower = pty.openpty()
    try:
        done = subprocess.run(argv, cwd=root, env=env, stdout=subprocess.PIPE, stderr=follower, timeout=120)
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
    assert done.returncode == 0
    assert b"server: 3/3 (100%)" in seen


def test_a_path_with_uri_characters_is_read_as_a_path(tmp_path):
    odd = tmp_path / "old app?mode=rw#1%20"
    odd.mkdir()
    path = flask_database(odd, "mcserver?.db")
    digest = sha256_of(path)
    code, out, _ = run(path, "--dry-run", "--skip-invalid")
    assert code == 0 and "user: 7 in the source, would import 3" in out
    assert sha256_of(path) == digest and sorted(p.name for p in odd.iterdir()) == ["mcserver?.db"]


def test_a_sqlite_url_names_the_file_as_database_url_does(source):
    code, out, _ = run(f"sqlite:///{source}", "--dry-run", "--skip-invalid")
    assert code == 0 and f"SQLite file {source}" in out
    code, _, message = run("sqlite:///no/such/file.db", "--dry-run")
    assert code == 2 and "no/such/file.db" in message
