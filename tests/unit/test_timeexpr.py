from datetime import datetime

import pytest

from memoryd.search.timeexpr import time_window

NOW = datetime(2026, 11, 20, 15, 30)  # a Friday


@pytest.mark.parametrize(
    ("query", "since", "until"),
    [
        ("what did we eat in May 2023?", datetime(2023, 5, 1), datetime(2023, 6, 1)),
        ("trip plans for dec 2025", datetime(2025, 12, 1), datetime(2026, 1, 1)),
        ("meetings in 2024", datetime(2024, 1, 1), datetime(2025, 1, 1)),
        ("what happened yesterday", datetime(2026, 11, 19), datetime(2026, 11, 20)),
        ("notes from last week", datetime(2026, 11, 9), datetime(2026, 11, 16)),
        ("bills this month", datetime(2026, 11, 1), datetime(2026, 12, 1)),
        ("books I read last month", datetime(2026, 10, 1), datetime(2026, 11, 1)),
        ("the party last year", datetime(2025, 1, 1), datetime(2026, 1, 1)),
        ("that call two weeks ago", datetime(2026, 11, 3), datetime(2026, 11, 10)),
    ],
)
def test_windows(query, since, until):
    window = time_window(query, NOW)
    assert window is not None and (window.since, window.until) == (since, until)


@pytest.mark.parametrize("query", ["may I borrow the car", "error 2023 on deploy",
                                   "what is alice allergic to"])
def test_no_window(query):
    assert time_window(query, NOW) is None
