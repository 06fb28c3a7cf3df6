"""Every seed rule holds for clients other than Django: the sqlite3 shell, psql, the mariadb client.

Rows go in through the vendor's own command-line client on a database made by
``migrate``. A valid row goes in; each rule's violation, on each side of each
boundary, is rejected.
"""

import pytest

from accounts.models import User
from servers.models import Configuration, Server
from tests.rawsql import insert_sql, run_client

pytestmark = pytest.mark.django_db(transaction=True)


def user_row(**overrides) -> dict:
    row = {
        "password": "!",
        "username": "valid_user",
        "email": None,
        "is_admin": False,
        "is_active": True,
        "date_joined": "2026-01-01 00:00:00",
    }
    row.update(overrides)
    return row


def server_row(owner_id: int, **overrides) -> dict:
    row = {
        "server_name": "valid-server",
        "owner_id": owner_id,
        "port": 25565,
        "memory_mb": 2048,
        "status": "Running",
        "gamemode": "survival",
        "difficulty": "normal",
        "version": "1.21.4",
        "motd": "hello",
        "seed": "",
        "max_players": 20,
        "hardcore": False,
        "pvp": True,
        "created_at": "2026-01-01 00:00:00",
        "updated_at": "2026-01-01 00:00:00",
    }
    row.update(overrides)
    return row


def config_row(**overrides) -> dict:
    row = {"key": "panel.name", "value": "My panel", "description": "", "updated_at": "2026-01-01 00:00:00"}
    row.update(overrides)
    return row


def assert_accepted(table: str, row: dict) -> None:
    done = run_client(insert_sql(table, row))
    assert done.returncode == 0, f"valid row refused: {row}\n{done.stderr}"


def assert_rejected(table: str, row: dict) -> None:
    done = run_client(insert_sql(table, row))
    assert done.returncode != 0, f"the database accepted a row breaking a rule: {row}"


@pytest.fixture
def owner() -> User:
    assert_accepted("accounts_user", user_row(username="owner1"))
    return User.objects.get(username="owner1")


USERNAMES_OK = ["abc", "a" * 80, "Ab_9-x", "___", "---"]
USERNAMES_BAD = ["ab", "a" * 81, "", "bad name", "bad.name", "bé_b", "semi;colon", "tab\tname"]


@pytest.mark.parametrize("username", USERNAMES_OK)
def test_username_accepted(username):
    assert_accepted("accounts_user", user_row(username=username))
    assert User.objects.filter(username=username).exists()


@pytest.mark.parametrize("username", USERNAMES_BAD)
def test_username_rejected(username):
    assert_rejected("accounts_user", user_row(username=username))
    assert User.objects.count() == 0


def test_username_unique():
    assert_accepted("accounts_user", user_row(username="alice"))
    assert_rejected("accounts_user", user_row(username="alice"))


@pytest.mark.parametrize("email", [None, "a@b", "alice@example.org"])
def test_email_accepted(email):
    assert_accepted("accounts_user", user_row(email=email))


@pytest.mark.parametrize("email", ["", "no-at-sign", "a b@example.org", "x" * 250 + "@a.org"])
def test_email_rejected(email):
    assert_rejected("accounts_user", user_row(email=email))
    assert User.objects.count() == 0


def test_many_users_without_email():
    for name in ("nomail1", "nomail2", "nomail3"):
        assert_accepted("accounts_user", user_row(username=name, email=None))
    assert User.objects.filter(email__isnull=True).count() == 3


def test_email_unique_ignoring_case():
    assert_accepted("accounts_user", user_row(username="bob1", email="Bob@Example.org"))
    assert_rejected("accounts_user", user_row(username="bob2", email="bob@example.org"))
    assert_rejected("accounts_user", user_row(username="bob3", email="Bob@Example.org"))


@pytest.mark.parametrize(
    "field,value",
    [
        ("port", 1024),
        ("port", 65535),
        ("memory_mb", 512),
        ("memory_mb", 32768),
        ("server_name", "abc"),
        ("server_name", "s" * 150),
        ("server_name", "My_Server-01"),
        *[("status", s) for s in ("Running", "Stopped", "Starting", "Stopping")],
        *[("gamemode", g) for g in ("survival", "creative", "adventure", "spectator")],
        *[("difficulty", d) for d in ("peaceful", "easy", "normal", "hard")],
    ],
)
def test_server_accepted(owner, field, value):
    assert_accepted("servers_server", server_row(owner.pk, **{field: value}))
    assert Server.objects.filter(**{field: value}).count() == 1


@pytest.mark.parametrize(
    "field,value",
    [
        ("port", 1023),
        ("port", 65536),
        ("port", 80),
        ("port", -1),
        ("memory_mb", 511),
        ("memory_mb", 32769),
        ("memory_mb", 0),
        ("server_name", "ab"),
        ("server_name", "s" * 151),
        ("server_name", "my server"),
        ("server_name", "dots.not.allowed"),
        ("status", "running"),
        ("status", "RUNNING"),
        ("status", "Paused"),
        ("status", ""),
        ("gamemode", "Survival"),
        ("gamemode", "hardcore"),
        ("difficulty", "HARD"),
        ("difficulty", "insane"),
        ("max_players", 0),
        ("max_players", 1001),
    ],
)
def test_server_rejected(owner, field, value):
    assert_rejected("servers_server", server_row(owner.pk, **{field: value}))
    assert Server.objects.count() == 0


def test_server_name_unique(owner):
    assert_accepted("servers_server", server_row(owner.pk, server_name="lobby"))
    assert_rejected("servers_server", server_row(owner.pk, server_name="lobby", port=25566))


def test_server_owner_must_exist(owner):
    assert_rejected("servers_server", server_row(owner.pk + 1000))
    assert Server.objects.count() == 0


def test_deleting_an_owner_is_refused_by_the_database(owner):
    assert_accepted("servers_server", server_row(owner.pk))
    done = run_client(f"DELETE FROM accounts_user WHERE id = {owner.pk};")
    assert done.returncode != 0
    assert User.objects.filter(pk=owner.pk).exists()
    assert Server.objects.filter(owner=owner).count() == 1


@pytest.mark.parametrize("key", ["a", "k" * 100, "panel.motd-1_x", "A.B.C"])
def test_configuration_key_accepted(key):
    assert_accepted("servers_configuration", config_row(key=key))
    assert Configuration.objects.filter(key=key).exists()


@pytest.mark.parametrize("key", ["", "k" * 101, "bad key", "bad/key", "clé"])
def test_configuration_key_rejected(key):
    assert_rejected("servers_configuration", config_row(key=key))
    assert Configuration.objects.count() == 0


def test_configuration_value_must_not_be_empty():
    assert_rejected("servers_configuration", config_row(value=""))
    assert_accepted("servers_configuration", config_row(value="x"))


def test_configuration_key_unique():
    assert_accepted("servers_configuration", config_row(key="dup"))
    assert_rejected("servers_configuration", config_row(key="dup"))


def test_configuration_updated_by_must_exist(owner):
    assert_rejected("servers_configuration", config_row(updated_by_id=owner.pk + 1000))
    assert_accepted("servers_configuration", config_row(updated_by_id=owner.pk))
