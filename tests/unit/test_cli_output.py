"""cli/output.py's terminal width: shutil.get_terminal_size's answer, without shutil."""

from __future__ import annotations

import pytest
from memory_cli.output import terminal_width


@pytest.mark.parametrize(("columns", "expected"), [("60", 60), ("200", 200)])
def test_columns_from_the_environment(columns: str, expected: int,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    assert terminal_width() == expected


@pytest.mark.parametrize("columns", [None, "", "0", "-5", "wide"])
def test_no_usable_width_falls_back_to_100(columns: str | None,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # pytest captures stdout, so sys.__stdout__ is no terminal here (or its size fails).
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    import shutil

    monkeypatch.setattr("sys.__stdout__", None)
    assert terminal_width() == 100
    # ... which is what shutil says with no terminal to ask and the same fallback.
    assert shutil.get_terminal_size((100, 24)).columns == 100
