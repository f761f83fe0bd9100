"""Hostile and malformed requests over the raw socket: each gets its documented error,
and the daemon keeps serving."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


class Raw:
    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(str(path))
        self.buffer = b""

    def send(self, data: bytes) -> dict | None:
        self.sock.sendall(data)
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        self.sock.close()


def req(method: str, params=None, id_=1) -> bytes:
    body = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        body["params"] = params
    return json.dumps(body).encode() + b"\n"


HOSTILE = [
    ("not json", b"hello there\n", "parse_error"),
    ("truncated", b'{"jsonrpc": "2.0", "id": 1, "method": \n', "parse_error"),
    ("invalid utf-8", b'{"jsonrpc":"2.0","id":1,"method":"\xff\xfe"}\n', "parse_error"),
    ("NaN", b'{"jsonrpc":"2.0","id":1,"method":"memory.search","params":{"limit":NaN}}\n',
     "parse_error"),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000 + b"\n", "parse_error"),
    ("deep params", req("memory.add", {"content": "x", "metadata": json.loads(
        "{\"a\":" * 40 + "1" + "}" * 40)}), "parse_error"),
    ("deep by one", req("memory.add", {"content": "x", "metadata": {"a": json.loads(
        "[" * 30 + "]" * 30)}}), "parse_error"),
    ("batch", b'[{"jsonrpc":"2.0","id":1,"method":"rpc.hello"}]\n', "invalid_request"),
    ("empty batch", b"[]\n", "invalid_request"),
    ("bare string", b'"rpc.hello"\n', "invalid_request"),
    ("wrong version", b'{"jsonrpc":"1.0","id":1,"method":"rpc.hello"}\n', "invalid_request"),
    ("no method", b'{"jsonrpc":"2.0","id":1}\n', "invalid_request"),
    ("method not a string", b'{"jsonrpc":"2.0","id":1,"method":42}\n', "invalid_request"),
    ("id is an object", b'{"jsonrpc":"2.0","id":{"a":1},"method":"rpc.hello"}\n',
     "invalid_request"),
    ("unknown method", req("memory.drop_all"), "method_not_found"),
    ("params is a list", req("memory.add", ["x"]), "invalid_params"),
    ("add without content", req("memory.add", {"tags": ["x"]}), "invalid_params"),
    ("content not a string", req("memory.add", {"content": 123}), "invalid_params"),
    ("blank content", req("memory.add", {"content": "   \n"}), "invalid_params"),
    ("content too long", req("memory.add", {"content": "x" * 100_001}), "invalid_params"),
    ("tags not a list", req("memory.add", {"content": "x", "tags": "a,b"}), "invalid_params"),
    ("importance out of range", req("memory.add", {"content": "x", "importance": 7}),
     "invalid_params"),
    ("unknown param", req("memory.add", {"content": "x", "colour": "red"}), "invalid_params"),
    ("path as id", req("memory.get", {"id": "../../etc/passwd"}), "invalid_params"),
    ("sql in id", req("memory.get", {"id": "1' OR '1'='1"}), "invalid_params"),
    ("negative limit", req("memory.search", {"query": "x", "limit": -1}), "invalid_params"),
    ("bad mode", req("memory.search", {"query": "x", "mode": "psychic"}), "invalid_params"),
    ("bad date", req("memory.search", {"query": "x", "since": "last blue moon"}),
     "invalid_params"),
    ("bad namespace", req("memory.add", {"content": "x", "namespace": "a b;DROP"}),
     "invalid_params"),
    ("unknown id", req("memory.get", {"id": "01900000-0000-7000-8000-000000000000"}),
     "not_found"),
    ("too many import items", req("memory.import", {"items": [{"content": "x"}] * 1001}),
     "invalid_params"),
]


def test_hostile_requests_get_documented_errors(daemon, paths):
    raw = Raw(paths.socket)
    documented = set(re.findall(r"\| -32\d+ \| `(\w+)` \|", DOCS.read_text()))
    try:
        for label, line, expected in HOSTILE:
            reply = raw.send(line)
            assert reply is not None, label
            error = reply.get("error")
            assert error, f"{label}: expected an error, got {reply}"
            assert error["data"]["name"] == expected, f"{label}: {error}"
            assert error["data"]["name"] in documented
            assert "\n" not in error["message"] and len(error["message"]) < 300
            assert "Traceback" not in error["message"]
            if label.startswith("deep"):
                assert error["message"] == "JSON nests deeper than 32 levels", label
            hello = raw.send(req("rpc.hello", id_=99))
            assert hello and hello["result"]["name"] == "memoryd", label
    finally:
        raw.close()
    assert len(HOSTILE) >= 20


def test_the_nesting_limit_counts_arrays_and_objects_not_brackets_in_strings(daemon, paths):
    """The request object is level 1, params 2, metadata 3: 29 nested lists in the
    metadata make 32 levels, the most allowed; brackets in strings never count."""
    raw = Raw(paths.socket)
    try:
        content = '\\"[{' + "[" * 100 + '\\'
        reply = raw.send(req("memory.add", {"content": content, "metadata": {
            "a": json.loads("[" * 29 + "]" * 29), "b": "{" * 50}}))
        assert reply is not None and "result" in reply, reply
        assert reply["result"]["memory"]["content"] == content
    finally:
        raw.close()


def test_oversize_request_is_refused_and_daemon_survives(daemon, paths):
    raw = Raw(paths.socket)
    huge = b'{"jsonrpc":"2.0","id":1,"method":"memory.add","params":{"content":"' + \
        b"x" * (5 * 1024 * 1024) + b'"}}\n'
    try:
        reply = raw.send(huge)
    except (BrokenPipeError, ConnectionResetError):
        reply = None  # the daemon may close before reading it all
    if reply is not None:
        assert reply["error"]["data"]["name"] == "request_too_large"
    raw.close()
    again = Raw(paths.socket)
    assert again.send(req("rpc.hello"))["result"]["name"] == "memoryd"
    again.close()


def test_notification_gets_no_reply_but_is_done(daemon, paths):
    raw = Raw(paths.socket)
    raw.sock.sendall(b'{"jsonrpc":"2.0","method":"memory.add","params":{"content":"quiet"}}\n')
    reply = raw.send(req("memory.search", {"query": "quiet", "mode": "lexical"}, id_=7))
    assert reply["id"] == 7 and len(reply["result"]["hits"]) == 1
    raw.close()


def test_wrong_uid_is_refused(daemon, paths):
    import os
    import subprocess
    import sys

    if os.getuid() != 0:
        pytest.skip("needs root to connect as another uid")
    code = (
        "import os, socket, sys\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        f"    s.connect({str(paths.socket)!r})\n"
        "except PermissionError:\n"
        "    print('denied by mode'); sys.exit(0)\n"
        "try:\n"
        "    s.sendall(b'{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"rpc.hello\"}\\n')\n"
        "    print('closed' if s.recv(100) == b'' else 'answered')\n"
        "except (BrokenPipeError, ConnectionResetError):\n"
        "    print('closed')\n"
    )
    # Loosen the folder and socket so only the uid check stands in the way.
    home_mode = os.stat(paths.runtime_dir.parent).st_mode
    os.chmod(paths.runtime_dir.parent, 0o755)
    os.chmod(paths.runtime_dir, 0o755)
    os.chmod(paths.socket, 0o777)
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=30)
        out, proc_err = proc.stdout.strip(), proc.stderr[-500:]
    finally:
        os.chmod(paths.runtime_dir.parent, home_mode)
        os.chmod(paths.runtime_dir, 0o700)
        os.chmod(paths.socket, 0o600)
    assert out == "closed", proc_err
    assert "refused a connection from uid 65534" in paths.log_file.read_text()


def test_protocol_doc_lists_exactly_the_dispatched_methods(client):
    documented = set(re.findall(r"^### `([a-z]+\.[a-z_]+)`", DOCS.read_text(), re.M))
    served = set(client.call("rpc.hello")["methods"])
    assert documented == served


def test_the_event_loop_is_uvloop_unless_the_config_names_the_standard_one(make_daemon, paths):
    """``server.event_loop``: uvloop's loop by default (a dependency), the standard
    library's when the config says ``asyncio``; any other name stops the start with a
    one-line error."""
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    for setting, expected in ((None, "uvloop"), ("asyncio", "asyncio")):
        if setting is not None:
            paths.config_file.write_text(f'[server]\nevent_loop = "{setting}"\n')
        proc = make_daemon().start()
        client = proc.client()
        try:
            assert client.call("daemon.status")["event_loop"] == expected
            client.call("memory.add", {"content": f"served by {expected}"})
            hits = client.call("memory.search", {"query": expected, "mode": "lexical"})["hits"]
            assert [h["content"] for h in hits] == [f"served by {expected}"]
        finally:
            client.close()
            proc.stop()
    paths.config_file.write_text('[server]\nevent_loop = "trio"\n')
    proc = make_daemon()
    with pytest.raises(RuntimeError, match="exited"):
        proc.start()
    assert proc.stderr_text().strip().splitlines()[-1] == (
        "memoryd: error: server.event_loop must be uvloop or asyncio, got 'trio'")
    assert "Traceback" not in proc.stderr_text()
