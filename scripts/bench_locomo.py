#!/usr/bin/env python3
"""Search quality on LoCoMo: recall@k of memory search, driven through the public protocol.

    python scripts/bench_locomo.py --data ../shared/bench/locomo-dev

Each conversation is imported into its own namespace: one memory per turn (a shared
photo's caption appended as "[shares a photo: ...]"), with `dia_id` and `speaker` in
metadata, the session date as `created_at`, the session as `thread` and the turn index as
`position`. Then one search per question of categories 1-4 that has evidence, in that
namespace; recall@k = |evidence ∩ dia_ids of the top k| / |evidence|, averaged over
questions. Prints R@1/R@5/R@10 per mode and category, and search latency over the socket.
The method is in docs/search.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_appliance import start_daemon  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO.parent / "shared" / "models" / "all-MiniLM-L6-v2-int8"
MODES = ("hybrid", "lexical", "vector")
KS = (1, 5, 10)


def session_date(text: str) -> str:
    """'1:56 pm on 8 May, 2023' -> ISO-8601."""
    parsed = datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y")
    return parsed.isoformat()


def turns(conversation: dict) -> list[dict]:
    items = []
    sessions = sorted((int(m.group(1)), key) for key in conversation
                      if (m := re.fullmatch(r"session_(\d+)", key)))
    for number, key in sessions:
        when = session_date(conversation[f"{key}_date_time"])
        for position, turn in enumerate(conversation[key]):
            content = turn["text"]
            if turn.get("blip_caption"):
                content += f" [shares a photo: {turn['blip_caption']}]"
            items.append({
                "content": content, "kind": "turn", "created_at": when,
                "thread": f"session-{number}", "position": position,
                "metadata": {"dia_id": turn["dia_id"], "speaker": turn["speaker"]},
            })
    return items


def evidence_ids(qa: dict) -> set[str]:
    ids: set[str] = set()
    for entry in qa.get("evidence") or []:
        ids.update(part.strip() for part in re.split(r"[;,]", entry) if part.strip())
    return ids


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/bench/locomo-dev")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--home", type=Path, help="MEMORYD_HOME to use (default: a temp dir)")
    args = parser.parse_args()

    home = args.home or Path(tempfile.mkdtemp(prefix="mdlocomo", dir="/tmp"))
    os.environ["MEMORYD_HOME"] = str(home)
    os.environ.setdefault("MEMORYD_MODEL_DIR", str(DEFAULT_MODEL))
    daemon, client = start_daemon(dict(os.environ))
    try:
        conversations = {
            p.stem: json.loads(p.read_text()) for p in sorted(args.data.glob("*.json"))
        }
        for name, convo in conversations.items():
            source = convo.get("conversation", convo)
            items = [dict(item, namespace=f"locomo-{name}") for item in turns(source)]
            for start in range(0, len(items), 500):
                result = client.import_items(items[start:start + 500])
                if result["failed"]:
                    sys.exit(f"import failed: {result['results']}")
        while client.status()["waiting_for_embedding"]:
            time.sleep(0.1)

        results: dict[str, dict] = {}
        for mode in args.modes.split(","):
            hits_at = {k: [] for k in KS}
            by_category: dict[int, list[float]] = defaultdict(list)
            took = []
            for name, convo in conversations.items():
                for qa in convo["qa"]:
                    wanted = evidence_ids(qa)
                    if qa.get("category") not in (1, 2, 3, 4) or not wanted:
                        continue
                    started = time.perf_counter()
                    hits = client.search(qa["question"], namespace=f"locomo-{name}",
                                         limit=max(KS), mode=mode)["hits"]
                    took.append((time.perf_counter() - started) * 1000)
                    found = [h["metadata"].get("dia_id") for h in hits]
                    for k in KS:
                        hits_at[k].append(len(wanted & set(found[:k])) / len(wanted))
                    by_category[qa["category"]].append(len(wanted & set(found[:10])) / len(wanted))
            n = len(hits_at[KS[0]])
            results[mode] = {
                "questions": n,
                **{f"R@{k}": round(sum(v) / n, 4) for k, v in hits_at.items()},
                "R@10_by_category": {c: round(sum(v) / len(v), 4)
                                     for c, v in sorted(by_category.items())},
                "p50_ms": round(pct(took, 0.5), 2), "p95_ms": round(pct(took, 0.95), 2),
            }
        client.shutdown()
    finally:
        daemon.wait(60) if daemon.poll() is None else None

    print("| mode | questions | R@1 | R@5 | R@10 | p50 ms | p95 ms | R@10 by category |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, r in results.items():
        cats = " ".join(f"{c}:{v:.3f}" for c, v in r["R@10_by_category"].items())
        print(f"| {mode} | {r['questions']} | {r['R@1']:.3f} | {r['R@5']:.3f} | "
              f"{r['R@10']:.3f} | {r['p50_ms']} | {r['p95_ms']} | {cats} |")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
