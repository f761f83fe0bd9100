#!/usr/bin/env python3
"""Appliance benchmark: ingest through `memory import`, search latency over the socket,
and the `memory search` process round trip, against a real daemon in a temp MEMORYD_HOME.

    python scripts/bench_appliance.py --memories 10000          # the issue's numbers
    python scripts/bench_appliance.py --memories 500 --searches 50   # smoke

Prints a markdown table; --json-out FILE also writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO.parent / "shared" / "models" / "all-MiniLM-L6-v2-int8"

NAMES = ["Alice", "Bob", "Chen", "Dara", "Emeka", "Farah", "Goran", "Hana", "Ivo", "Jun",
         "Kofi", "Lena", "Mateo", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq"]
PLACES = ["Lisbon", "the office", "Kyoto", "the gym", "Berlin", "the lake house", "Nairobi",
          "the library", "Montreal", "grandma's flat", "the clinic", "Oslo"]
THINGS = ["peanuts", "the quarterly report", "a new bike", "jazz records", "the dentist",
          "sourdough bread", "the tax return", "a chess club", "hiking boots", "the car",
          "a violin lesson", "the garden", "coffee beans", "a job interview", "the wedding"]
TEMPLATES = [
    "{n} is allergic to {t}", "{n} moved to {p} last spring", "Remember to ask {n} about {t}",
    "{n} prefers meetings in {p}", "Bought {t} for {n} in {p}", "{n} said {t} is overrated",
    "Deadline for {t} is next Friday, says {n}", "{n} recommends {p} for a weekend trip",
    "Lost {t} somewhere near {p}", "{n} and I talked about {t} at {p}",
]
QUERIES = [
    "what food allergies does {n} have?", "where does {n} live now?",
    "things to discuss with {n}", "gift ideas for {n}", "what did {n} think of {t}?",
    "when is the deadline?", "weekend trip suggestions", "where did I lose my stuff?",
    "conversations at {p}", "who likes to meet at {p}?",
]


def memories(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        text = rng.choice(TEMPLATES).format(n=rng.choice(NAMES), p=rng.choice(PLACES),
                                            t=rng.choice(THINGS))
        out.append(f"{text} (note {i})")
    return out


def queries(count: int, seed: int = 11) -> list[str]:
    """``count`` different queries, each from a template drawn at random. Drawn with
    repeats, 200 queries held only 99 different ones, and a repeated query finds the
    rows of its hits in DuckDB's block cache. The templates make 407 queries, after
    which the list repeats."""
    rng = random.Random(seed)
    found: dict[str, None] = {}
    draws = 100 * count
    while len(found) < count and draws:
        draws -= 1
        found[rng.choice(QUERIES).format(n=rng.choice(NAMES), p=rng.choice(PLACES),
                                         t=rng.choice(THINGS))] = None
    distinct = list(found)
    return [distinct[i % len(distinct)] for i in range(count)]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def as_installed() -> None:
    """Let the processes the benchmark starts cache bytecode, as an installed memoryd does
    (pip and pipx compile it at install). With PYTHONDONTWRITEBYTECODE set in the
    caller's shell, each daemon start compiled memoryd's modules again (~70-120 ms of
    imports here) and each `memory` call the CLI's (~20 ms): figures a user never sees."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def start_daemon(env: dict[str, str], timeout: float = 120.0) -> tuple[Any, Any]:
    """Start `memoryd run` with ``env`` (its MEMORYD_HOME) and connect: (process, client).
    Shared by the benchmark scripts."""
    from memoryd.client import Client
    from memoryd.config import resolve_paths

    paths = resolve_paths({"MEMORYD_HOME": env["MEMORYD_HOME"]})
    daemon = subprocess.Popen([sys.executable, "-m", "memoryd", "run"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return daemon, Client(paths, autostart=False).connect()
        except Exception:  # noqa: BLE001 - not up yet
            if daemon.poll() is not None:
                sys.exit("memoryd exited during start-up")
            time.sleep(0.01)
    daemon.kill()
    sys.exit("memoryd did not start")


class RssSampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop_flag = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            try:
                self.peak = max(self.peak, rss_kb(self.pid))
            except OSError:
                return
            time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument("--cli-runs", type=int, default=20)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    as_installed()

    home = Path(tempfile.mkdtemp(prefix="mdbench", dir="/tmp"))
    env = dict(os.environ, MEMORYD_HOME=str(home))
    env.setdefault("MEMORYD_MODEL_DIR", str(DEFAULT_MODEL))
    os.environ.update(env)
    bindir = Path(sys.executable).parent
    memory_cli = [str(bindir / "memory")] if (bindir / "memory").exists() else \
        [sys.executable, "-m", "memory_cli.main"]

    from memoryd.config import resolve_paths

    paths = resolve_paths()
    texts = memories(args.memories)
    data = home / "import.jsonl"
    data.write_text("".join(json.dumps({"content": t, "namespace": "bench"}) + "\n"
                            for t in texts))

    started = time.perf_counter()
    daemon, client = start_daemon(env)
    cold_start = time.perf_counter() - started
    # Wait for the model so ingest measures steady state, not the first load.
    while client.status()["embedding"]["state"] in ("not loaded", "loading"):
        time.sleep(0.05)
    idle_rss = rss_kb(daemon.pid)

    sampler = RssSampler(daemon.pid)
    sampler.start()
    t0 = time.perf_counter()
    proc = subprocess.run([*memory_cli, "import", str(data), "--format", "jsonl", "--json"],
                          env=env, capture_output=True, text=True)
    ingest_s = time.perf_counter() - t0
    sampler.stop_flag.set()
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"import failed: {proc.stderr.strip()[-500:]}")
    status = client.status()
    while status["vector_index"]["pending"]:
        time.sleep(0.1)
        status = client.status()

    results: dict[str, object] = {
        "memories": args.memories,
        "cold_start_s": round(cold_start, 3),
        "idle_rss_mb": round(idle_rss / 1024, 1),
        "ingest_s": round(ingest_s, 2),
        "ingest_per_s": round(args.memories / ingest_s, 1),
        "ingest_peak_rss_mb": round(max(sampler.peak, rss_kb(daemon.pid, "VmHWM")) / 1024, 1),
        "stored": status["memories"], "waiting_for_embedding": status["waiting_for_embedding"],
    }

    qs = queries(args.searches)
    for mode in ("hybrid", "lexical", "vector"):
        for q in qs[:10]:  # warm up
            client.search(q, mode=mode)
        took = []
        for q in qs:
            t = time.perf_counter()
            client.search(q, mode=mode, limit=10)
            took.append((time.perf_counter() - t) * 1000)
        results[f"search_{mode}_p50_ms"] = round(pct(took, 0.5), 2)
        results[f"search_{mode}_p95_ms"] = round(pct(took, 0.95), 2)

    runs = []
    for q in qs[: args.cli_runs]:
        t = time.perf_counter()
        subprocess.run([*memory_cli, "search", q, "-k", "5"], env=env, capture_output=True,
                       check=True)
        runs.append((time.perf_counter() - t) * 1000)
    results["cli_search_roundtrip_p50_ms"] = round(pct(runs, 0.5), 1)
    results["disk_bytes_per_memory"] = round(
        sum(p.stat().st_size for p in paths.data_dir.rglob("*") if p.is_file())
        / args.memories, 1)

    client.shutdown()
    client.close()
    daemon.wait(60)

    print(f"| metric ({args.memories:,} memories, {os.cpu_count()} cores) | value |")
    print("|---|---|")
    for key, value in results.items():
        print(f"| {key} | {value} |")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2) + "\n")
    import shutil

    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
