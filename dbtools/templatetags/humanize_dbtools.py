"""Small filters for the health dashboard: 1,234,567 rows, 12.3 MiB, 2.4 s, 3.5 h.

Sizes, durations and ages read as in the CLI and everywhere else (dbtools.formatting);
the snapshot the dashboard renders carries plain numbers (bytes, milliseconds, seconds).
"""

from django import template

from dbtools.formatting import format_bytes, format_duration, human_age

register = template.Library()


@register.filter
def thousands(value) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return "–"


@register.filter
def bytes(value) -> str:  # noqa: A001 - the filter's name in templates
    """Integer bytes as IEC units: 12.3 MiB."""
    return format_bytes(value)


@register.filter
def duration(ms) -> str:
    """Milliseconds for people: 850 ms, 2.4 s, 3.1 min."""
    try:
        return format_duration(int(ms))
    except (TypeError, ValueError):
        return "–"


@register.filter
def age(seconds) -> str:
    """Seconds since something happened: 45 s, 12 min, 3.5 h, 2.0 days."""
    try:
        return human_age(int(seconds))
    except (TypeError, ValueError):
        return "–"
