"""`memory` must start without importing any engine: lancedb alone takes over a second."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

ENGINES = ("duckdb", "lancedb", "fastembed", "numpy", "pyarrow", "onnxruntime")

# Runs the real entry point, then reports which engine modules got imported on the way.
PROBE = """
import json, sys
args, engines = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))
sys.argv = ["memory", *args]
from memory_cli.main import main
try:
    main()
except SystemExit:
    pass
loaded = sorted(m for m in sys.modules if m.split(".")[0] in engines)
sys.stderr.write("LOADED=" + json.dumps(loaded) + "\\n")
"""


def _loaded_engines(*args: str) -> list[str]:
    command = [sys.executable, "-c", PROBE, json.dumps(list(args)), json.dumps(ENGINES)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    marker = [ln for ln in proc.stderr.splitlines() if ln.startswith("LOADED=")]
    assert marker, proc.stderr
    return json.loads(marker[-1].removeprefix("LOADED="))


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["config", "show", "--json"],
                                  ["search", "--help"], ["daemon", "run", "--help"]])
def test_cli_imports_no_engine(args: list[str]) -> None:
    assert _loaded_engines(*args) == []


def test_version_prints_the_package_version() -> None:
    from memoryd import __version__

    proc = subprocess.run([sys.executable, "-m", "memory_cli.main", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"memory {__version__}"
