"""Turn what people type for a time (`7d`, `yesterday`, `2024-05-07`) into ISO-8601 UTC.

The daemon only takes absolute times; relative ones are resolved here, against the local
clock and time zone, so `today` means the user's today, not UTC's.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

import click

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])(?:\s+ago)?$")
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_when(text: str, *, end_of_day: bool = False, now: datetime | None = None) -> str:
    """Resolve ``text`` to an ISO-8601 UTC string with a ``Z`` suffix.

    Accepted: ``now``; ``today``/``yesterday`` (local midnight); ``<n><unit>`` with unit
    s, m, h, d or w (that long before now, e.g. ``7d``, ``12h``, ``2w``); an ISO date or
    date-time (naive values are local time; ``Z`` or an offset is honoured).

    A calendar day (a bare date, ``today``, ``yesterday``) names its first millisecond, or
    with ``end_of_day`` its last one, so ``--until 2024-05-07`` includes all of that day.
    Raises ``ValueError`` with a one-line reason.
    """
    value = text.strip().lower()
    current = now.astimezone(UTC) if now is not None else datetime.now(UTC)
    if not value:
        raise ValueError("empty time")
    if value == "now":
        return format_utc(current)
    if value in ("today", "yesterday"):
        today = current.astimezone().date()
        day = today - timedelta(days=1) if value == "yesterday" else today
        return format_utc(_day_bound(day, end_of_day))
    match = _RELATIVE.match(value)
    if match:
        amount, unit = float(match.group(1)), match.group(2)
        return format_utc(current - timedelta(seconds=amount * _UNITS[unit]))
    if _DATE_ONLY.match(value):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not a valid date: {text!r}") from None
        return format_utc(_day_bound(day, end_of_day))
    iso = text.strip()
    if iso.endswith(("Z", "z")):
        iso = iso[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (use an ISO date or date-time, or 7d, 12h, 2w, "
            "yesterday, today, now)"
        ) from None
    # A naive date-time is what the user's wall clock said; astimezone() reads it as local.
    return format_utc(parsed.astimezone(UTC))


def _day_bound(day: date, end_of_day: bool) -> datetime:
    moment = datetime.combine(day, time.max if end_of_day else time.min)
    return moment.astimezone(UTC)


def format_utc(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond // 1000:03d}Z"


def to_local(text: str | None) -> str:
    """A protocol time (ISO UTC) shown as local wall-clock time to the minute."""
    if not text:
        return "-"
    iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return text
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


class When(click.ParamType):
    """A click type for --since/--until/--created-at; bad input is a usage error (exit 2)."""

    name = "when"

    def __init__(self, end_of_day: bool = False):
        self.end_of_day = end_of_day

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        try:
            return parse_when(str(value), end_of_day=self.end_of_day)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
