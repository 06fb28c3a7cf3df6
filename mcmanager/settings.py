"""Settings for mcmanager, read from the environment with defaults that work on a laptop.

Every setting an operator may change has one environment variable (see README.md,
"Settings"). Code reads ``django.conf.settings`` at call time, never at import
time, so tests can override any of them.
"""

import os
import secrets
from pathlib import Path

import dj_database_url

from mcmanager import mariadb_tls

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int | None) -> int | None:
    """An integer from the environment; a malformed value is kept as -1 for the system checks to reject."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return int(value)
    except ValueError:
        return -1


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


INSTANCE_DIR = Path(env_str("MCMANAGER_INSTANCE_DIR", str(BASE_DIR / "instance")))

DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")


def _secret_key() -> str:
    """DJANGO_SECRET_KEY, else the file DJANGO_SECRET_KEY_FILE names, else (only when DEBUG) instance/secret_key.

    instance/secret_key is a development key, generated there once when DEBUG: with DEBUG
    off it is used only when DJANGO_SECRET_KEY_FILE names it, never silently. Without a
    key the value is a marker that the system check mcmanager.E001 refuses (manage.py and
    the WSGI/ASGI entry points run that check before serving).
    """
    key = env_str("DJANGO_SECRET_KEY")
    if key:
        return key
    key_file = env_str("DJANGO_SECRET_KEY_FILE")
    if key_file:
        try:
            return Path(key_file).read_text().strip() or MISSING_SECRET_KEY
        except OSError:
            return MISSING_SECRET_KEY
    if not DEBUG:
        return MISSING_SECRET_KEY
    key_file = DEVELOPMENT_SECRET_KEY_FILE
    if key_file.exists():
        return key_file.read_text().strip()
    INSTANCE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key


MISSING_SECRET_KEY = "!missing: set DJANGO_SECRET_KEY"
DEVELOPMENT_SECRET_KEY_FILE = INSTANCE_DIR / "secret_key"
SECRET_KEY = _secret_key()

INSTALLED_APPS = [
    # django.contrib.admin with mcmanager's AdminSite as admin.site (the health dashboard's entry).
    "mcmanager.admin.McmanagerAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Not "dbbackup": its connectors are used as a library (dbtools/engines/), and as an app it
    # would offer its own dbbackup/dbrestore (restores with none of our guards) and
    # mediabackup/mediarestore (this project has no media). dbtools' dbbackup and dbrestore
    # run the guarded backup and restore under those names.
    "health_check",
    "mcmanager",
    "accounts",
    "servers",
    "dbtools",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mcmanager.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "mcmanager.wsgi.application"

# --- Database -------------------------------------------------------------

DEFAULT_SQLITE_PATH = INSTANCE_DIR / "mcmanager.sqlite3"


def database_from_url(url: str) -> dict:
    """One DATABASES entry from a URL, with the options each engine needs to be safe."""
    config = dj_database_url.parse(url, conn_max_age=0)
    engine = config["ENGINE"]
    if engine == "django.db.backends.sqlite3":
        name = Path(config["NAME"])
        if str(name) != ":memory:":
            name.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        config["OPTIONS"] = {
            # WAL lets the web app read while cron backs up; the busy timeout makes a
            # writer wait for another instead of failing with "database is locked".
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
        }
        # Tests need a real file (backups, the sqlite3 shell), never :memory:.
        config["TEST"] = {"NAME": str(name.with_name(f"test_{name.name}"))}
    elif engine == "django.db.backends.mysql":
        # The URL's options are kept (TLS among them, in mysqlclient's spelling: see
        # mcmanager/mariadb_tls.py); the charset and the session's sql_mode are ours.
        options = mariadb_tls.normalize(config.get("OPTIONS") or {})
        options["charset"] = "utf8mb4"
        options["init_command"] = mariadb_tls.init_command(
            options, "SET sql_mode='STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION'"
        )
        config["OPTIONS"] = options
        config["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_general_ci"}
    return config


# DATABASE_URL is read here and not kept as a setting of its own: its password would be a
# second copy beside DATABASES' PASSWORD, shown by diffsettings and the debug page.
DATABASES = {"default": database_from_url(env_str("DATABASE_URL", f"sqlite:///{DEFAULT_SQLITE_PATH}"))}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# models.W044: MariaDB has no unique indexes on expressions, so the case-insensitive
# unique email constraint is not created there. It is not needed there either: the
# column's collation (utf8mb4_general_ci) already makes the plain unique index ignore
# case. The tests prove it on MariaDB.
SILENCED_SYSTEM_CHECKS = ["models.W044"]

# --- Auth ------------------------------------------------------------------

AUTH_USER_MODEL = "accounts.User"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Django's own hashers in its default order (the first hashes new passwords), then the
# Werkzeug hasher for passwords imported from the Flask-era application (import_legacy):
# it only verifies them, and Django rehashes each with the first one at its first login.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
    "accounts.hashers.WerkzeugPasswordHasher",
]

LOGIN_URL = "admin:login"

# --- Internationalisation and static files ----------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = INSTANCE_DIR / "static"

# --- Security in production --------------------------------------------------
# Off by default so `make run` works over plain HTTP; README "Running in production" lists
# the values behind an HTTPS proxy, with which `manage.py check --deploy` is clean.


def proxy_ssl_header(name: str) -> tuple[str, str] | str | None:
    """Read "X-Forwarded-Proto,https" as Django wants it: ("HTTP_X_FORWARDED_PROTO", "https").

    Unset is None; a value that is not "header,value" is kept as written, for the system
    check mcmanager.E003 to reject.
    """
    raw = env_str(name).strip()
    if not raw:
        return None
    parts = [part.strip() for part in raw.split(",")]
    if len(parts) != 2 or not all(parts):
        return raw
    header = parts[0].upper().replace("-", "_")
    if not header.startswith("HTTP_"):
        header = "HTTP_" + header
    return header, parts[1]


SECURE_PROXY_SSL_HEADER = proxy_ssl_header("DJANGO_SECURE_PROXY_SSL_HEADER")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", False)
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")
SESSION_COOKIE_SECURE = env_bool("DJANGO_SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("DJANGO_CSRF_COOKIE_SECURE", False)
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"

# The debug page and error reports hide URLs with passwords (DATABASE_URL in the
# environment under runserver), not only the settings Django's own filter knows.
DEFAULT_EXCEPTION_REPORTER_FILTER = "mcmanager.debug.SecretHidingReporterFilter"

# --- dbtools: backups, retention, health ----------------------------------

MCMANAGER_BACKUP_DIR = Path(env_str("MCMANAGER_BACKUP_DIR", str(INSTANCE_DIR / "backups")))
# zstd, gzip or none.
MCMANAGER_BACKUP_COMPRESSION = env_str("MCMANAGER_BACKUP_COMPRESSION", "zstd")
# Retention applied after every successful backup; None means "keep everything".
MCMANAGER_KEEP_LAST = env_int("MCMANAGER_KEEP_LAST", None)
MCMANAGER_KEEP_DAILY = env_int("MCMANAGER_KEEP_DAILY", None)
MCMANAGER_KEEP_WEEKLY = env_int("MCMANAGER_KEEP_WEEKLY", None)
MCMANAGER_KEEP_MONTHLY = env_int("MCMANAGER_KEEP_MONTHLY", None)
# The health check fails when the newest verified backup is older than this.
MCMANAGER_BACKUP_MAX_AGE_HOURS = env_int("MCMANAGER_BACKUP_MAX_AGE_HOURS", 26)
# The health check warns when the backup directory's disk has less free space than this.
MCMANAGER_BACKUP_MIN_FREE_MB = env_int("MCMANAGER_BACKUP_MIN_FREE_MB", 500)
# Heartbeats: backup, backup --prune and restore --check ping URL/start, URL, URL/fail.
MCMANAGER_BACKUP_PING_URL = env_str("MCMANAGER_BACKUP_PING_URL", "")
# Offsite copies: s3://bucket/prefix, with the standard AWS_* variables (AWS_ENDPOINT_URL
# for S3-compatible servers). Empty: backups stay on this machine only.
MCMANAGER_OFFSITE_URL = env_str("MCMANAGER_OFFSITE_URL", "")
# Encryption: age public keys (age1..., comma separated) or a file of them; the private
# key file (age-keygen's) for verifying and restoring encrypted backups.
MCMANAGER_BACKUP_ENCRYPT_TO = env_str("MCMANAGER_BACKUP_ENCRYPT_TO", "")
MCMANAGER_BACKUP_DECRYPT_KEY_FILE = env_str("MCMANAGER_BACKUP_DECRYPT_KEY_FILE", "")
# Manifests are signed (HMAC-SHA256) with a key kept outside the backup directory:
# MCMANAGER_BACKUP_SIGNING_KEY (the key's text) if set, else the key file (created on
# first use, 0600). Old keys (texts, or files) still verify backups made before a rotation.
MCMANAGER_BACKUP_SIGNING_KEY = env_str("MCMANAGER_BACKUP_SIGNING_KEY")
MCMANAGER_BACKUP_SIGNING_KEY_FILE = Path(
    env_str("MCMANAGER_BACKUP_SIGNING_KEY_FILE") or str(INSTANCE_DIR / "backup_signing_key")
)
MCMANAGER_BACKUP_SIGNING_OLD_KEYS = env_list("MCMANAGER_BACKUP_SIGNING_OLD_KEYS", "")
MCMANAGER_BACKUP_SIGNING_OLD_KEY_FILES = [Path(p) for p in env_list("MCMANAGER_BACKUP_SIGNING_OLD_KEY_FILES", "")]
# validate --fix: the account that takes servers whose owner is gone (created if absent,
# never an admin); empty: such servers are only reported.
MCMANAGER_ORPHAN_OWNER = env_str("MCMANAGER_ORPHAN_OWNER", "orphaned_servers")
# maintain: SQLite is vacuumed only when at least this percentage of its pages is free.
MCMANAGER_VACUUM_FREE_PERCENT = env_int("MCMANAGER_VACUUM_FREE_PERCENT", 10)

# django-dbbackup: we use its connectors (not its commands: see INSTALLED_APPS); its storage
# (STORAGES["dbbackup"]) points at our backup dir. No DBBACKUP_STORAGE/DBBACKUP_STORAGE_OPTIONS: dbbackup 5 refuses to import with them.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "dbbackup": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MCMANAGER_BACKUP_DIR)},
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "dbtools": {
            "handlers": ["console"],
            "level": env_str("MCMANAGER_LOG_LEVEL", "WARNING"),
        },
        # django-health-check logs every failed check with a traceback at WARNING; a
        # failed check is an answer (in /health/ and the command), not a crash.
        "health_check": {"level": "ERROR"},
    },
}
