"""System checks for the dbtools settings (ids dbtools.E0xx / W0xx), run at start-up.

The settings are read from the environment by mcmanager/settings.py; a malformed
integer arrives here as -1, so every "must be a positive number" rule also catches typos.
"""

import os

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from .backups import parse_url
from .encryption import parse_recipients
from .signing import MIN_KEY_LENGTH, key_file_inside

# The checks the operations commands (backup, restore, validate, dbstats) run before
# they start: their own settings and the secret key (mcmanager.E001/E002). Not the URL,
# admin and template checks, which import every view for a cron job that serves no page:
# a fifth of the start-up of a command that is compared with psql and mariadb-dump.
OPERATIONS_CHECKS = [Tags.security, "dbtools"]
COMPRESSIONS = ("zstd", "gzip", "none")
KEEP_SETTINGS = ("MCMANAGER_KEEP_LAST", "MCMANAGER_KEEP_DAILY", "MCMANAGER_KEEP_WEEKLY", "MCMANAGER_KEEP_MONTHLY")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(name: str, value) -> str:
    """What the operator wrote (the environment), else the setting's value."""
    raw = os.environ.get(name)
    return repr(raw) if raw is not None and raw.strip() != str(value) else repr(value)


@register("dbtools")
def check_dbtools_settings(app_configs, **kwargs):
    """Reject nonsense in the backup, retention and health settings, each with its own id."""
    errors = []
    max_age = getattr(settings, "MCMANAGER_BACKUP_MAX_AGE_HOURS", 26)
    if not _is_int(max_age) or max_age < 1:
        errors.append(
            Error(
                f"MCMANAGER_BACKUP_MAX_AGE_HOURS must be a whole number of hours, at least 1 (got {_shown('MCMANAGER_BACKUP_MAX_AGE_HOURS', max_age)}).",
                hint="The health check fails when the newest verified backup is older than this; "
                "26 (a nightly backup plus slack) is the default.",
                id="dbtools.E001",
            )
        )
    elif max_age > 24 * 31:
        errors.append(
            Warning(
                f"MCMANAGER_BACKUP_MAX_AGE_HOURS is {max_age}: a backup over a month old would still count as fresh.",
                hint="Back up at least daily and keep the threshold near 26 hours.",
                id="dbtools.W001",
            )
        )
    compression = getattr(settings, "MCMANAGER_BACKUP_COMPRESSION", "zstd")
    if compression not in COMPRESSIONS:
        errors.append(
            Error(
                f"MCMANAGER_BACKUP_COMPRESSION must be one of {', '.join(COMPRESSIONS)} (got {compression!r}).",
                hint="zstd is the default: fast and small.",
                id="dbtools.E002",
            )
        )
    for name in KEEP_SETTINGS:
        value = getattr(settings, name, None)
        if value is not None and (not _is_int(value) or value < 0):
            errors.append(
                Error(
                    f"{name} must be a whole number, 0 or more, or unset (got {_shown(name, value)}).",
                    hint="Unset keeps everything; 7 for MCMANAGER_KEEP_DAILY keeps one backup for each of 7 days.",
                    id="dbtools.E003",
                )
            )
    min_free = getattr(settings, "MCMANAGER_BACKUP_MIN_FREE_MB", 500)
    if not _is_int(min_free) or min_free < 0:
        errors.append(
            Error(
                f"MCMANAGER_BACKUP_MIN_FREE_MB must be a whole number of megabytes, 0 or more (got {_shown('MCMANAGER_BACKUP_MIN_FREE_MB', min_free)}).",
                hint="The health check warns when the backup disk has less free space than this; 500 is the default.",
                id="dbtools.E004",
            )
        )
    ping = getattr(settings, "MCMANAGER_BACKUP_PING_URL", "") or ""
    if ping and not ping.strip().lower().startswith(("http://", "https://")):
        errors.append(
            Error(
                "MCMANAGER_BACKUP_PING_URL must be an http:// or https:// URL (got a value that is not).",
                hint="The URL your cron monitor gives you, e.g. https://hc-ping.com/<uuid>; unset it to send no heartbeats.",
                id="dbtools.E010",
            )
        )
    errors += _offsite_and_encryption_errors()
    errors += _signing_key_errors()
    return errors


def _offsite_and_encryption_errors() -> list:
    """dbtools.E011-E014: the offsite URL and its credentials, the age keys."""

    errors = []
    offsite = (getattr(settings, "MCMANAGER_OFFSITE_URL", "") or "").strip()
    if offsite:
        try:
            parse_url(offsite)
        except ValueError as exc:
            errors.append(
                Error(
                    f"MCMANAGER_OFFSITE_URL: {exc}.",
                    hint="For example s3://my-bucket/mcmanager; unset it to keep backups on this machine only.",
                    id="dbtools.E011",
                )
            )
        if not (os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY")) and not (
            os.environ.get("AWS_PROFILE") or os.environ.get("AWS_SHARED_CREDENTIALS_FILE")
        ):
            errors.append(
                Error(
                    "MCMANAGER_OFFSITE_URL is set but no credentials are: AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) are missing.",
                    hint="Set the bucket's access key in the environment of the backup's cron job.",
                    id="dbtools.E012",
                )
            )
    try:
        parse_recipients(getattr(settings, "MCMANAGER_BACKUP_ENCRYPT_TO", "") or "")
    except ValueError as exc:
        errors.append(
            Error(
                f"MCMANAGER_BACKUP_ENCRYPT_TO: {exc}.",
                hint="age public keys start with age1 (age-keygen -y KEYFILE prints one); "
                "several are separated by commas, or listed in a file, one a line.",
                id="dbtools.E013",
            )
        )
    key_file = (getattr(settings, "MCMANAGER_BACKUP_DECRYPT_KEY_FILE", "") or "").strip()
    if key_file and not os.access(os.path.expanduser(key_file), os.R_OK):
        errors.append(
            Error(
                f"MCMANAGER_BACKUP_DECRYPT_KEY_FILE {key_file} cannot be read.",
                hint="The file age-keygen wrote (AGE-SECRET-KEY-1...), readable by the user running manage.py.",
                id="dbtools.E014",
            )
        )
    return errors


def _signing_key_errors() -> list:
    """The signing key must not live with the backups, and a key given as text must be long enough."""

    errors = []
    inside = key_file_inside(settings.MCMANAGER_BACKUP_DIR)
    if inside is not None:
        errors.append(
            Error(
                f"The backup signing key file {inside} is inside MCMANAGER_BACKUP_DIR ({settings.MCMANAGER_BACKUP_DIR}).",
                hint="Whoever can write a backup could then sign one. Keep the key elsewhere "
                "(MCMANAGER_BACKUP_SIGNING_KEY_FILE; the default is in the instance directory).",
                id="dbtools.E005",
            )
        )
    texts = [("MCMANAGER_BACKUP_SIGNING_KEY", settings.MCMANAGER_BACKUP_SIGNING_KEY)]
    texts += [("MCMANAGER_BACKUP_SIGNING_OLD_KEYS", t) for t in settings.MCMANAGER_BACKUP_SIGNING_OLD_KEYS]
    for name, text in texts:
        if text and len(text.strip()) < MIN_KEY_LENGTH:
            errors.append(
                Error(
                    f"{name} holds a key of {len(text.strip())} characters; a signing key needs at least {MIN_KEY_LENGTH}.",
                    hint='Generate one with: python -c "import secrets; print(secrets.token_urlsafe(32))"',
                    id="dbtools.E006",
                )
            )
    return errors
