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


# Standard modules a call to a running daemon does without: subprocess starts one,
# tempfile (with shutil, which brings lzma and bz2) finds a fallback runtime folder, tomllib
# reads a config file. Together ~15-20 ms of the CLI's ~140 on a slow hour (790eb24).
ON_DEMAND = ("subprocess", "tempfile", "shutil", "lzma", "bz2", "tomllib")


def _loaded_engines(*args: str, engines: tuple[str, ...] = ENGINES) -> list[str]:
    command = [sys.executable, "-c", PROBE, json.dumps(list(args)), json.dumps(engines)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    marker = [ln for ln in proc.stderr.splitlines() if ln.startswith("LOADED=")]
    assert marker, proc.stderr
    return json.loads(marker[-1].removeprefix("LOADED="))


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["config", "show", "--json"],
                                  ["search", "--help"], ["daemon", "run", "--help"]])
def test_cli_imports_no_engine(args: list[str]) -> None:
    assert _loaded_engines(*args) == []


@pytest.mark.parametrize("args", [["--version"], ["config", "show", "--json"]])
def test_cli_imports_what_it_needs_only_when_it_needs_it(
    args: list[str], tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMORYD_HOME", str(tmp_path))  # no config file there
    assert _loaded_engines(*args, engines=ON_DEMAND) == []


def test_version_prints_the_package_version() -> None:
    from memoryd import __version__

    proc = subprocess.run([sys.executable, "-m", "memory_cli.main", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"memory {__version__}"
