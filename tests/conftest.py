"""Shared fixtures: every test gets its own MEMORYD_HOME; daemons are real processes."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import MODEL_DIR, DaemonProcess, short_tempdir, stop_any_daemon

from memoryd.client import Client
from memoryd.config import Paths, resolve_paths


@pytest.fixture(autouse=True)
def memoryd_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = short_tempdir()
    monkeypatch.setenv("MEMORYD_HOME", str(home))
    monkeypatch.setenv("MEMORYD_MODEL_DIR", str(MODEL_DIR))
    for name in list(os.environ):
        if name.startswith("MEMORYD_") and name not in {"MEMORYD_HOME", "MEMORYD_MODEL_DIR"}:
            monkeypatch.delenv(name)
    yield home
    stop_any_daemon(resolve_paths({"MEMORYD_HOME": str(home)}))
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def paths(memoryd_home: Path) -> Paths:
    return resolve_paths({"MEMORYD_HOME": str(memoryd_home)})


@pytest.fixture
def daemon(paths: Paths) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(paths).start()
    yield proc
    proc.stop()


@pytest.fixture
def client(daemon: DaemonProcess) -> Iterator[Client]:
    c = daemon.client(client_name="pytest")
    yield c
    c.close()


@pytest.fixture
def make_daemon(paths: Paths) -> Iterator[type[DaemonProcess]]:
    """Build extra daemons on the test's home (each stopped at teardown)."""
    made: list[DaemonProcess] = []

    def factory(env: dict[str, str] | None = None) -> DaemonProcess:
        proc = DaemonProcess(paths, env)
        made.append(proc)
        return proc

    yield factory  # type: ignore[misc]
    for proc in made:
        proc.stop()
