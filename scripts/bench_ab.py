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
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
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
    env = dict(os.environ, MEMORYD_HOME=str(home), PYTHONPATH=str(tree), PYTHONSAFEPATH="1")
    if embedder == "hash":
        env["MEMORYD_EMBEDDING_PROVIDER"] = "hash"
    daemon, client = bench_appliance.start_daemon(env)
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
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    if len(args.tree) < 2:
        parser.error("give at least two --tree")
    if args.rounds < 1:
        parser.error("--rounds must be 1 or more")
    if not (args.home / "config").is_dir():
        parser.error(f"{args.home} is not a MEMORYD_HOME (no config folder)")
    bench_appliance.as_installed()

    trees: list[tuple[str, Path]] = args.tree
    queries = bench_appliance.queries(args.queries, seed=23)
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
    print("| tree | " + " | ".join(f"{m} p50 range, ms | {m} median | over {base}"
                                    for m in MODES) + " |")
    print("|---|" + "---|---|---|" * len(MODES))
    for name, runs in daemons.items():
        cells = []
        for mode in MODES:
            values = [v for d in runs for v in d[mode]]
            cells += [f"{min(values)}-{max(values)}", f"{medians[name][mode]:.2f}",
                      f"{report['over_' + base][name][mode]}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
