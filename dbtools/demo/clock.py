"""Timestamps of the demo data: strings as the engine stores them, a fixed number of seconds before an anchor."""

import datetime as dt
from functools import cached_property

from .spec import YEARS_OF_HISTORY


class Clock:
    """Timestamps as the strings each engine stores, ``seconds`` before a fixed anchor.

    ``suffix`` ends every timestamp (the engine's ``bulk_timestamp_suffix``: "+00" where the
    column holds a time zone). ``span`` is the history the data covers, in seconds.
    """

    def __init__(self, anchor: dt.datetime, suffix: str):
        self.anchor = anchor
        self.suffix = suffix
        self.span = YEARS_OF_HISTORY * 365 * 86400
        # The anchor's second of its day: ``ago()`` counts back from it.
        self.base = anchor.hour * 3600 + anchor.minute * 60 + anchor.second

    # Precomputed day and time-of-day strings, made on first use (SQLite formats its own):
    # formatting a million datetimes one by one would be most of the generator's time.
    @cached_property
    def days(self) -> list[str]:
        """ "YYYY-MM-DD" of the anchor's day (last item) and of every day before it (``days[-1 - n]``)."""
        return [(self.anchor - dt.timedelta(days=d)).strftime("%Y-%m-%d") for d in range(YEARS_OF_HISTORY * 365 + 2)]

    @cached_property
    def times_of_day(self) -> list[str]:
        """ "HH:MM:SS" plus the suffix, for every second of a day."""
        # Built from hours and minute:second pairs: 86,400 formatted strings took a fifth of a second.
        minutes_seconds = [f":{m:02d}:{s:02d}{self.suffix}" for m in range(60) for s in range(60)]
        return [h + ms for h in [f"{h:02d}" for h in range(24)] for ms in minutes_seconds]

    def ago(self, seconds: int) -> str:
        """The timestamp ``seconds`` (>= 0) before the anchor."""
        t = self.base - seconds
        return f"{self.days[-(t // 86400)]} {self.times_of_day[t % 86400]}"

    def ago_once(self, seconds: int) -> str:
        """The same as ``ago()``, formatted on its own: for a few thousand rows, no tables to build."""
        return (self.anchor - dt.timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S") + self.suffix


def default_anchor() -> dt.datetime:
    """The start of the current UTC day: timestamps are never in the future and a seed reproduces its data all day."""
    now = dt.datetime.now(dt.UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)
