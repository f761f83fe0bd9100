"""`memory daemon ...`, autostart, notices and the passphrase commands, each test with its own
fresh MEMORYD_HOME (the conftest fixture) and a real daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from memoryd.client import is_running
from memoryd.config import Paths

LOCKED = "error: memoryd is locked: run `memory unlock`\n"


def memory(*args: str, input: str | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memory_cli.main", *args], input=input,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # The daemon outlives the CLI that spawned it, so init reaps it, maybe not at once:
    # an exited, unreaped process is a zombie ("Z") that still answers kill(pid, 0).
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_start_status_stop(memoryd_home: Path) -> None:
    proc = memory("daemon", "status")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: memoryd is not running")

    proc = memory("daemon", "start")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("started memoryd (pid ")
    assert "new data key" in proc.stderr  # the daemon's one-time notice
    pid = int(proc.stdout.split("pid ")[1].rstrip(")\n"))

    status = json.loads(memory("daemon", "status", "--json").stdout)
    assert status["pid"] == pid and status["locked"] is False
    again = memory("daemon", "start", "--json")
    assert json.loads(again.stdout) == {"started": False, "pid": pid,
                                        "socket": status["socket"]}
    assert "new data key" not in again.stderr  # delivered once
    human = memory("daemon", "status")
    assert human.returncode == 0 and str(pid) in human.stdout

    logs = memory("daemon", "logs", "-n", "5", "--json")
    assert logs.returncode == 0, logs.stderr
    assert len(json.loads(logs.stdout)["lines"]) <= 5

    proc = memory("daemon", "stop", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"stopped": True, "pid": pid}
    assert not pid_alive(pid)  # stop returns only once the process is gone
    assert memory("daemon", "status").returncode == 1
    assert memory("daemon", "stop").stdout == "memoryd is not running\n"


def test_commands_start_the_daemon_on_demand(paths: Paths) -> None:
    assert not is_running(paths)
    proc = memory("add", "first memory")
    assert proc.returncode == 0, proc.stderr
    assert "new data key" in proc.stderr
    assert is_running(paths)
    assert (paths.runtime_dir / "memoryd.pid").exists()
    assert memory("status", "--json").returncode == 0


def test_daemon_run_in_the_foreground(paths: Paths) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "memory_cli.main", "daemon", "run"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not is_running(paths):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        status = json.loads(memory("daemon", "status", "--json").stdout)
        assert status["pid"] == proc.pid
        stopped = memory("daemon", "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout == f"stopped memoryd (pid {proc.pid})\n"
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_passphrase_lock_and_unlock(paths: Paths, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("correct horse battery staple\n")
    wrong = tmp_path / "wrong"
    wrong.write_text("not it\n")
    added = memory("add", "Kim's gate code is 1234", "--json")
    assert added.returncode == 0, added.stderr
    memory_id = json.loads(added.stdout)["id"]

    proc = memory("key", "passwd", "--passphrase-file", str(secret), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["protected"] is True
    assert json.loads(memory("status", "--json").stdout)["key"]["protected"] is True

    assert memory("daemon", "stop").returncode == 0
    proc = memory("get", memory_id)  # starts the daemon again: locked now
    assert proc.returncode == 1
    assert proc.stderr.endswith(LOCKED)
    proc = memory("get", memory_id, "--json")
    assert json.loads(proc.stdout)["error"]["code"] == "locked"
    assert json.loads(memory("status", "--json").stdout)["locked"] is True
    assert memory("status").returncode == 0

    proc = memory("unlock", "--passphrase-file", str(wrong), "--json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["error"]["code"] == "bad_passphrase"
    proc = memory("unlock", env={"MEMORYD_PASSPHRASE": "correct horse battery staple"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "unlocked\n"
    assert json.loads(memory("get", memory_id, "--json").stdout)["content"].startswith("Kim")

    proc = memory("key", "passwd", "--remove", "--old-passphrase-file", str(secret))
    assert proc.returncode == 0, proc.stderr
    assert "removed" in proc.stdout
    assert memory("daemon", "stop").returncode == 0
    proc = memory("get", memory_id)  # plain key file again: no unlock needed
    assert proc.returncode == 0, proc.stderr
