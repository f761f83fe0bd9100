"""The CLI's parsing and rendering against a scripted client (no daemon).

The scripted client is the real ``memoryd.client.Client`` with ``connect`` and ``call``
replaced, so the wrappers the CLI uses are the real ones and the recorded params are what
would go on the wire (``None`` dropped, as ``Client.call`` does).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import memory_cli.main as cli_main
import pytest
from click.testing import CliRunner
from memory_cli.main import cli

from memoryd.client import Client, RemoteError
from memoryd.errors import CODES

MID = "0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"


def memory(**fields: Any) -> dict[str, Any]:
    base = {"id": MID, "content": "Alice is allergic to peanuts", "namespace": "default",
            "kind": "note", "tags": [], "metadata": {}, "importance": 0.5, "source": None,
            "thread": None, "position": None, "created_at": "2024-05-07T13:45:00.000Z",
            "updated_at": "2024-05-07T13:45:00.000Z", "accessed_at": None, "access_count": 0,
            "expires_at": None, "embedded": True}
    base.update(fields)
    return base


def remote(name: str, message: str = "nope") -> RemoteError:
    return RemoteError(CODES[name], message, {"name": name})


class Script:
    """What the fake daemon answers, and what it was asked."""

    def __init__(self) -> None:
        self.handlers: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.notices: list[str] = []

    def on(self, method: str, answer: Any) -> None:
        self.handlers[method] = answer if callable(answer) else (lambda _p, a=answer: a)

    def params(self, method: str) -> list[dict[str, Any]]:
        return [p for m, p in self.calls if m == method]


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Script:
    state = Script()

    class ScriptedClient(Client):
        def connect(self) -> Client:
            self.notices.extend(state.notices)
            return self

        def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
            sent = {k: v for k, v in (params or {}).items() if v is not None}
            state.calls.append((method, sent))
            if method not in state.handlers:
                raise AssertionError(f"unexpected call {method}")
            answer = state.handlers[method](sent)
            if isinstance(answer, Exception):
                raise answer
            return answer

    monkeypatch.setattr(cli_main, "Client", ScriptedClient)
    return state


@pytest.fixture
def run() -> Iterator[Callable[..., Any]]:
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Any:
        return runner.invoke(cli, list(args), input=input, env=env, catch_exceptions=False)

    yield invoke


# -- usage errors: exit 2 ------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["frobnicate"],
    ["add"],
    ["add", "a", "b"],
    ["add", "x", "--importance", "2"],
    ["add", "x", "--position", "-1"],
    ["add", "x", "--meta", "novalue"],
    ["add", "x", "--created-at", "soon"],
    ["search"],
    ["search", "q", "--mode", "fuzzy"],
    ["search", "q", "--since", "last week"],
    ["search", "q", "-k", "0"],
    ["list", "--limit", "0"],
    ["rm"],
    ["get"],
    ["edit"],
    ["edit", MID, "-t", "a", "--clear-tags"],
    ["import"],
    ["import", "/nonexistent/file.jsonl"],
    ["import", "-", "--format", "csv"],
    ["export", "--format", "csv"],
    ["daemon", "logs", "-f", "--json"],
    ["daemon", "bogus"],
    ["key", "passwd", "--remove", "--passphrase-file", __file__],
    ["--no-such-option"],
])
def test_usage_errors_exit_2(run: Callable[..., Any], script: Script, args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert script.calls == []  # nothing reached the daemon


def test_help_everywhere_exits_0(run: Callable[..., Any]) -> None:
    for args in (["--help"], ["-h"], ["add", "--help"], ["daemon", "--help"],
                 ["daemon", "logs", "--help"]):
        result = run(*args)
        assert result.exit_code == 0
        assert "Usage:" in result.stdout


# -- runtime errors: exit 1, one line ------------------------------------------------------

def test_locked_error_gives_the_unlock_hint(run: Callable[..., Any], script: Script) -> None:
    script.on("memory.get", remote("locked", "the store is locked"))
    result = run("get", MID)
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: memoryd is locked: run `memory unlock`"
    assert result.stdout == ""

    result = run("get", MID, "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "error": {"code": "locked", "message": "memoryd is locked: run `memory unlock`"}}


def test_remote_errors_are_one_line_or_json(run: Callable[..., Any], script: Script) -> None:
    script.on("memory.get", remote("not_found", "no memory with id " + MID))
    result = run("get", MID)
    assert result.exit_code == 1
    assert result.stderr == f"error: no memory with id {MID}\n"
    result = run("--json", "get", MID)
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"] == {"code": "not_found",
                                                  "message": f"no memory with id {MID}"}


def test_unexpected_exception_is_one_line(run: Callable[..., Any], script: Script) -> None:
    def boom(_params: dict[str, Any]) -> Any:
        raise RuntimeError("kaput\nsecond line")

    script.on("store.stats", boom)
    result = run("stats")
    assert result.exit_code == 1
    assert result.stderr == "error: unexpected RuntimeError: kaput\n"
    result = run("stats", "--json")
    assert json.loads(result.stdout)["error"]["code"] == "internal_error"


def test_status_shows_the_ann_index_and_its_probes(
    run: Callable[..., Any], script: Script
) -> None:
    ann = {"indexed": 1000000, "unindexed": 20, "training": False, "trainings": 2,
           "last_training_s": 15.2, "min_rows": 100000, "probes": 10, "probes_recall": 1.0,
           "calibrations": 1}
    status = {"locked": False, "memories": 1000020, "search_tier": "index",
              "vector_index": {"rows": 1000020, "pending": 0, "ready": True, "ann": ann}}
    script.on("store.status", status)
    lines = run("status").stdout.splitlines()
    assert any(line.split() == ["ANN", "index", "1000000", "rows,", "20", "to", "fold", "in,",
                                "10", "probes,", "calibrated"] for line in lines), lines
    script.on("store.status", {**status, "vector_index": {
        **status["vector_index"], "ann": {**ann, "probes": 40, "probes_recall": None}}})
    assert "40 probes\n" in run("status").stdout
    script.on("store.status", {**status, "vector_index": {
        **status["vector_index"], "ann": {**ann, "indexed": 0, "unindexed": 1000020}}})
    assert "ANN index" not in run("status").stdout
    script.on("store.status", {**status, "vector_index": {
        **status["vector_index"], "ready": False, "rebuilding": True, "rows": 5000}})
    assert "5000 rows, 0 pending, rebuilding (searches by words meanwhile)\n" in run(
        "status").stdout
    script.on("store.status", {**status, "vector_index": {
        **status["vector_index"], "ready": False, "rebuilding": False}})
    assert "pending, not ready\n" in run("status").stdout


def test_daemon_status_when_not_running(run: Callable[..., Any]) -> None:
    result = run("daemon", "status")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: memoryd is not running")
    assert result.stderr.count("\n") == 1
    result = run("daemon", "status", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["code"] == "unavailable"


def test_daemon_stop_when_not_running(run: Callable[..., Any]) -> None:
    result = run("daemon", "stop", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"stopped": False, "running": False}


def test_logs_without_a_log_file(run: Callable[..., Any]) -> None:
    result = run("daemon", "logs")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no log file yet at ")


def test_logs_prints_the_tail(run: Callable[..., Any], memoryd_home: Path) -> None:
    log_file = memoryd_home / "log" / "memoryd.log"
    log_file.parent.mkdir(parents=True)
    log_file.write_text("".join(f"line {i}\n" for i in range(10)))
    result = run("daemon", "logs", "-n", "3")
    assert result.stdout == "line 7\nline 8\nline 9\n"
    data = json.loads(run("daemon", "logs", "-n", "2", "--json").stdout)
    assert data == {"path": str(log_file), "lines": ["line 8", "line 9"]}


def test_config_show_needs_no_daemon(run: Callable[..., Any], memoryd_home: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORYD_SEARCH_DEFAULT_LIMIT", "7")
    result = run("config", "show", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["paths"]["data_dir"] == str(memoryd_home.resolve() / "data")
    assert data["settings"]["search"]["default_limit"] == 7
    assert not (memoryd_home / "run").exists()  # no daemon was started
    human = run("config", "show").stdout
    assert "search.default_limit" in human and str(memoryd_home.resolve()) in human


def test_config_error_is_one_line(run: Callable[..., Any], memoryd_home: Path) -> None:
    (memoryd_home / "config").mkdir()
    (memoryd_home / "config" / "config.toml").write_text("[search]\nbogus = 1\n")
    result = run("config", "show")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "search.bogus" in result.stderr


# -- add / search / list --------------------------------------------------------------------

def test_add_sends_parsed_fields_and_prints_notices(run: Callable[..., Any],
                                                    script: Script) -> None:
    script.notices.append("created a new data key in /x/key.json")
    script.on("memory.add", {"memory": memory(tags=["a", "b"]), "duplicate": False})
    result = run("add", "hello", "-n", "work", "-t", "a,b", "-t", "a", "--meta", "n=3",
                 "--meta", "who=Alice", "--meta", 'l=["x"]', "--meta", "x=NaN",
                 "--kind", "fact", "--importance", "0.75", "--thread", "t1", "--position", "0",
                 "--created-at", "2024-05-01T10:00:00Z", "--json")
    assert result.exit_code == 0, result.output
    assert "created a new data key in /x/key.json" in result.stderr
    out = json.loads(result.stdout)
    assert out["id"] == MID and out["duplicate"] is False
    [sent] = script.params("memory.add")
    assert sent == {"content": "hello", "namespace": "work", "tags": ["a", "b"],
                    "metadata": {"n": 3, "who": "Alice", "l": ["x"], "x": "NaN"},
                    "kind": "fact", "importance": 0.75, "thread": "t1", "position": 0,
                    "created_at": "2024-05-01T10:00:00.000Z"}


def test_add_from_stdin_and_duplicate(run: Callable[..., Any], script: Script) -> None:
    script.on("memory.add", {"memory": memory(), "duplicate": True})
    result = run("add", "-", input="line one\nline two\n\n")
    assert result.exit_code == 0
    assert result.stdout == f"duplicate of {MID} (nothing stored)\n"
    assert script.params("memory.add")[0]["content"] == "line one\nline two"


def test_search_filters_and_explain(run: Callable[..., Any], script: Script) -> None:
    hit = memory(score=0.93, signals={"lexical": {"score": 7.1, "rank": 1},
                                      "vector": {"score": None, "rank": None}, "fused": 0.93})
    script.on("memory.search", {"hits": [hit], "mode": "hybrid", "took_ms": 1.0})
    result = run("search", "peanuts", "-n", "people", "-k", "5", "-t", "health", "--kind",
                 "fact", "--meta", "source=chat", "--since", "2024-05-01", "--until",
                 "2024-05-02", "--mode", "lexical", "--explain",
                 env={"TZ": "UTC", "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    [sent] = script.params("memory.search")
    assert sent["query"] == "peanuts" and sent["limit"] == 5 and sent["tags"] == ["health"]
    assert sent["metadata"] == {"source": "chat"} and sent["explain"] is True
    assert sent["mode"] == "lexical" and sent["namespace"] == "people"
    assert sent["since"].endswith("Z") and sent["until"].endswith("Z")
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["#", "score", "id", "namespace", "content"]
    assert lines[1].split()[:4] == ["1", "0.9300", MID, "default"]
    assert "Alice is allergic to peanuts" in lines[1]
    assert "lexical 7.1 (#1)" in lines[2] and "vector - (-)" in lines[2]


def test_search_json_is_the_daemon_result(run: Callable[..., Any], script: Script) -> None:
    answer = {"hits": [memory(score=0.5)], "mode": "hybrid", "took_ms": 2.0}
    script.on("memory.search", answer)
    result = run("search", "x", "--json")
    assert json.loads(result.stdout) == answer
    assert "explain" not in script.params("memory.search")[0]


def test_search_without_hits_and_degraded(run: Callable[..., Any], script: Script) -> None:
    script.on("memory.search", {"hits": [], "mode": "hybrid", "degraded": "no embedding model"})
    result = run("search", "x")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "no embedding model" in result.stderr and "no matches" in result.stderr


def test_list_pages_until_the_limit(run: Callable[..., Any], script: Script) -> None:
    def page(params: dict[str, Any]) -> dict[str, Any]:
        start = int(params.get("after") or 0)
        items = [memory(id=f"id-{i}") for i in range(start, start + params["limit"])]
        return {"memories": items, "next": str(start + params["limit"])}

    script.on("memory.list", page)
    result = run("list", "--limit", "1500", "--json")
    data = json.loads(result.stdout)
    assert len(data["memories"]) == 1500 and data["next"] == "1500"
    assert [p["limit"] for p in script.params("memory.list")] == [1000, 500]


# -- edit / rm -------------------------------------------------------------------------------

def test_edit_merges_metadata_and_replaces_tags(run: Callable[..., Any], script: Script) -> None:
    script.on("memory.get", {"memory": memory(metadata={"a": 1, "b": 2})})
    script.on("memory.update", lambda p: {"memory": memory(metadata=p.get("metadata", {}))})
    result = run("edit", MID, "-t", "x,y", "--meta", "c=3", "--drop-meta", "a", "--json")
    assert result.exit_code == 0, result.output
    [sent] = script.params("memory.update")
    assert sent == {"id": MID, "tags": ["x", "y"], "metadata": {"b": 2, "c": 3}}
    assert json.loads(result.stdout)["changed"] is True


def test_edit_clear_tags_sends_an_empty_list(run: Callable[..., Any], script: Script) -> None:
    script.on("memory.update", {"memory": memory()})
    assert run("edit", MID, "--clear-tags").exit_code == 0
    assert script.params("memory.update") == [{"id": MID, "tags": []}]


def _editor(tmp_path: Path, body: str) -> str:
    script_path = tmp_path / "editor.py"
    script_path.write_text(body)
    return f"{sys.executable} {script_path}"


def test_edit_in_editor_unchanged(run: Callable[..., Any], script: Script,
                                  tmp_path: Path) -> None:
    script.on("memory.get", {"memory": memory()})
    # Rewrites the file with the same text: saved, but nothing changed.
    editor = _editor(tmp_path, "import sys\np = sys.argv[1]\nt = open(p).read()\n"
                               "open(p, 'w').write(t)\n")
    result = run("edit", MID, env={"EDITOR": editor, "VISUAL": ""})
    assert result.exit_code == 0, result.output
    assert result.stdout == "no change\n"
    assert script.params("memory.update") == []


def test_edit_in_editor_changed(run: Callable[..., Any], script: Script, tmp_path: Path) -> None:
    script.on("memory.get", {"memory": memory()})
    script.on("memory.update", lambda p: {"memory": memory(content=p["content"])})
    editor = _editor(tmp_path, "import sys\nopen(sys.argv[1], 'w').write('new text\\n')\n")
    result = run("edit", MID, "--json", env={"EDITOR": editor, "VISUAL": ""})
    assert result.exit_code == 0, result.output
    assert script.params("memory.update") == [{"id": MID, "content": "new text"}]


def test_rm_reports_failures_and_continues(run: Callable[..., Any], script: Script) -> None:
    other = "0193a1b2-0000-7000-8000-000000000000"
    script.on("memory.delete", lambda p: remote("not_found", "no such memory")
              if p["id"] == other else {"id": p["id"], "deleted": True})
    result = run("rm", other, MID, MID)
    assert result.exit_code == 1
    assert result.stdout == f"deleted {MID}\n"
    assert result.stderr == f"error: {other}: no such memory\n"
    assert [p["id"] for p in script.params("memory.delete")] == [other, MID]
    data = json.loads(run("rm", other, "--json").stdout)
    assert data == {"deleted": [], "errors": [
        {"id": other, "error": {"code": "not_found", "message": "no such memory"}}]}


# -- import ----------------------------------------------------------------------------------

def _import_answer(params: dict[str, Any]) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    for index, item in enumerate(params["items"]):
        if item["content"] == "bad":
            results.append({"index": index, "error": {
                "code": -32602, "message": "kind must be ...", "data": {"name": "invalid_params"}}})
        else:
            results.append({"index": index, "id": f"id-{index}",
                            "duplicate": item["content"] == "dup"})
    return {"results": results}


def test_import_reports_lines_and_keeps_good_ones(run: Callable[..., Any], script: Script,
                                                  tmp_path: Path) -> None:
    script.on("memory.import", _import_answer)
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join([
        json.dumps({"content": "one", "tags": ["a"], "id": "old", "embedded": True,
                    "access_count": 3, "updated_at": None, "accessed_at": None,
                    "expires_at": None}),
        "{not json",
        "",
        json.dumps({"content": "bad"}),
        json.dumps({"content": "dup", "namespace": "own"}),
        json.dumps({"tags": ["x"]}),
        json.dumps(["content"]),
        json.dumps({"content": "x", "colour": "red"}),
    ]) + "\n")
    result = run("import", str(source), "--namespace", "fallback")
    assert result.exit_code == 1
    assert result.stdout == "imported 1, duplicates 1, failed 5\n"
    assert result.stderr.splitlines() == [
        "line 2: not valid JSON (Expecting property name enclosed in double quotes at column 2)",
        "line 4: kind must be ...",
        "line 6: content is required",
        "line 7: expected a JSON object, got list",
        "line 8: unknown field: colour",
    ]
    [sent] = script.params("memory.import")
    assert sent["items"] == [
        {"content": "one", "tags": ["a"], "namespace": "fallback"},
        {"content": "bad", "namespace": "fallback"},
        {"content": "dup", "namespace": "own"},
    ]


def test_import_json_summary_and_into(run: Callable[..., Any], script: Script) -> None:
    script.on("memory.import", _import_answer)
    lines = [json.dumps({"content": f"m{i}", "namespace": "a"}) for i in range(2100)]
    lines.insert(1500, json.dumps({"content": "bad"}))  # in the second call
    result = run("import", "-", "--into", "b", "--json", input="\n".join(lines))
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["imported"] == 2100 and data["failed"] == 1 and data["duplicates"] == 0
    assert data["errors"] == [{"line": 1501, "code": "invalid_params",
                               "message": "kind must be ..."}]
    batches = script.params("memory.import")
    assert [len(b["items"]) for b in batches] == [1000, 1000, 101]
    assert {i["namespace"] for b in batches for i in b["items"]} == {"b"}
    assert result.stderr == ""  # JSON mode: the errors are in the JSON


def test_import_all_good_exits_0(run: Callable[..., Any], script: Script) -> None:
    script.on("memory.import", _import_answer)
    result = run("import", "-", input='{"content": "a"}\n\n{"content": "b"}\n')
    assert result.exit_code == 0
    assert result.stdout == "imported 2, duplicates 0, failed 0\n"


def test_import_of_an_empty_file_calls_nothing(run: Callable[..., Any], script: Script) -> None:
    result = run("import", "-", input="\n\n")
    assert result.exit_code == 0
    assert result.stdout == "imported 0, duplicates 0, failed 0\n"
    assert script.params("memory.import") == []


def test_import_batch_failure_stops_with_one_line(run: Callable[..., Any],
                                                  script: Script) -> None:
    script.on("memory.import", remote("locked"))
    result = run("import", "-", input='{"content": "a"}\n')
    assert result.exit_code == 1
    assert result.stderr == "error: memoryd is locked: run `memory unlock`\n"


# -- export ----------------------------------------------------------------------------------

def test_export_to_file_is_private(run: Callable[..., Any], script: Script,
                                   tmp_path: Path) -> None:
    pages = iter([{"memories": [memory(id="a")], "next": "c1"},
                  {"memories": [memory(id="b", content="ünï")], "next": None}])
    script.on("memory.export", lambda _p: next(pages))
    target = tmp_path / "out.jsonl"
    result = run("export", "-n", "work", "-o", str(target), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"exported": 2, "path": str(target)}
    assert target.stat().st_mode & 0o777 == 0o600
    lines = target.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["a", "b"]
    assert "ünï" in lines[1]
    assert [p.get("namespace") for p in script.params("memory.export")] == ["work", "work"]
    assert [p.get("after") for p in script.params("memory.export")] == [None, "c1"]
    assert list(tmp_path.iterdir()) == [target]  # no temp file left


def test_export_to_stdout(run: Callable[..., Any], script: Script) -> None:
    script.on("memory.export", {"memories": [memory()], "next": None})
    result = run("export", "--json")
    assert result.exit_code == 0
    assert [json.loads(line) for line in result.stdout.splitlines()] == [memory()]


# -- keys ------------------------------------------------------------------------------------

def test_unlock_sources(run: Callable[..., Any], script: Script, tmp_path: Path) -> None:
    script.on("key.unlock", {"unlocked": True})
    secret = tmp_path / "pass"
    secret.write_text("from file\n")
    assert run("unlock", "--passphrase-file", str(secret)).stdout == "unlocked\n"
    assert run("unlock", env={"MEMORYD_PASSPHRASE": "from env"}).exit_code == 0
    assert run("unlock", input="typed\n", env={"MEMORYD_PASSPHRASE": ""}).exit_code == 0
    assert [p["passphrase"] for p in script.params("key.unlock")] == [
        "from file", "from env", "typed"]


def test_passwd_prompts_twice_and_for_the_old_one(run: Callable[..., Any],
                                                   script: Script) -> None:
    script.on("store.status", {"key": {"protected": True}, "locked": False})
    script.on("key.passwd", {"protected": True, "fingerprint": "f"})
    result = run("key", "passwd", input="old\nnew\nnew\n")
    assert result.exit_code == 0, result.output
    assert script.params("key.passwd") == [{"new_passphrase": "new", "old_passphrase": "old"}]


def test_passwd_remove_without_passphrase(run: Callable[..., Any], script: Script) -> None:
    script.on("store.status", {"key": {"protected": False}, "locked": False})
    result = run("key", "passwd", "--remove", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"protected": False, "changed": False}
    assert script.params("key.passwd") == []
