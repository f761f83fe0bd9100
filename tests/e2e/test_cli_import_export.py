"""`memory import` and `memory export` against a real daemon (one per module)."""

from __future__ import annotations

import json
from pathlib import Path

from support import MemoryCLI


def test_import_keeps_good_lines_and_names_the_bad_one(memory: MemoryCLI, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        json.dumps({"content": "Eve drinks her coffee black", "tags": ["coffee"],
                    "metadata": {"source": "chat"}, "kind": "preference", "importance": 0.7,
                    "created_at": "2024-01-02T03:04:05Z", "thread": "t-9", "position": 4})
        + "\n" + json.dumps({"tags": ["no content"]}) + "\n\n"
        + json.dumps({"content": "Frank owns a red bicycle"}) + "\n")
    proc = memory("import", str(source), "--namespace", "imp")
    assert proc.returncode == 1
    assert proc.stdout == "imported 2, duplicates 0, failed 1\n"
    assert proc.stderr == "line 2: content is required\n"

    stored = memory.json("list", "-n", "imp")["memories"]
    assert sorted(m["content"] for m in stored) == ["Eve drinks her coffee black",
                                                    "Frank owns a red bicycle"]
    eve = next(m for m in stored if m["content"].startswith("Eve"))
    assert (eve["kind"], eve["importance"], eve["thread"], eve["position"]) == (
        "preference", 0.7, "t-9", 4)
    assert eve["tags"] == ["coffee"] and eve["metadata"] == {"source": "chat"}
    assert eve["created_at"] == "2024-01-02T03:04:05.000Z"
    assert memory.json("search", "bicycle", "-n", "imp")["hits"][0]["content"].startswith("Frank")


def test_import_reports_daemon_side_errors_and_duplicates(memory: MemoryCLI) -> None:
    lines = [json.dumps({"content": "Grace plays the cello", "namespace": "imp2"}),
             json.dumps({"content": "bad importance", "namespace": "imp2", "importance": 5}),
             json.dumps({"content": "Grace plays the cello", "namespace": "imp2"})]
    proc = memory("import", "-", "--json", input="\n".join(lines))
    assert proc.returncode == 1
    summary = json.loads(proc.stdout)
    assert (summary["imported"], summary["duplicates"], summary["failed"]) == (1, 1, 1)
    assert summary["errors"][0]["line"] == 2
    assert summary["errors"][0]["code"] == "invalid_params"
    assert memory.contents("imp2") == ["Grace plays the cello"]


def test_export_import_round_trip_into_another_namespace(memory: MemoryCLI,
                                                        tmp_path: Path) -> None:
    for text in ("Heidi's flight leaves at 9", "Ivan's locker code is 4411", "ünïcödé ✓"):
        assert memory("add", text, "-n", "trip", "-t", "x").returncode == 0
    target = tmp_path / "trip.jsonl"
    exported = memory.json("export", "-n", "trip", "-o", str(target))
    assert exported == {"exported": 3, "path": str(target)}
    assert target.stat().st_mode & 0o777 == 0o600
    rows = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert {r["namespace"] for r in rows} == {"trip"} and all("id" in r for r in rows)

    proc = memory("import", str(target), "--into", "trip-copy")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "imported 3, duplicates 0, failed 0\n"
    assert memory.contents("trip-copy") == memory.contents("trip")
    copies = memory.json("list", "-n", "trip-copy")["memories"]
    assert {m["id"] for m in copies}.isdisjoint({r["id"] for r in rows})
    originals = {r["content"]: r for r in rows}
    for copy in copies:
        assert copy["tags"] == ["x"]
        assert copy["created_at"] == originals[copy["content"]]["created_at"]

    # Importing the same export again stores nothing new.
    again = memory("import", str(target), "--into", "trip-copy")
    assert again.stdout == "imported 0, duplicates 3, failed 0\n"


def test_export_to_stdout_pipes_into_import(memory: MemoryCLI) -> None:
    assert memory("add", "Judy parks on level 2", "-n", "pipe").returncode == 0
    exported = memory("export", "-n", "pipe")
    assert exported.returncode == 0, exported.stderr
    assert [json.loads(line)["content"] for line in exported.stdout.splitlines()] == [
        "Judy parks on level 2"]
    proc = memory("import", "-", "--into", "pipe-copy", input=exported.stdout)
    assert proc.returncode == 0, proc.stderr
    assert memory.contents("pipe-copy") == ["Judy parks on level 2"]


def test_large_import_goes_in_batches(memory: MemoryCLI) -> None:
    # Three calls: two full batches (the most the daemon takes in one) and one line.
    lines = "\n".join(json.dumps({"content": f"bulk memory number {i}"}) for i in range(2001))
    proc = memory("import", "-", "-n", "bulk", "--json", input=lines)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["imported"] == 2001
    assert memory.json("stats")["namespaces"]["bulk"] == 2001
