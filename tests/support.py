"""Helpers shared by the tests: paths, real daemon processes, the CLI as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from memoryd.client import Client, is_running
from memoryd.config import Paths

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = REPO.parent / "shared" / "models" / "all-MiniLM-L6-v2-int8"
MODEL_DIR = Path(os.environ.get("MEMORYD_MODEL_DIR") or DEFAULT_MODEL_DIR)


def uid(n: int) -> str:
    """A canonical memory id ordered by ``n`` (the RAM indexes hold ids as 16 bytes and
    take no other)."""
    return f"00000000-0000-7000-8000-{n:012x}"


def short_tempdir(prefix: str = "md") -> Path:
    # Unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer.
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


# Daemon settings that put vector search on the encrypted LanceDB index at any size (the
# tier big stores use), so that small tests exercise it.
INDEX_TIER = {"MEMORYD_SEARCH_RAM_MAX": "0"}
# The index tier with lexical search and ranking in SQL too: what every search of a store
# above search.lexical_ram_max runs on.
SQL_TIER = {**INDEX_TIER, "MEMORYD_SEARCH_LEXICAL_RAM_MAX": "0"}
# The index tier with a flush delay long enough that a kill -9 right after a write
# surely lands before the write reaches the index, however slow the machine.
UNFLUSHED_INDEX_TIER = {**INDEX_TIER, "MEMORYD_SEARCH_INDEX_FLUSH_DELAY_MS": "3000"}
# The index tier with its ANN index trained from the first vector on.
ANN_TIER = {**INDEX_TIER, "MEMORYD_SEARCH_ANN_MIN_ROWS": "1"}


class DaemonProcess:
    """A real memoryd on a real socket, run as a child process of the test."""

    def __init__(self, paths: Paths, env: dict[str, str] | None = None):
        self.paths = paths
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> DaemonProcess:
        env = dict(os.environ)
        env.update(self.env)
        self.stderr_path = self.paths.log_dir.parent / "daemon-test.err"
        self.stderr_path.parent.mkdir(parents=True, exist_ok=True)
        self._stderr = open(self.stderr_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "memoryd", "run"], env=env,
            stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr,
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if is_running(self.paths):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"memoryd exited: {self.stderr_text()[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError("memoryd did not start in time")

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def client(self, **kwargs: object) -> Client:
        return Client(self.paths, autostart=False, **kwargs).connect()  # type: ignore[arg-type]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        code = self.proc.returncode
        self.proc = None
        return code

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> DaemonProcess:
        self.stop()
        return self.start()


def stop_any_daemon(paths: Paths) -> None:
    """Stop a daemon a test left behind (e.g. one the CLI auto-started)."""
    pid_file = paths.runtime_dir / "memoryd.pid"
    if not pid_file.exists():
        return
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGTERM)
    except (ValueError, OSError):
        return
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass




class MemoryCLI:
    """Runs `memory ...` in a subprocess with one MEMORYD_HOME."""

    def __init__(self, home: Path):
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
        self.env.update(MEMORYD_HOME=str(home), MEMORYD_MODEL_DIR=str(MODEL_DIR),
                        COLUMNS="200")

    def __call__(self, *args: str, input: str | None = None,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "memory_cli.main", *args], input=input,
                              capture_output=True, text=True, timeout=120,
                              env={**self.env, **(env or {})})

    def json(self, *args: str, input: str | None = None) -> Any:
        proc = self(*args, "--json", input=input)
        assert proc.returncode == 0, proc.stderr + proc.stdout
        return json.loads(proc.stdout)

    def contents(self, namespace: str) -> list[str]:
        return sorted(m["content"] for m in self.json("list", "-n", namespace)["memories"])


def wait_status(client: Client, predicate: Any, timeout: float = 30.0) -> dict[str, Any]:
    """Poll ``store.status`` until ``predicate`` holds (background work has caught up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.status()
        if predicate(status):
            return status
        time.sleep(0.05)
    raise AssertionError(f"status never matched: {client.status()}")
