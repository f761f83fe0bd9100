"""Dates in a query become a time preference: "last week", "in May 2023", "3 days ago".

The preference is a window on ``created_at`` (the time a memory is about); memories inside
it get a boost in hybrid search. It is a preference, not a filter: `--since/--until` are
the filters. Windows are in UTC; "now" is the daemon's clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

MONTHS = {
    name: n
    for n, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
_MONTH = "|".join(sorted(MONTHS, key=len, reverse=True))
_MONTH_YEAR = re.compile(rf"\b(?:in\s+|during\s+)?({_MONTH})\.?,?\s+((?:19|20)\d\d)\b", re.I)
_YEAR = re.compile(r"\b(?:in|during|of|since)\s+((?:19|20)\d\d)\b", re.I)
_AGO = re.compile(
    r"\b(\d{1,3}|a|an|one|two|three|four|five|six)\s+(day|week|month|year)s?\s+ago\b", re.I
)
_RELATIVE = re.compile(r"\b(yesterday|today|(?:last|this|past)\s+(?:week|month|year))\b", re.I)
_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}


@dataclass(frozen=True)
class TimeWindow:
    since: datetime
    until: datetime
    phrase: str

    def contains(self, moment: datetime | None) -> bool:
        return moment is not None and self.since <= moment < self.until


def _month_start(year: int, month: int) -> datetime:
    return datetime(year + (month - 1) // 12, (month - 1) % 12 + 1, 1)


def time_window(query: str, now: datetime) -> TimeWindow | None:
    """The first date expression in ``query`` as a window, or None."""
    if m := _MONTH_YEAR.search(query):
        month, year = MONTHS[m.group(1).lower()], int(m.group(2))
        return TimeWindow(_month_start(year, month), _month_start(year, month + 1), m.group(0))
    if m := _YEAR.search(query):
        year = int(m.group(1))
        return TimeWindow(datetime(year, 1, 1), datetime(year + 1, 1, 1), m.group(0))
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if m := _AGO.search(query):
        raw = m.group(1).lower()
        count = _WORDS.get(raw) or int(raw)
        unit = {"day": 1, "week": 7, "month": 30, "year": 365}[m.group(2).lower()]
        centre = today - timedelta(days=count * unit)
        half = timedelta(days=max(1, unit // 2))
        return TimeWindow(centre - half, centre + half + timedelta(days=1), m.group(0))
    if m := _RELATIVE.search(query):
        phrase = " ".join(m.group(1).lower().split())
        week_start = today - timedelta(days=today.weekday())
        month_start = today.replace(day=1)
        windows = {
            "yesterday": (today - timedelta(days=1), today),
            "today": (today, today + timedelta(days=1)),
            "last week": (week_start - timedelta(days=7), week_start),
            "this week": (week_start, week_start + timedelta(days=7)),
            "past week": (today - timedelta(days=7), today + timedelta(days=1)),
            "last month": (_month_start(month_start.year, month_start.month - 1), month_start),
            "this month": (month_start, _month_start(month_start.year, month_start.month + 1)),
            "past month": (today - timedelta(days=30), today + timedelta(days=1)),
            "last year": (datetime(today.year - 1, 1, 1), datetime(today.year, 1, 1)),
            "this year": (datetime(today.year, 1, 1), datetime(today.year + 1, 1, 1)),
            "past year": (today - timedelta(days=365), today + timedelta(days=1)),
        }
        since, until = windows[phrase]
        return TimeWindow(since, until, m.group(0))
    return None
