#!/usr/bin/env python3
"""Two or more versions of memoryd, searching one kept store in turn: an A/B test.

These machines are shared, and their speed moves from hour to hour by more than most
changes are worth: at 1M memories, hybrid search took 15.9-22.6 ms p50 in six daemons
of one code within the hour. So a change is compared in one run, against the code before it, in
daemons that take turns on the same store (the order reversed every round), several
times each.

Each version is a code tree (a `git worktree` of its commit) put first on the daemon's
`PYTHONPATH` (with `PYTHONSAFEPATH`: `python -m` otherwise puts its working directory
first, and daemons started from a checkout all ran that checkout's code); the store is
a `MEMORYD_HOME` kept by `scripts/bench.py --keep-home`. Each
daemon waits until its store is loaded (the lexical index in RAM, the ANN index read in
whole), then times the bench's queries in each mode, twice. The report gives each
daemon's p50s, and each version's median of them over its first version's.

    git worktree add /tmp/before HEAD~1
    python scripts/bench.py --sizes 1000000 --real 0 --no-peers --keep-home
    python scripts/bench_ab.py --home /tmp/mdbench... --tree before=/tmp/before --tree after=.

With ``--paired BLOCKS`` the versions run at once instead, each on its own copy of the
store, and every query goes to each daemon in turn (the order rotating query by query):
each block of the queries gives each version a p50 from the same seconds, and the
report adds the median over the blocks of each version's p50 over the first's. Two
changes together worth ~0.2 ms of a ~3.7 ms search (vector, real model, 100k) read
1.021 and 1.023 in two runs of three daemons each taking turns, and 0.93 in every one
of eight blocks paired (docs/performance-log.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402 - the scripts' own modules, beside this one
import bench_appliance  # noqa: E402

MODES = ("vector", "hybrid")
SETTLE_S = 3.0  # after the loads, before the first search


def _tree(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    tree = Path(path).resolve()
    if not (tree / "memoryd" / "__init__.py").is_file():
        raise argparse.ArgumentTypeError(f"{tree} holds no memoryd package")
    return name, tree


def one_daemon(home: Path, tree: Path, queries: list[str], embedder: str
               ) -> dict[str, list[float]]:
    """A daemon of ``tree`` on ``home``: its p50 (ms) in each mode, twice each."""
    daemon, client = bench_appliance.start_daemon(_daemon_env(home, tree, embedder))
    p50s: dict[str, list[float]] = {mode: [] for mode in MODES}
    try:
        bench.wait_loaded(client)
        bench.settle_graph(client)
        time.sleep(SETTLE_S)
        for mode in MODES * 2:
            took, _ = bench.timed_searches(client, queries, {"mode": mode})
            p50s[mode].append(round(statistics.median(took), 2))
    finally:
        bench.stop_daemon(daemon, client)
    return p50s


def _daemon_env(home: Path, tree: Path, embedder: str) -> dict[str, str]:
    env = dict(os.environ, MEMORYD_HOME=str(home), PYTHONPATH=str(tree), PYTHONSAFEPATH="1")
    if embedder == "hash":
        env["MEMORYD_EMBEDDING_PROVIDER"] = "hash"
    return env


def paired(home: Path, trees: list[tuple[str, Path]], queries: list[str], embedder: str,
           blocks: int) -> dict[str, dict[str, list[float]]]:
    """A daemon of each tree, up at once on its own copy of ``home``; each query goes to
    every daemon, the order rotating query by query. Each tree's p50 (ms) in each mode,
    one a block of the queries."""
    copies: list[Path] = []
    running: list[tuple[str, Any, Any]] = []
    p50s: dict[str, dict[str, list[float]]] = {name: {mode: [] for mode in MODES}
                                               for name, _ in trees}
    try:
        for name, tree in trees:
            copy = Path(tempfile.mkdtemp(prefix="mdab")) / "home"
            copies.append(copy.parent)
            shutil.copytree(home, copy, ignore=shutil.ignore_patterns("run"))
            daemon, client = bench_appliance.start_daemon(_daemon_env(copy, tree, embedder))
            running.append((name, daemon, client))
            bench.wait_loaded(client)
            bench.settle_graph(client)
        time.sleep(SETTLE_S)
        for block in range(blocks):
            for mode in MODES:
                took: dict[str, list[float]] = {name: [] for name, _, _ in running}
                for n, query in enumerate(queries):
                    shift = (n + block) % len(running)
                    for name, _, client in running[shift:] + running[:shift]:
                        start = time.perf_counter()
                        client.search(query, mode=mode, limit=10)
                        took[name].append((time.perf_counter() - start) * 1000)
                for name, values in took.items():
                    p50s[name][mode].append(round(statistics.median(values), 3))
            print(f"block {block + 1}/{blocks}: " + "; ".join(
                f"{name} " + ", ".join(f"{m} {p50s[name][m][-1]}" for m in MODES)
                for name, _ in trees), flush=True)
    finally:
        for _, daemon, client in running:
            bench.stop_daemon(daemon, client)
        for copy in copies:
            shutil.rmtree(copy, ignore_errors=True)
    return p50s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True,
                        help="a MEMORYD_HOME kept by `scripts/bench.py --keep-home`")
    parser.add_argument("--tree", type=_tree, action="append", required=True,
                        metavar="NAME=PATH", help="a code tree to run (give two or more; "
                        "the first is the baseline)")
    parser.add_argument("--rounds", type=int, default=6,
                        help="daemons of each tree, in alternating order (default 6)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--embedder", choices=("hash", "model"), default="hash",
                        help="the store's embedder: `hash` for the bench's store-only homes, "
                        "`model` for a --real-search home (MEMORYD_MODEL_DIR)")
    parser.add_argument("--paired", type=int, metavar="BLOCKS",
                        help="run the trees at once, each on a copy of the store, every "
                        "query to each in turn, BLOCKS blocks of the queries (instead of "
                        "--rounds of daemons taking turns)")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    if len(args.tree) < 2:
        parser.error("give at least two --tree")
    if args.rounds < 1:
        parser.error("--rounds must be 1 or more")
    if not (args.home / "config").is_dir():
        parser.error(f"{args.home} is not a MEMORYD_HOME (no config folder)")
    bench_appliance.as_installed()

    if args.paired is not None and args.paired < 1:
        parser.error("--paired must be 1 or more")
    trees: list[tuple[str, Path]] = args.tree
    queries = bench_appliance.queries(args.queries, seed=23)
    if args.paired is not None:
        report_paired(args, trees, paired(args.home, trees, queries, args.embedder,
                                          args.paired))
        return
    daemons: dict[str, list[dict[str, list[float]]]] = {name: [] for name, _ in trees}
    for round_ in range(args.rounds):
        for name, tree in trees if round_ % 2 == 0 else trees[::-1]:
            p50s = one_daemon(args.home, tree, queries, args.embedder)
            daemons[name].append(p50s)
            print(f"round {round_ + 1}/{args.rounds} {name}: "
                  + ", ".join(f"{m} {v}" for m, v in p50s.items()), flush=True)

    base = trees[0][0]
    medians = {name: {mode: statistics.median(v for d in runs for v in d[mode])
                      for mode in MODES} for name, runs in daemons.items()}
    report: dict[str, Any] = {
        "home": str(args.home), "rounds": args.rounds, "queries": args.queries,
        "trees": {name: str(tree) for name, tree in trees},
        "daemons": daemons,
        "median_p50_ms": medians,
        "over_" + base: {name: {mode: round(medians[name][mode] / medians[base][mode], 3)
                                for mode in MODES} for name in medians},
    }
    _print_table({name: {mode: [v for d in runs for v in d[mode]] for mode in MODES}
                  for name, runs in daemons.items()}, medians, report["over_" + base],
                 f"over {base}")
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))


def _print_table(p50s: dict[str, dict[str, list[float]]],
                 medians: dict[str, dict[str, float]],
                 ratios: dict[str, dict[str, float]], ratio_label: str) -> None:
    """The report as a markdown table: each tree's p50s' range, median and ratio."""
    print("| tree | " + " | ".join(f"{m} p50 range, ms | {m} median | {m} {ratio_label}"
                                    for m in MODES) + " |")
    print("|---|" + "---|---|---|" * len(MODES))
    for name, modes in p50s.items():
        cells = []
        for mode in MODES:
            values = modes[mode]
            cells += [f"{min(values)}-{max(values)}", f"{medians[name][mode]:.3f}",
                      f"{ratios[name][mode]}"]
        print(f"| {name} | " + " | ".join(cells) + " |")


def report_paired(args: argparse.Namespace, trees: list[tuple[str, Path]],
                  p50s: dict[str, dict[str, list[float]]]) -> None:
    """Each tree's median p50 over the blocks, and the median over the blocks of its
    p50 over the first tree's in the same block."""
    base = trees[0][0]
    report: dict[str, Any] = {
        "home": str(args.home), "paired_blocks": args.paired, "queries": args.queries,
        "trees": {name: str(tree) for name, tree in trees},
        "blocks": p50s,
        "median_p50_ms": {name: {mode: statistics.median(values)
                                 for mode, values in modes.items()}
                          for name, modes in p50s.items()},
        "paired_over_" + base: {
            name: {mode: round(statistics.median(
                own / first for own, first in zip(values, p50s[base][mode], strict=True)), 3)
                for mode, values in modes.items()}
            for name, modes in p50s.items()},
    }
    _print_table(p50s, report["median_p50_ms"], report["paired_over_" + base],
                 f"paired over {base}")
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
