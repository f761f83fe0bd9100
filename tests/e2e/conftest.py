"""The `memory` CLI as a subprocess, sharing one daemon per test module."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from support import MemoryCLI, short_tempdir, stop_any_daemon

from memoryd.config import resolve_paths


@pytest.fixture(scope="module")
def memory() -> Iterator[MemoryCLI]:
    home = short_tempdir("mdcli")
    cli = MemoryCLI(home)
    # Start it first: the one-time "new data key" notice goes to this command's stderr.
    started = cli("daemon", "start")
    assert started.returncode == 0, started.stderr
    assert "new data key" in started.stderr and started.stdout.startswith("started memoryd")
    yield cli
    stop_any_daemon(resolve_paths({"MEMORYD_HOME": str(home)}))
    shutil.rmtree(home, ignore_errors=True)
