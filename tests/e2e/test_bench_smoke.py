"""The appliance benchmark runs end to end on a small store (so the script cannot rot)."""

from __future__ import annotations

import json
import subprocess
import sys
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
