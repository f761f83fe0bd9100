"""The appliance benchmark runs end to end on a small store (so the script cannot rot)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_appliance.py"


def test_bench_appliance_smoke(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--memories", "200", "--searches", "10",
         "--cli-runs", "2", "--json-out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert figures["stored"] == 200 and figures["waiting_for_embedding"] == 0
    for key in ("ingest_per_s", "search_hybrid_p50_ms", "search_vector_p95_ms",
                "cli_search_roundtrip_p50_ms", "ingest_peak_rss_mb"):
        assert figures[key] > 0, key
    assert "| search_hybrid_p50_ms |" in proc.stdout


def test_bench_scale_smoke(tmp_path):
    """scripts/bench.py end to end on 1,000 memories (the issue's CI smoke), peers
    included when installed."""
    out = tmp_path / "scale.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT.parent / "bench.py"), "--sizes", "1000", "--queries", "10",
         "--real", "0", "--json-out", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    [size] = report["sizes"]
    assert size["memories"] == 1000 and size["search_tier"] == "ram"
    assert size["vector_recall_at_10"] >= 0.95  # int8 in RAM: near exact
    assert size["vector_tag_recall_at_10"] >= 0.95  # a narrow filter: every match ranked
    for key in ("store_ingest_per_s", "hybrid_p50_ms", "lexical_p95_ms", "vector_p50_ms",
                "hybrid_namespace_p50_ms", "vector_tag_p50_ms",
                "idle_rss_mb", "idle_rss_after_restart_mb", "disk_bytes_per_memory",
                "cold_start_to_first_search_s"):
        assert size[key] > 0, key
    assert size["numpy"]["p50_ms"] > 0
    try:
        import chromadb  # noqa: F401
    except ImportError:
        return
    assert 0 < size["chroma"]["recall_at_10"] <= 1 and size["chroma"]["e2e_p50_ms"] > 0
    # chroma again at the recall memoryd keeps, and our vector search against it.
    matched = size["chroma"]["matched"]
    assert matched["reached"] and matched["recall_at_10"] >= 0.95 and matched["e2e_p50_ms"] > 0
    assert size["vector_p50_over_chroma_matched_e2e_p50"] > 0
    assert "chroma at recall >= 0.95 e2e_p50_ms" in proc.stdout


def test_bench_scale_smoke_with_an_ann_index(tmp_path):
    """The same on the index tier with an ANN index (small partitions, so that 1,000
    memories have 20 of them): the calibrated steady state is measured too."""
    from memoryd.search.probes import DEFAULT_PROBES, LADDER

    out = tmp_path / "scale.json"
    env = dict(os.environ, MEMORYD_SEARCH_RAM_MAX="0", MEMORYD_SEARCH_ANN_MIN_ROWS="500",
               MEMORYD_SEARCH_ANN_PARTITION_ROWS="50")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT.parent / "bench.py"), "--sizes", "1000", "--queries", "30",
         "--real", "0", "--no-peers", "--json-out", str(out)],
        capture_output=True, text=True, timeout=900, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    [size] = json.loads(out.read_text())["sizes"]
    assert size["search_tier"] == "index" and size["ann_trainings"] >= 1
    # 30 queries in three modes that reach the index: enough for a calibration's sample.
    assert size["ann_probes"] in (*LADDER, DEFAULT_PROBES)
    assert size["vector_recall_at_10"] >= 0.95
    assert size["vector_calibrated_recall_at_10"] >= 0.95
    assert size["hybrid_calibrated_p50_ms"] > 0 and size["vector_calibrated_p50_ms"] > 0
    assert "| vector_calibrated_recall_at_10 |" in proc.stdout


def test_bench_real_model_search_smoke(tmp_path):
    """The real-model comparison (``--real-search``) end to end on 300 memories: the
    daemon with the model, its recall against exact search over the same model's vectors,
    and chromadb's end-to-end query on them when installed."""
    out = tmp_path / "real.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT.parent / "bench.py"), "--sizes", "", "--queries", "10",
         "--real", "0", "--real-search", "300", "--json-out", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(out.read_text())["real_model_search"]
    assert found["memories"] == 300 and found["first_pass"] is False  # under its minimum
    assert found["vector_recall_at_10"] >= 0.95
    assert found["vector_p50_ms"] > 0 and found["hybrid_p50_ms"] > 0 and found["ingest_per_s"] > 0
    assert found["imported_beside_them"] == 30 and found["searches_during_import"] >= 1
    assert found["vector_during_import_p50_ms"] > 0
    assert "real model, 300 memories" in proc.stdout
    assert "while another connection imported 30 more" in proc.stdout
    try:
        import chromadb  # noqa: F401
    except ImportError:
        return
    assert found["chroma"]["e2e_recall_at_10"] > 0.5 and found["chroma"]["e2e_p50_ms"] > 0
    assert found["vector_p50_over_chroma_e2e_p50"] > 0
    # chromadb's queries and the daemon's searches, taking turns in the same minutes.
    turns = found["chroma"]["alternating"]
    assert len(turns["other_p50_ms"]) == len(turns["chroma_e2e_p50_ms"]) == 4
    assert all(x > 0 for x in turns["other_p50_ms"] + turns["chroma_e2e_p50_ms"])
    assert found["alternating_vector_over_chroma_e2e"] == turns["ratio_of_medians"] > 0
    assert "alternating (4 turns each)" in proc.stdout


def _kept_home(stderr: str) -> Path:
    [line] = [ln for ln in stderr.splitlines() if ln.startswith("kept ")]
    return Path(line.split()[1])


def _bench_ab(home: Path, repo: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """scripts/bench_ab.py on ``home`` with two trees of ``repo`` (a and b), 10 queries."""
    return subprocess.run(
        [sys.executable, str(SCRIPT.parent / "bench_ab.py"), "--home", str(home),
         "--tree", f"a={repo}", "--tree", f"b={repo}", "--queries", "10", *options],
        capture_output=True, text=True, timeout=900,
    )


def test_bench_ab_alternates_daemons_of_each_tree(tmp_path):
    """scripts/bench_ab.py on a kept 1,000-memory home: daemons of each code tree take
    turns, and a tree's own code is what runs (a broken copy stops the run)."""
    repo = SCRIPT.parents[1]
    made = subprocess.run(
        [sys.executable, str(SCRIPT.parent / "bench.py"), "--sizes", "1000", "--queries", "5",
         "--real", "0", "--no-peers", "--keep-home"],
        capture_output=True, text=True, timeout=900,
    )
    assert made.returncode == 0, made.stderr[-2000:]
    home = _kept_home(made.stderr)
    try:
        out = tmp_path / "ab.json"
        run = _bench_ab(home, repo, "--rounds", "2", "--json-out", str(out))
        assert run.returncode == 0, run.stderr[-2000:]
        report = json.loads(out.read_text())
        for name in ("a", "b"):
            daemons = report["daemons"][name]
            assert len(daemons) == 2
            for mode in ("vector", "hybrid"):
                assert all(len(d[mode]) == 2 and min(d[mode]) > 0 for d in daemons), daemons
            assert report["over_a"][name]["hybrid"] > 0
        assert report["over_a"]["a"] == {"vector": 1.0, "hybrid": 1.0}
        assert "| b |" in run.stdout

        # Paired: both trees up at once, each on its own copy of the home, which goes.
        copies_before = set(Path(tempfile.gettempdir()).glob("mdab*"))
        run = _bench_ab(home, repo, "--paired", "2", "--json-out", str(out))
        assert run.returncode == 0, run.stderr[-2000:]
        report = json.loads(out.read_text())
        for name in ("a", "b"):
            for mode in ("vector", "hybrid"):
                blocks = report["blocks"][name][mode]
                assert len(blocks) == 2 and min(blocks) > 0, report
            assert report["paired_over_a"][name]["vector"] > 0
        assert report["paired_over_a"]["a"] == {"vector": 1.0, "hybrid": 1.0}
        assert "vector paired over a" in run.stdout and "block 2/2" in run.stdout
        assert set(Path(tempfile.gettempdir()).glob("mdab*")) == copies_before

        broken = tmp_path / "broken"
        shutil.copytree(repo / "memoryd", broken / "memoryd",
                        ignore=shutil.ignore_patterns("__pycache__"))
        (broken / "memoryd" / "__main__.py").write_text("raise SystemExit(3)\n")
        failed = subprocess.run(
            [sys.executable, str(SCRIPT.parent / "bench_ab.py"), "--home", str(home),
             "--tree", f"a={repo}", "--tree", f"broken={broken}", "--rounds", "1",
             "--queries", "5"],
            capture_output=True, text=True, timeout=900,
        )
        assert failed.returncode != 0
        assert "memoryd exited during start-up" in failed.stderr
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_bench_ab_refuses_a_tree_without_memoryd(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT.parent / "bench_ab.py"), "--home", str(tmp_path),
         "--tree", f"a={SCRIPT.parents[1]}", "--tree", f"b={tmp_path}"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert f"{tmp_path} holds no memoryd package" in proc.stderr
