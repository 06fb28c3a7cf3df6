"""System checks for the project's own settings (ids mcmanager.E0xx)."""

from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.security, deploy=False)
def check_secret_key(app_configs, **kwargs):
    """Refuse to start in production without a real secret key, and anywhere with an unreadable key file."""
    key = settings.SECRET_KEY or ""
    missing = not key or key == getattr(settings, "MISSING_SECRET_KEY", None)
    if settings.DEBUG and not missing:
        return []
    if missing:
        return [
            Error(
                "DJANGO_SECRET_KEY is not set, nor DJANGO_SECRET_KEY_FILE to a readable, non-empty file"
                + ("." if settings.DEBUG else ", and DJANGO_DEBUG is off."),
                hint="Set DJANGO_SECRET_KEY to a long random value "
                "(python -c 'import secrets; print(secrets.token_urlsafe(50))') or DJANGO_SECRET_KEY_FILE "
                "to a file holding one, or set DJANGO_DEBUG=1 on a development machine." + _development_key_hint(),
                id="mcmanager.E001",
            )
        ]
    if len(key) < 50 or len(set(key)) < 5 or key.startswith("django-insecure-"):
        return [
            Error(
                "DJANGO_SECRET_KEY is insecure: it must be at least 50 characters "
                "with at least 5 distinct ones, and not a 'django-insecure-' key.",
                hint="Generate one: python -c 'import secrets; print(secrets.token_urlsafe(50))'",
                id="mcmanager.E002",
            )
        ]
    return []


def _development_key_hint() -> str:
    """Why the key that `make run` generated is not taken, when there is one."""
    key_file = getattr(settings, "DEVELOPMENT_SECRET_KEY_FILE", None)
    if key_file is None or not key_file.exists():
        return ""
    return (
        f" {key_file} is the development key generated with DJANGO_DEBUG=1: it is not used with "
        f"DEBUG off unless DJANGO_SECRET_KEY_FILE names it."
    )


@register(Tags.security)
def check_https_settings(app_configs, **kwargs):
    """Reject the HTTPS settings Django would only trip over at the first request (or not at all)."""
    errors = []
    header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if header is not None and not isinstance(header, tuple):
        errors.append(
            Error(
                f"DJANGO_SECURE_PROXY_SSL_HEADER must be 'header,value' (got {header!r}).",
                hint="Behind a proxy that sets X-Forwarded-Proto: DJANGO_SECURE_PROXY_SSL_HEADER=X-Forwarded-Proto,https "
                "(only when the proxy always sets or overwrites that header).",
                id="mcmanager.E003",
            )
        )
    hsts = getattr(settings, "SECURE_HSTS_SECONDS", 0)
    if not isinstance(hsts, int) or hsts < 0:
        errors.append(
            Error(
                f"DJANGO_SECURE_HSTS_SECONDS must be a whole number of seconds, 0 or more (got {hsts!r}).",
                hint="31536000 (a year) once HTTPS works everywhere; 0 (the default) sends no HSTS header.",
                id="mcmanager.E004",
            )
        )
    return errors


def refuse_insecure_start() -> None:
    """For the WSGI/ASGI entry points, which Django starts without system checks."""
    from django.core.exceptions import ImproperlyConfigured

    errors = check_secret_key(None)
    if errors:
        raise ImproperlyConfigured(f"{errors[0].id}: {errors[0].msg} {errors[0].hint}")
