"""Settings for production: no password on the debug page or in diffsettings, a clean
``check --deploy`` with the documented HTTPS environment, no development key used silently.

The subprocess tests start manage.py (or Django itself) with the environment an operator
would give it, so they test mcmanager/settings.py as it reads the environment.
"""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.http import HttpResponse
from django.test import Client
from django.urls import path

ROOT = Path(__file__).resolve().parent.parent
SUBSTITUTE = "********************"

# The environment README "Running in production" documents for running behind an HTTPS proxy.
PRODUCTION_ENV = {
    "DJANGO_ALLOWED_HOSTS": "mc.example.org",
    "DJANGO_SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto,https",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://mc.example.org",
    "DJANGO_SECURE_SSL_REDIRECT": "1",
    "DJANGO_SESSION_COOKIE_SECURE": "1",
    "DJANGO_CSRF_COOKIE_SECURE": "1",
    "DJANGO_SECURE_HSTS_SECONDS": "31536000",
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "DJANGO_SECURE_HSTS_PRELOAD": "1",
}


def boom(request):
    """A view that fails with passwords in its local variables (built here: the page also shows the source)."""
    word = "Frame" + "PW"
    dsn = f"postgres://mcm:{word}1@db.example.org:5432/mcm"  # noqa: F841
    conninfo = f"host=db.example.org user=mcm password={word}2"  # noqa: F841
    params = {"user": "mcm", "password": f"{word}3", "attempts": [{"password": f"{word}4"}]}  # noqa: F841
    raise RuntimeError("the view failed")


def fine(request):
    return HttpResponse("ok")


urlpatterns = [path("boom/", boom), path("fine/", fine)]


def manage(*args, env: dict, instance_dir: Path, **kwargs) -> subprocess.CompletedProcess:
    """``python manage.py ARGS`` with exactly the given environment (plus PATH and a private instance dir)."""
    full_env = {
        "PATH": os.environ.get("PATH", ""),
        "MCMANAGER_INSTANCE_DIR": str(instance_dir),
        "DJANGO_SETTINGS_MODULE": "mcmanager.settings",
        **env,
    }
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120, **kwargs
    )


def a_secret_key() -> str:
    return secrets.token_urlsafe(50)


# --- the debug page -------------------------------------------------------------------


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("accept", ["text/html", "text/plain"])
def test_debug_page_shows_no_password_in_settings_meta_or_variables(db, settings, accept):
    settings.DEBUG = True
    settings.MCMANAGER_OFFSITE_URL = "s3://AKIAEXAMPLE:SettingPW1@bucket.example.org/backups"
    settings.MCMANAGER_BROKER = "amqp://mcm:SettingPW2@mq.example.org//"
    settings.SENTRY_DSN = "https://SettingPW3@o1.ingest.example.org/1"
    client = Client(raise_request_exception=False)
    response = client.get(
        "/boom/",
        HTTP_ACCEPT=accept,
        # What runserver puts into META: the whole process environment.
        DATABASE_URL="postgres://mcm:MetaPW1@db.example.org:5432/mcm",
        CACHE_LOCATION="redis://:MetaPW2@cache.example.org:6379/0",
        MYSQL_PWD="MetaPW3",
        PGPASSWORD="MetaPW4",
    )
    page = response.content.decode()
    assert response.status_code == 500
    assert "the view failed" in page and "DATABASE_URL" in page and "MCMANAGER_BROKER" in page
    assert "amqp://mcm:" + SUBSTITUTE in page.replace("&#x27;", "'"), "the URL stays, less its password"
    for secret in ("SettingPW", "MetaPW", "FramePW1", "FramePW2", "FramePW3", "FramePW4"):
        assert secret not in page, f"{secret} on the debug page"


def test_debug_page_of_the_real_settings_hides_database_url_under_runserver(tmp_path):
    """The real settings module, DATABASE_URL with a password, and a database error: the page a developer sees.

    The request carries the process environment in META, as runserver's does, and fails
    where the connection to the database is made (its parameters are in the frames).
    """
    script = (
        "import os, sys, django\n"
        "django.setup()\n"
        "from django.test import Client\n"
        "from django.test.utils import setup_test_environment\n"
        "setup_test_environment(debug=True)\n"
        "response = Client(raise_request_exception=False).post(\n"
        "    '/admin/login/', {'username': 'admin', 'password': 'typed-in'}, **os.environ)\n"
        "print(response.status_code)\n"
        "print(response.content.decode())\n"
    )
    env = {
        "DATABASE_URL": "postgres://mcm:RealPW0@127.0.0.1:1/mcm",
        "DJANGO_DEBUG": "1",
        "DJANGO_SECRET_KEY": a_secret_key(),
    }
    done = manage("-c", script, env=env, instance_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    status, page = done.stdout.split("\n", 1)
    assert status == "500", page[:2000]
    assert "OperationalError" in page
    assert "DATABASE_URL" in page, "the environment is shown, its URL cleansed"
    assert "RealPW0" not in page


# --- diffsettings ---------------------------------------------------------------------


def test_database_url_is_not_kept_as_a_setting(settings):
    assert not hasattr(settings, "DATABASE_URL")


def test_diffsettings_shows_the_password_only_as_databases_password(tmp_path):
    env = {"DATABASE_URL": "postgres://mcm:DiffPW0@127.0.0.1:1/mcm", "DJANGO_SECRET_KEY": a_secret_key()}
    done = manage("manage.py", "diffsettings", env=env, instance_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if "DiffPW0" in line]
    assert len(lines) == 1 and done.stdout.count("DiffPW0") == 1, lines
    assert lines[0].startswith("DATABASES = ") and "'PASSWORD': 'DiffPW0'" in lines[0]


# --- check --deploy -------------------------------------------------------------------


def test_check_deploy_is_clean_with_the_documented_production_environment(tmp_path):
    env = {**PRODUCTION_ENV, "DJANGO_SECRET_KEY": a_secret_key()}
    done = manage("manage.py", "check", "--deploy", "--fail-level", "WARNING", env=env, instance_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "System check identified no issues" in done.stdout
    assert "WARNING" not in done.stdout + done.stderr


def test_check_deploy_warns_without_the_https_settings(tmp_path):
    """The documented variables are what makes --deploy clean: without them it warns."""
    env = {"DJANGO_ALLOWED_HOSTS": "mc.example.org", "DJANGO_SECRET_KEY": a_secret_key()}
    done = manage("manage.py", "check", "--deploy", env=env, instance_dir=tmp_path)
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in done.stderr, done.stderr


def test_proxy_header_is_read_as_django_wants_it(monkeypatch):
    from mcmanager.settings import proxy_ssl_header

    for written in ("X-Forwarded-Proto,https", "HTTP_X_FORWARDED_PROTO, https", "x-forwarded-proto,https"):
        monkeypatch.setenv("DJANGO_SECURE_PROXY_SSL_HEADER", written)
        assert proxy_ssl_header("DJANGO_SECURE_PROXY_SSL_HEADER") == ("HTTP_X_FORWARDED_PROTO", "https")
    monkeypatch.setenv("DJANGO_SECURE_PROXY_SSL_HEADER", "")
    assert proxy_ssl_header("DJANGO_SECURE_PROXY_SSL_HEADER") is None


@pytest.mark.urls(__name__)
def test_behind_the_proxy_a_forwarded_https_request_is_secure(db, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    client = Client()
    assert client.get("/fine/").status_code == 301, "plain HTTP is redirected"
    response = client.get("/fine/", HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 200
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")


@pytest.mark.parametrize(
    ("setting", "value", "check_id"),
    [
        ("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto", "mcmanager.E003"),
        ("SECURE_HSTS_SECONDS", -1, "mcmanager.E004"),
    ],
)
def test_malformed_https_settings_are_refused(settings, setting, value, check_id):
    setattr(settings, setting, value)
    assert check_id in {m.id for m in run_checks()}


# --- the secret key -------------------------------------------------------------------


def development_key(instance_dir: Path) -> Path:
    """The key `make run` leaves in the instance directory (DJANGO_DEBUG=1 generates it)."""
    done = manage("manage.py", "check", env={"DJANGO_DEBUG": "1"}, instance_dir=instance_dir)
    assert done.returncode == 0, done.stderr
    key_file = instance_dir / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    return key_file


@pytest.mark.parametrize("command", [["check"], ["backup", "-v", "0"]])
def test_development_key_is_not_used_with_debug_off(tmp_path, command):
    development_key(tmp_path)
    done = manage("manage.py", *command, env={}, instance_dir=tmp_path)
    assert done.returncode == 1
    assert "mcmanager.E001" in done.stderr
    assert "DJANGO_SECRET_KEY_FILE" in done.stderr, "the message says how to use that key on purpose"
    assert not (tmp_path / "backups").exists() or not any((tmp_path / "backups").iterdir())


def test_development_key_is_used_when_named_explicitly(tmp_path):
    key_file = development_key(tmp_path)
    done = manage("manage.py", "check", env={"DJANGO_SECRET_KEY_FILE": str(key_file)}, instance_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    shown = manage(
        "manage.py",
        "shell",
        "-c",
        "from django.conf import settings; print(settings.SECRET_KEY)",
        env={"DJANGO_SECRET_KEY_FILE": str(key_file)},
        instance_dir=tmp_path,
    )
    assert shown.stdout.strip().splitlines()[-1] == key_file.read_text().strip()


@pytest.mark.parametrize("debug", ["", "1"])
def test_a_key_file_named_but_unreadable_is_refused(tmp_path, debug):
    env = {"DJANGO_SECRET_KEY_FILE": str(tmp_path / "no-such-key"), "DJANGO_DEBUG": debug}
    done = manage("manage.py", "check", env=env, instance_dir=tmp_path)
    assert done.returncode == 1
    assert "mcmanager.E001" in done.stderr and "DJANGO_SECRET_KEY_FILE" in done.stderr
    assert not (tmp_path / "secret_key").exists(), "no development key instead of the one named"


def test_no_key_is_generated_with_debug_off(tmp_path):
    done = manage("manage.py", "check", env={}, instance_dir=tmp_path)
    assert done.returncode == 1 and "mcmanager.E001" in done.stderr
    assert not (tmp_path / "secret_key").exists()


def test_wsgi_refuses_to_start_without_a_key(tmp_path):
    development_key(tmp_path)
    done = manage("-c", "import mcmanager.wsgi", env={}, instance_dir=tmp_path)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured: mcmanager.E001"), last
