import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models.deletion import ProtectedError

from accounts.models import User
from servers.models import Configuration, Server

pytestmark = pytest.mark.django_db


def test_empty_email_is_stored_as_null():
    a = User.objects.create_user("alice", email="", password="pw-123456")
    b = User.objects.create_user("bobby", email=None, password="pw-123456")
    a.refresh_from_db()
    b.refresh_from_db()
    assert a.email is None and b.email is None
    assert User.objects.filter(email__isnull=True).count() == 2


def test_email_unique_ignoring_case_through_the_orm():
    User.objects.create_user("alice", email="Alice@Example.org")
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(username="alice2", email="alice@example.org")


def test_full_clean_reports_the_rules_per_field():
    user = User(username="ab", email="not-an-email")
    with pytest.raises(ValidationError) as err:
        user.full_clean(exclude=["password"])
    assert "username" in err.value.message_dict
    assert "email" in err.value.message_dict


def test_create_superuser_makes_an_admin():
    admin = User.objects.create_superuser("root_admin", password="pw-123456")
    assert admin.is_admin and admin.is_staff and admin.is_active
    assert admin.has_perm("servers.change_server")
    plain = User.objects.create_user("plain", password="pw-123456")
    assert not plain.is_staff and not plain.has_perm("servers.change_server")


def test_deleting_an_owner_never_cascades():
    owner = User.objects.create_user("owner", password="pw-123456")
    Server.objects.create(server_name="lobby", owner=owner, port=25565)
    with pytest.raises(ProtectedError):
        owner.delete()
    assert Server.objects.filter(owner=owner).count() == 1


def test_deleting_the_author_of_a_setting_keeps_the_setting():
    author = User.objects.create_user("author", password="pw-123456")
    entry = Configuration.objects.create(key="panel.name", value="x", updated_by=author)
    author.delete()
    entry.refresh_from_db()
    assert entry.updated_by is None


def test_createsuperuser_command_makes_an_admin(monkeypatch):
    from django.core.management import call_command

    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "pw-123456-long")
    call_command("createsuperuser", "--noinput", "--username", "chief", verbosity=0)
    chief = User.objects.get(username="chief")
    assert chief.is_admin and chief.check_password("pw-123456-long")


def test_ensure_admin_creates_one_admin_once():
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("ensure_admin", stdout=out)
    assert "as admin / " in out.getvalue()
    password = out.getvalue().split("as admin / ")[1].split()[0]
    assert User.objects.get(username="admin").check_password(password)
    out = StringIO()
    call_command("ensure_admin", stdout=out)
    assert "as admin (forgot the password?" in out.getvalue()
    assert User.objects.filter(is_admin=True).count() == 1
