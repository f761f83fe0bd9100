"""`memory` as a subprocess against a real daemon it starts itself: add, get, list, search,
edit, rm, history, stats, status. One daemon (one MEMORYD_HOME) serves this module."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import MemoryCLI


@pytest.mark.parametrize("via", ["argument", "stdin"])
def test_add_then_get_and_search_find_it(memory: MemoryCLI, via: str) -> None:
    text = f"Alice is allergic to peanuts ({via})"
    proc = (memory("add", text, "-n", "people") if via == "argument"
            else memory("add", "-", "-n", "people", input=text + "\n"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("added ")
    memory_id = proc.stdout.split()[1]

    got = memory.json("get", memory_id)
    assert got["content"] == text and got["namespace"] == "people"

    hits = memory.json("search", f"allergic peanuts {via}", "-n", "people")["hits"]
    assert hits and hits[0]["id"] == memory_id
    assert {"id", "content", "score", "namespace", "tags", "metadata", "created_at",
            "thread", "position"} <= set(hits[0])


def test_add_json_and_duplicate(memory: MemoryCLI) -> None:
    first = memory.json("add", "The spare key is under the blue pot", "-n", "home")
    assert first["duplicate"] is False and first["content"].startswith("The spare key")
    again = memory.json("add", "The spare key is under the blue pot", "-n", "home")
    assert again["duplicate"] is True and again["id"] == first["id"]
    human = memory("add", "The spare key is under the blue pot", "-n", "home")
    assert human.returncode == 0
    assert human.stdout == f"duplicate of {first['id']} (nothing stored)\n"


def test_add_fields_round_trip(memory: MemoryCLI) -> None:
    added = memory.json("add", "Standup moved to 10:30", "-n", "work", "-t", "meeting,team",
                        "--meta", "room=4B", "--meta", "floor=3", "--kind", "fact",
                        "--importance", "0.9", "--thread", "chat-1", "--position", "2",
                        "--created-at", "2024-05-07T13:45:00Z")
    got = memory.json("get", added["id"])
    assert sorted(got["tags"]) == ["meeting", "team"]
    assert got["metadata"] == {"room": "4B", "floor": 3}
    assert (got["kind"], got["importance"], got["thread"], got["position"]) == (
        "fact", 0.9, "chat-1", 2)
    assert got["created_at"] == "2024-05-07T13:45:00.000Z"

    by_date = memory.json("list", "-n", "work", "--since", "2024-05-07Z", "--until",
                          "2024-05-07T23:59:59Z")["memories"]
    assert [m["id"] for m in by_date] == [added["id"]]
    assert memory.json("list", "-n", "work", "--until", "2024-05-06T00:00:00Z")["memories"] == []
    assert [m["id"] for m in memory.json("list", "-t", "team")["memories"]] == [added["id"]]
    hits = memory.json("search", "standup", "--meta", "floor=3", "--kind", "fact")["hits"]
    assert [h["id"] for h in hits] == [added["id"]]
    assert memory.json("search", "standup", "--meta", "floor=4")["hits"] == []


def test_search_explain_and_human_output(memory: MemoryCLI) -> None:
    added = memory.json("add", "Bob prefers green tea in the afternoon", "-n", "explain")
    result = memory.json("search", "green tea", "-n", "explain", "--explain")
    hit = result["hits"][0]
    assert hit["id"] == added["id"]
    assert {"lexical", "vector", "fused"} <= set(hit["signals"])
    assert hit["signals"]["lexical"]["rank"] == 1

    proc = memory("search", "green tea", "-n", "explain", "--explain")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["#", "score", "id", "namespace", "content"]
    assert added["id"] in lines[1]  # the full id: `memory get` needs it
    assert "Bob prefers green tea" in lines[1]
    assert "lexical" in lines[2] and "fused" in lines[2]

    lexical = memory.json("search", "green tea", "-n", "explain", "--mode", "lexical")
    assert lexical["hits"][0]["id"] == added["id"]


def test_search_without_matches(memory: MemoryCLI) -> None:
    proc = memory("search", "zebra", "-n", "nothing-here")
    assert proc.returncode == 0
    assert proc.stdout == "" and "no matches" in proc.stderr


def test_edit_text_fields_and_history(memory: MemoryCLI) -> None:
    added = memory.json("add", "Carol lives in Lyon", "-n", "edit", "-t", "old",
                        "--meta", "a=1")
    proc = memory("edit", added["id"], "Carol lives in Marseille")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"updated {added['id']}\n"
    edited = memory.json("edit", added["id"], "-t", "new", "--meta", "b=2", "--importance",
                         "0.2")
    assert edited["changed"] is True
    got = memory.json("get", added["id"])
    assert got["content"] == "Carol lives in Marseille"
    assert got["tags"] == ["new"] and got["metadata"] == {"a": 1, "b": 2}
    assert got["importance"] == 0.2
    assert memory.json("search", "Marseille", "-n", "edit")["hits"][0]["id"] == added["id"]
    assert memory.json("search", "Lyon", "-n", "edit", "--mode", "lexical")["hits"] == []

    events = memory.json("history", added["id"])["events"]
    assert [e["action"] for e in events] == ["add", "update", "update"]
    assert events[1]["changes"]["content"]["new"] == "Carol lives in Marseille"
    assert events[0]["actor"].startswith("memory-cli/")
    human = memory("history", added["id"])
    assert human.returncode == 0 and "content" in human.stdout


def test_edit_in_editor(memory: MemoryCLI, tmp_path: Path) -> None:
    added = memory.json("add", "Dave's birthday is in March", "-n", "editor")
    rewrite = tmp_path / "rewrite.py"
    rewrite.write_text("import sys\nopen(sys.argv[1], 'w').write(\"Dave's birthday is on "
                       "March 3rd\\n\")\n")
    same = tmp_path / "same.py"
    same.write_text("import sys\np = sys.argv[1]\nt = open(p).read()\nopen(p, 'w').write(t)\n")

    proc = memory("edit", added["id"], env={"EDITOR": f"{sys.executable} {same}", "VISUAL": ""})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "no change\n"
    assert len(memory.json("history", added["id"])["events"]) == 1

    proc = memory("edit", added["id"],
                  env={"EDITOR": f"{sys.executable} {rewrite}", "VISUAL": ""})
    assert proc.returncode == 0, proc.stderr
    assert memory.json("get", added["id"])["content"] == "Dave's birthday is on March 3rd"


def test_rm_then_get_is_not_found(memory: MemoryCLI) -> None:
    one = memory.json("add", "temporary one", "-n", "rm")["id"]
    two = memory.json("add", "temporary two", "-n", "rm")["id"]
    proc = memory("rm", one, two)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"deleted {one}", f"deleted {two}"]

    proc = memory("get", one, "--json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["error"]["code"] == "not_found"
    proc = memory("get", one)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1

    proc = memory("rm", one, "--json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["errors"][0]["error"]["code"] == "not_found"
    assert memory.json("list", "-n", "rm")["memories"] == []


def test_list_human_and_limit(memory: MemoryCLI) -> None:
    for i in range(3):
        memory("add", f"list item {i}", "-n", "listing")
    proc = memory("list", "-n", "listing", "--limit", "2")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["id", "created", "namespace", "content"]
    assert len(lines) == 3 and "list item 2" in lines[1]  # newest first
    page = memory.json("list", "-n", "listing", "--limit", "2")
    assert len(page["memories"]) == 2 and page["next"]
    rest = memory.json("list", "-n", "listing", "--after", page["next"])
    assert [m["content"] for m in rest["memories"]] == ["list item 0"]


def test_stats_and_status(memory: MemoryCLI) -> None:
    stats = memory.json("stats")
    assert stats["memories"] >= 1 and "people" in stats["namespaces"]
    status = memory.json("status")
    assert status["locked"] is False and status["embedding"]["state"] in (
        "ready", "loading", "not loaded")
    for args in (["stats"], ["status"]):
        proc = memory(*args)
        assert proc.returncode == 0 and proc.stdout, proc.stderr


def test_runtime_errors_exit_1_usage_errors_exit_2(memory: MemoryCLI) -> None:
    proc = memory("add", "   ", "--json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["error"]["code"] == "invalid_params"
    proc = memory("add", "x", "-n", "bad namespace!")
    assert proc.returncode == 1 and proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr
    proc = memory("search", "x", "--since", "someday")
    assert proc.returncode == 2 and "someday" in proc.stderr


# What `memory` imports only when it needs it (tests/unit/test_cli_startup.py): a search
# of a running daemon, drawn for a person, needs none of it.
SEARCH_PROBE = """
import sys
sys.argv = ["memory", *sys.argv[1:]]
from memory_cli.main import main
try:
    main()
except SystemExit:
    pass
on_demand = ("subprocess", "tempfile", "shutil", "lzma", "bz2", "tomllib")
sys.stderr.write("LOADED=" + ",".join(m for m in on_demand if m in sys.modules) + "\\n")
"""


def test_search_of_a_running_daemon_imports_only_what_it_needs(memory: MemoryCLI) -> None:
    memory("add", "The lighthouse keeper logs the fog every evening")
    proc = subprocess.run(
        [sys.executable, "-c", SEARCH_PROBE, "search", "lighthouse fog", "-k", "3"],
        env=memory.env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "lighthouse keeper" in proc.stdout
    assert "LOADED=\n" in proc.stderr
