"""How figures read, the same in the CLI, the dashboard and JSON.

- An exception in one line: ``first_line(exc)`` (its class name when the message is empty).
- Byte sizes: IEC units (1024-based) spelled B, KiB, MiB, GiB, TiB: ``format_bytes(n)``.
- Durations: in dataclasses and JSON always ``duration_ms``, an int of milliseconds
  (``to_ms(seconds)``); for people ``format_duration(ms)`` ("850 ms", "2.4 s", "3.1 min").
- Ages: ``human_age(seconds)`` ("45 s", "12 min", "3.5 h", "2.0 days").
"""

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def first_line(exc: BaseException | str) -> str:
    """The first non-blank line of an exception's message, or its class name when it has none."""
    text = exc if isinstance(exc, str) else str(exc)
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return "" if isinstance(exc, str) else exc.__class__.__name__


def format_bytes(n: float | int | None) -> str:
    """1,536 -> "1.5 KiB"; whole bytes below 1 KiB; "–" for no figure."""
    if n is None:
        return "–"
    try:
        size = float(n)
    except (TypeError, ValueError):
        return "–"
    for unit in _UNITS:
        if abs(size) < 1024 or unit == _UNITS[-1]:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "–"  # pragma: no cover - the loop always returns


def to_ms(seconds: float) -> int:
    """Seconds (as time.monotonic() differences give them) as the int milliseconds JSON carries."""
    return int(round(seconds * 1000))


def format_duration(ms: float | int) -> str:
    """850 -> "850 ms", 2400 -> "2.4 s", 186000 -> "3.1 min"."""
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 90_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms / 60_000:.1f} min"


def human_age(seconds: int) -> str:
    """45 s, 12 min, 3.5 h, 2.0 days."""
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
