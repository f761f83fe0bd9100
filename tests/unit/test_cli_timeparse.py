"""Relative and absolute times typed on the command line become ISO-8601 UTC."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import click
import pytest
from memory_cli.timeparse import When, format_utc, parse_when, to_local

NOW = datetime(2024, 5, 7, 13, 45, 30, 250000, tzinfo=UTC)


@pytest.fixture
def tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Set the process time zone (UTC to start with); restored afterwards."""

    def set_tz(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    set_tz("UTC")
    yield set_tz
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(("text", "expected"), [
    ("now", "2024-05-07T13:45:30.250Z"),
    ("30s", "2024-05-07T13:45:00.250Z"),
    ("15m", "2024-05-07T13:30:30.250Z"),
    ("12h", "2024-05-07T01:45:30.250Z"),
    ("7d", "2024-04-30T13:45:30.250Z"),
    ("2w", "2024-04-23T13:45:30.250Z"),
    ("1.5d", "2024-05-06T01:45:30.250Z"),
    ("7d ago", "2024-04-30T13:45:30.250Z"),
    (" 7D ", "2024-04-30T13:45:30.250Z"),
    ("today", "2024-05-07T00:00:00.000Z"),
    ("yesterday", "2024-05-06T00:00:00.000Z"),
    ("2024-05-01", "2024-05-01T00:00:00.000Z"),
    ("2024-05-01T10:20", "2024-05-01T10:20:00.000Z"),
    ("2024-05-01T10:20:30Z", "2024-05-01T10:20:30.000Z"),
    ("2024-05-01T10:20:30+02:00", "2024-05-01T08:20:30.000Z"),
    ("2024-05-01 10:20:30.123456", "2024-05-01T10:20:30.123Z"),
])
def test_parse_when_in_utc(tz: Callable[[str], None], text: str, expected: str) -> None:
    assert parse_when(text, now=NOW) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("today", "2024-05-07T23:59:59.999Z"),
    ("yesterday", "2024-05-06T23:59:59.999Z"),
    ("2024-05-01", "2024-05-01T23:59:59.999Z"),
    ("7d", "2024-04-30T13:45:30.250Z"),  # a span is an instant, not a day
])
def test_end_of_day_for_until(tz: Callable[[str], None], text: str, expected: str) -> None:
    assert parse_when(text, end_of_day=True, now=NOW) == expected


def test_local_days_and_naive_times_follow_the_time_zone(tz: Callable[[str], None]) -> None:
    tz("America/New_York")  # UTC-4 in May
    assert parse_when("today", now=NOW) == "2024-05-07T04:00:00.000Z"
    assert parse_when("yesterday", now=NOW) == "2024-05-06T04:00:00.000Z"
    assert parse_when("2024-05-01T10:00", now=NOW) == "2024-05-01T14:00:00.000Z"
    assert parse_when("2024-05-01T10:00Z", now=NOW) == "2024-05-01T10:00:00.000Z"
    # 02:00 UTC on the 7th is still the 6th in New York.
    early = datetime(2024, 5, 7, 2, 0, tzinfo=UTC)
    assert parse_when("today", now=early) == "2024-05-06T04:00:00.000Z"
    assert to_local("2024-05-07T13:45:00.000Z") == "2024-05-07 09:45"


@pytest.mark.parametrize("text", ["", "soon", "7x", "d7", "-7d", "2024-13-01", "2024-05-07T25:00",
                                  "last week"])
def test_bad_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_when(text, now=NOW)


def test_click_type_turns_bad_input_into_a_usage_error() -> None:
    with pytest.raises(click.BadParameter, match="not a time"):
        When().convert("soon", None, None)
    assert When().convert("2024-05-01T00:00:00Z", None, None) == "2024-05-01T00:00:00.000Z"


def test_format_utc_keeps_milliseconds() -> None:
    assert format_utc(NOW) == "2024-05-07T13:45:30.250Z"
