"""The shared `--json` option, the one JSON renderer, error rendering and small table helpers.

In JSON mode a command prints exactly one JSON document on stdout (or JSON lines for
`export`), and errors become ``{"error": {"code": "<name>", "message": "..."}}``. In human
mode output is aligned text; click.echo drops colour when the stream is not a terminal.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

_JSON_KEY = "memory_cli.json"


def _remember_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    # ctx.meta is shared by every context in the chain, so the group's error handler
    # (and `memory --json cmd`) sees what the leaf command was asked for.
    if value:
        ctx.meta[_JSON_KEY] = True


def json_option(func: F) -> F:
    """Add `--json` to a command; read it back with ``wants_json()``."""
    return click.option(
        "--json", "as_json", is_flag=True, expose_value=False, is_eager=True,
        callback=_remember_json,
        help="Print JSON on stdout instead of text (errors too).",
    )(func)


def wants_json(ctx: click.Context | None = None) -> bool:
    ctx = ctx or click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get(_JSON_KEY))


def dump_json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, default=str)


def render(data: Any, human: Callable[[Any], None]) -> None:
    """Print ``data`` as JSON in JSON mode, otherwise hand it to ``human``."""
    if wants_json():
        click.echo(dump_json(data))
    else:
        human(data)


def error_payload(name: str, message: str) -> dict[str, Any]:
    return {"error": {"code": name, "message": message}}


def fail(name: str, message: str, code: int = 1) -> NoReturn:
    """Report an error the way the current mode wants it, then exit with ``code``."""
    if wants_json():
        click.echo(dump_json(error_payload(name, message)))
    else:
        click.echo(f"{click.style('error:', fg='red', bold=True)} {message}", err=True)
    raise click.exceptions.Exit(code)


def warn(message: str) -> None:
    click.echo(f"{click.style('note:', fg='yellow')} {message}", err=True)


# -- human rendering helpers ---------------------------------------------------------------

def terminal_width() -> int:
    """$COLUMNS, else the terminal's width, else 100: shutil.get_terminal_size's answer,
    without importing shutil (which brings lzma and bz2: ~5 ms of a `memory search`)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    stdout = sys.__stdout__
    if columns <= 0 and stdout is not None:
        try:
            columns = os.get_terminal_size(stdout.fileno()).columns
        except (ValueError, OSError):  # not a terminal, or a closed one
            columns = 0
    return columns if columns > 0 else 100


def one_line(text: str, width: int) -> str:
    """Collapse white space and cut to ``width`` characters, marking the cut with '…'."""
    flat = " ".join(str(text).split())
    if width <= 1:
        return flat[:max(width, 0)]
    return flat if len(flat) <= width else flat[: width - 1] + "…"


Style = dict[str, Any] | None


def format_table(rows: Sequence[Sequence[str]], headers: Sequence[str] | None = None,
                 styles: Sequence[Style] | None = None, fit_last: bool = True) -> list[str]:
    """Rows as aligned lines (header first); the last column is cut to the terminal width."""
    all_rows = [list(map(str, r)) for r in rows]
    if headers:
        all_rows.insert(0, list(headers))
    if not all_rows:
        return []
    ncols = max(len(r) for r in all_rows)
    for r in all_rows:
        r.extend([""] * (ncols - len(r)))
    widths = [max(len(r[i]) for r in all_rows) for i in range(ncols - 1)]
    lead = sum(widths) + 2 * (ncols - 1)
    last_width = max(terminal_width() - lead - 1, 20)
    lines = []
    for index, r in enumerate(all_rows):
        is_header = bool(headers) and index == 0
        cells = []
        for i, cell in enumerate(r):
            if i < ncols - 1:
                text = cell.ljust(widths[i])
            else:
                text = one_line(cell, last_width) if fit_last and not is_header else cell
            # Style after padding: escape codes must not count towards the column width.
            if is_header:
                text = click.style(text, bold=True)
            elif styles and i < len(styles) and (style := styles[i]):
                text = click.style(text, **style)
            cells.append(text)
        lines.append("  ".join(cells).rstrip())
    return lines


def table(rows: Sequence[Sequence[str]], headers: Sequence[str] | None = None,
          styles: Sequence[Style] | None = None, fit_last: bool = True) -> None:
    for line in format_table(rows, headers, styles, fit_last):
        click.echo(line)


def fields(pairs: Sequence[tuple[str, Any]]) -> None:
    """Print `name  value` lines with the names aligned."""
    if not pairs:
        return
    width = max(len(name) for name, _ in pairs)
    for name, value in pairs:
        click.echo(f"{click.style(name.ljust(width), fg='cyan')}  {value}")


def human_bytes(size: int | float | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
