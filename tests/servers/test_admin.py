import pytest
from django.urls import reverse

from accounts.models import User
from servers.models import Configuration, Server

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_user() -> User:
    return User.objects.create_superuser("boss", password="pw-123456")


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def server_form(owner: User, **overrides) -> dict:
    data = {
        "server_name": "lobby",
        "owner": owner.pk,
        "status": "Stopped",
        "port": 25565,
        "memory_mb": 2048,
        "max_players": 20,
        "version": "1.21.4",
        "gamemode": "survival",
        "difficulty": "normal",
        "pvp": "on",
        "seed": "",
        "motd": "hi",
    }
    data.update(overrides)
    return data


def test_port_80_shows_a_field_message_not_a_500(admin_client, admin_user):
    response = admin_client.post(reverse("admin:servers_server_add"), server_form(admin_user, port=80))
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert "greater than or equal to 1024" in str(form.errors["port"])
    assert Server.objects.count() == 0


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("memory_mb", 100, "greater than or equal to 512"),
        ("server_name", "a b", "only letters, digits"),
        ("server_name", "ab", "at least 3 characters"),
        ("status", "running", "not one of the available choices"),
    ],
)
def test_other_rules_show_field_messages(admin_client, admin_user, field, value, message):
    response = admin_client.post(reverse("admin:servers_server_add"), server_form(admin_user, **{field: value}))
    assert response.status_code == 200
    assert message in str(response.context["adminform"].form.errors[field])
    assert Server.objects.count() == 0


def test_valid_server_is_saved(admin_client, admin_user):
    response = admin_client.post(reverse("admin:servers_server_add"), server_form(admin_user))
    assert response.status_code == 302
    assert Server.objects.get().server_name == "lobby"


def test_owner_is_chosen_with_autocomplete(admin_client, admin_user):
    for i in range(30):
        User.objects.create_user(f"player{i:02d}", password="pw-123456")
    html = admin_client.get(reverse("admin:servers_server_add")).content.decode()
    assert "admin-autocomplete" in html
    # The users are searched on demand, never listed in the page.
    assert "player17" not in html
    found = admin_client.get(
        reverse("admin:autocomplete"),
        {"term": "player1", "app_label": "servers", "model_name": "server", "field_name": "owner"},
    ).json()
    assert {r["text"] for r in found["results"]} == {f"player{i}" for i in range(10, 20)}


def test_server_list_shows_the_columns_and_filters(admin_client, admin_user):
    Server.objects.create(server_name="alpha", owner=admin_user, port=25565, status="Running")
    Server.objects.create(server_name="beta", owner=admin_user, port=25566, status="Stopped")
    response = admin_client.get(reverse("admin:servers_server_changelist"), {"status__exact": "Running"})
    assert [s.server_name for s in response.context["cl"].result_list] == ["alpha"]
    html = response.content.decode()
    for column in ("column-server_name", "column-owner", "column-port", "column-status", "column-memory_mb"):
        assert column in html


def test_configuration_records_who_changed_it(admin_client, admin_user):
    response = admin_client.post(
        reverse("admin:servers_configuration_add"), {"key": "panel.motd", "value": "Welcome", "description": ""}
    )
    assert response.status_code == 302
    assert Configuration.objects.get(key="panel.motd").updated_by == admin_user
    response = admin_client.post(
        reverse("admin:servers_configuration_add"), {"key": "bad key", "value": "", "description": ""}
    )
    form = response.context["adminform"].form
    assert "key" in form.errors and "value" in form.errors
