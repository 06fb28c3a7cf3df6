"""Small filters for the health dashboard: 1,234,567 rows, 12.3 MiB, 3.5 h."""

from django import template

register = template.Library()


@register.filter
def thousands(value) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return "–"


@register.filter
def bytes(value) -> str:  # noqa: A001 - the filter's name in templates
    try:
        size = float(value)
    except (TypeError, ValueError):
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "–"  # pragma: no cover


@register.filter
def age(seconds) -> str:
    from dbtools.monitor import human_age

    try:
        return human_age(int(seconds))
    except (TypeError, ValueError):
        return "–"
