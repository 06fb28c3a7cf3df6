"""System checks for the project's own settings (ids mcmanager.E0xx)."""

from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.security, deploy=False)
def check_secret_key(app_configs, **kwargs):
    """Refuse to start in production without a real secret key."""
    if settings.DEBUG:
        return []
    key = settings.SECRET_KEY or ""
    if not key or key == getattr(settings, "MISSING_SECRET_KEY", None):
        return [
            Error(
                "DJANGO_SECRET_KEY is not set and DJANGO_DEBUG is off.",
                hint="Set DJANGO_SECRET_KEY to a long random value "
                "(python -c 'import secrets; print(secrets.token_urlsafe(50))'), "
                "or set DJANGO_DEBUG=1 on a development machine.",
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


def refuse_insecure_start() -> None:
    """For the WSGI/ASGI entry points, which Django starts without system checks."""
    from django.core.exceptions import ImproperlyConfigured

    errors = check_secret_key(None)
    if errors:
        raise ImproperlyConfigured(f"{errors[0].id}: {errors[0].msg} {errors[0].hint}")
