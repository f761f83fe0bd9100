"""The one Python client of memoryd: used by the CLI, the MCP server and the tests.

Imports nothing heavy (no engine): a socket, json, and the paths from ``memoryd.config``.
If no daemon answers, ``Client`` starts one (unless ``autostart=False``) and waits for it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from memoryd import __version__
from memoryd.config import Paths, resolve_paths
from memoryd.errors import CODES, ClientError, MemorydError

START_TIMEOUT_S = 60.0
_READ_CHUNK = 1 << 16


class RemoteError(MemorydError):
    """An error answered by the daemon; ``code`` and ``name`` are the protocol's."""

    def __init__(self, code: int, message: str, data: dict[str, Any] | None = None):
        super().__init__(message, code=code, data=data)
        self._name = (data or {}).get("name")

    @property
    def name(self) -> str:
        return self._name or super().name


class Client:
    def __init__(
        self,
        paths: Paths | None = None,
        *,
        autostart: bool = True,
        timeout: float | None = 120.0,
        client_name: str = f"memoryd-client/{__version__}",
    ):
        self.paths = paths or resolve_paths()
        self.autostart = autostart
        self.timeout = timeout
        self.client_name = client_name
        self.started_daemon = False
        self.notices: list[str] = []
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._ids = itertools.count(1)

    # -- connection -------------------------------------------------------------------

    def connect(self) -> Client:
        if self._sock is not None:
            return self
        try:
            self._sock = self._open()
        except OSError:
            if not self.autostart:
                raise ClientError(
                    f"memoryd is not running (no answer on {self.paths.socket}); "
                    "start it with `memory daemon start`"
                ) from None
            start_daemon(self.paths)
            self.started_daemon = True
            self._sock = self._open()
        hello = self.call("rpc.hello", {"client": self.client_name})
        self.notices.extend(hello.get("notices") or [])
        return self

    def _open(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.paths.socket))
        except OSError:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
            self._buffer = b""

    def __enter__(self) -> Client:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls ------------------------------------------------------------------------

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        request_id = next(self._ids)
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            request["params"] = {k: v for k, v in params.items() if v is not None}
        line = json.dumps(request, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        try:
            self._sock.sendall(line)
            reply = self._read_line()
        except TimeoutError:
            self.close()
            raise ClientError(f"memoryd did not answer {method} in {self.timeout:.0f}s") from None
        except OSError as exc:
            self.close()
            raise ClientError(f"lost the connection to memoryd ({exc.strerror or exc})") from None
        try:
            message = json.loads(reply)
        except ValueError:
            self.close()
            raise ClientError("memoryd sent an answer that is not JSON") from None
        if "error" in message:
            err = message["error"] or {}
            raise RemoteError(
                int(err.get("code", -32603)), str(err.get("message", "error")), err.get("data")
            )
        return message.get("result")

    def _read_line(self) -> bytes:
        assert self._sock is not None
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line, self._buffer = self._buffer[:newline], self._buffer[newline + 1 :]
                return line
            chunk = self._sock.recv(_READ_CHUNK)
            if not chunk:
                raise ConnectionResetError("memoryd closed the connection")
            self._buffer += chunk

    # -- operations (thin wrappers; the protocol doc describes each) --------------------

    def add(self, content: str, **fields: Any) -> dict[str, Any]:
        return self.call("memory.add", {"content": content, **fields})

    def import_items(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return self.call("memory.import", {"items": items})

    def get(self, memory_id: str) -> dict[str, Any]:
        return self.call("memory.get", {"id": memory_id})["memory"]

    def search(self, query: str, **options: Any) -> dict[str, Any]:
        return self.call("memory.search", {"query": query, **options})

    def update(self, memory_id: str, **fields: Any) -> dict[str, Any]:
        return self.call("memory.update", {"id": memory_id, **fields})["memory"]

    def delete(self, memory_id: str) -> dict[str, Any]:
        return self.call("memory.delete", {"id": memory_id})

    def history(self, memory_id: str) -> list[dict[str, Any]]:
        return self.call("memory.history", {"id": memory_id})["events"]

    def list(self, **filters: Any) -> dict[str, Any]:
        return self.call("memory.list", filters)

    def export(self, namespace: str | None = None, page_size: int = 500) -> Iterator[dict]:
        after = None
        while True:
            page = self.call(
                "memory.export", {"namespace": namespace, "after": after, "limit": page_size}
            )
            yield from page["memories"]
            after = page.get("next")
            if not after:
                return

    def stats(self) -> dict[str, Any]:
        return self.call("store.stats")

    def status(self) -> dict[str, Any]:
        return self.call("store.status")

    def unlock(self, passphrase: str) -> dict[str, Any]:
        return self.call("key.unlock", {"passphrase": passphrase})

    def passwd(
        self, new_passphrase: str | None, old_passphrase: str | None = None
    ) -> dict[str, Any]:
        return self.call(
            "key.passwd", {"new_passphrase": new_passphrase, "old_passphrase": old_passphrase}
        )

    def daemon_status(self) -> dict[str, Any]:
        return self.call("daemon.status")

    def shutdown(self) -> dict[str, Any]:
        return self.call("daemon.shutdown")


def is_running(paths: Paths | None = None) -> bool:
    paths = paths or resolve_paths()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(2.0)
    try:
        sock.connect(str(paths.socket))
    except OSError:
        return False
    finally:
        sock.close()
    return True


def daemon_command() -> list[str]:
    # A PyInstaller build is one binary that is both CLI and daemon; elsewhere the daemon is
    # this interpreter running the memoryd package, so a venv or pipx install finds itself.
    if getattr(sys, "frozen", False):
        return [sys.executable, "daemon", "run"]
    return [sys.executable, "-m", "memoryd", "run"]


def start_daemon(paths: Paths | None = None, timeout: float = START_TIMEOUT_S) -> int:
    """Start memoryd in the background and wait until it answers; returns its pid.

    The daemon writes start-up failures (one line each) to ``<log_dir>/daemon-start.err``;
    if it exits before answering, that line becomes the error raised here.
    """
    import subprocess  # only here: a CLI call to a running daemon never needs it

    paths = paths or resolve_paths()
    paths.log_dir.mkdir(parents=True, exist_ok=True)
    err_path = paths.log_dir / "daemon-start.err"
    with open(os.devnull, "rb") as devnull, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            daemon_command(),
            stdin=devnull,
            stdout=err,
            stderr=err,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_running(paths):
            return proc.pid
        code = proc.poll()
        if code is not None:
            if is_running(paths):  # another client started it first
                return proc.pid
            raise ClientError(_last_line(err_path) or f"memoryd exited with status {code}")
        time.sleep(0.05)
    raise ClientError(f"memoryd did not start within {timeout:.0f}s; see {paths.log_file}")


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


__all__ = ["CODES", "Client", "ClientError", "RemoteError", "is_running", "start_daemon"]
