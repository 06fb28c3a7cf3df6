import pytest
from django.urls import reverse

from accounts.models import User
from servers.models import Server

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-42"


@pytest.fixture
def admin_user() -> User:
    return User.objects.create_superuser("boss", password=PASSWORD)


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def login(client, username: str) -> bool:
    response = client.post(reverse("admin:login"), {"username": username, "password": PASSWORD, "next": "/admin/"})
    return response.status_code == 302 and response.url == "/admin/"


def test_only_active_admins_can_log_in(client, admin_user):
    User.objects.create_user("player", password=PASSWORD)
    User.objects.create_superuser("retired", password=PASSWORD, is_active=False)
    assert not login(client, "player")
    assert not login(client, "retired")
    assert login(client, "boss")
    assert client.get("/admin/").status_code == 200


def test_short_username_shows_a_field_message(admin_client):
    response = admin_client.post(
        reverse("admin:accounts_user_add"),
        {"username": "ab", "password1": PASSWORD, "password2": PASSWORD, "is_active": "on"},
    )
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert "username" in form.errors
    assert "at least 3 characters" in str(form.errors["username"])
    assert not User.objects.filter(username="ab").exists()


def test_user_list_filters_and_search(admin_client):
    User.objects.create_user("player_one", password=PASSWORD)
    response = admin_client.get(reverse("admin:accounts_user_changelist"), {"is_admin__exact": "0", "q": "player"})
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [User.objects.get(username="player_one")]


def test_deleting_an_owner_is_refused_with_the_server_count(admin_client):
    owner = User.objects.create_user("owner", password=PASSWORD)
    Server.objects.create(server_name="alpha", owner=owner, port=25565)
    Server.objects.create(server_name="beta", owner=owner, port=25566)
    url = reverse("admin:accounts_user_delete", args=[owner.pk])
    response = admin_client.post(url, {"post": "yes"}, follow=True)
    assert User.objects.filter(pk=owner.pk).exists()
    assert Server.objects.filter(owner=owner).count() == 2
    text = response.content.decode()
    assert "owns 2 servers and cannot be deleted" in text


def test_bulk_delete_spares_owners(admin_client):
    owner = User.objects.create_user("owner", password=PASSWORD)
    idle = User.objects.create_user("idle", password=PASSWORD)
    Server.objects.create(server_name="alpha", owner=owner, port=25565)
    response = admin_client.post(
        reverse("admin:accounts_user_changelist"),
        {"action": "delete_users_without_servers", "_selected_action": [owner.pk, idle.pk]},
        follow=True,
    )
    assert User.objects.filter(pk=owner.pk).exists()
    assert not User.objects.filter(pk=idle.pk).exists()
    assert "owns 1 server and cannot be deleted" in response.content.decode()


def test_admin_index_shows_no_unused_groups(admin_client):
    html = admin_client.get("/admin/").content.decode()
    assert "/admin/accounts/user/" in html
    assert "/admin/auth/group/" not in html
