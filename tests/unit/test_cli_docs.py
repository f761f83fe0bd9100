"""docs/cli.md cannot drift from the CLI: every command is documented and has help."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from memory_cli.main import cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def walk(group: click.Group, prefix: str = "memory") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        yield path, command
        if isinstance(command, click.Group):
            yield from walk(command, path)


COMMANDS = list(walk(cli))


def section(path: str) -> str:
    """The text under the `### `path`` heading, up to the next heading."""
    text = DOC.read_text()
    match = re.search(rf"^### `{re.escape(path)}`\n(.*?)(?=^#{{2,3}} |\Z)", text, re.S | re.M)
    assert match, f"docs/cli.md has no section for `{path}`"
    return match.group(1)


def test_the_walk_finds_every_command() -> None:
    paths = {path for path, _ in COMMANDS}
    assert {"memory add", "memory search", "memory import", "memory export", "memory rm",
            "memory config show", "memory key passwd", "memory daemon start",
            "memory daemon logs", "memory unlock"} <= paths
    assert len(paths) == 22


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[p for p, _ in COMMANDS])
def test_command_has_help_and_a_doc_section(path: str, command: click.Command) -> None:
    assert command.help and command.help.strip(), f"{path} has no help text"
    assert "Example" in command.help, f"{path}: its help shows no example"
    body = section(path)
    assert body.strip()


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[p for p, _ in COMMANDS])
def test_every_option_is_documented(path: str, command: click.Command) -> None:
    body = section(path)
    for param in command.params:
        if not isinstance(param, click.Option) or param.name == "help":
            continue
        if param.name == "as_json":
            continue  # documented once, under Conventions
        longest = max(param.opts, key=len)
        assert longest in body, f"{path}: {longest} is not in its docs/cli.md section"
        assert param.help, f"{path}: {longest} has no help"


def test_group_help_teaches_the_tool() -> None:
    text = cli.help or ""
    for needle in ("memory add", "memory search", "memory import", "MEMORYD_HOME",
                   "memory config show", "--json"):
        assert needle in text
