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
