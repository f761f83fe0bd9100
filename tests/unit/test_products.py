"""The RAM scan's threads do not burn a core after a search: SimSIMD's OpenMP workers
sleep when a scan is done instead of spinning (``memoryd.search.products``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

# In a child: libgomp reads its wait policy once, when simsimd loads.
SCENARIO = textwrap.dedent(
    """
    import time
    import numpy as np
    from memoryd.search.products import row_products

    rows = np.random.default_rng(0).integers(-127, 128, (100_000, 64), dtype=np.int8)
    query = rows[:1].copy()
    row_products(query, rows, threads=2)  # the first call's own set-up, not counted
    time.sleep(0.1)
    idle = 0.0
    for _ in range(5):
        row_products(query, rows, threads=2)  # a two-thread scan, as a search makes
        before = time.process_time()
        time.sleep(0.1)  # the daemon waiting for the next request
        idle += time.process_time() - before
    print(idle)
    """
)


def _cpu_while_idle(policy: str | None) -> float:
    """CPU seconds a child took over 0.5 s of sleeps between two-thread scans
    (``time.process_time``: every thread, to the nanosecond)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run(
        [sys.executable, "-c", SCENARIO], capture_output=True, text=True, check=True, env=env
    ).stdout
    return float(out)


def test_scan_threads_sleep_between_searches():
    if len(os.sched_getaffinity(0)) < 2:
        # Searches scan on one thread there, and libgomp spins little with more threads
        # than CPUs whatever the policy, so the control below could not spin.
        pytest.skip("needs two CPUs: scans use a second thread only when a core is spare")
    spinning = _cpu_while_idle("ACTIVE")  # a policy the user set is kept: the control
    assert spinning > 0.1, spinning  # its worker did spin through the sleeps
    # libgomp's default spun ~6 ms after each scan here (~30 ms in all); memoryd's
    # policy leaves ~0.3 ms.
    assert _cpu_while_idle(None) < 0.01 * spinning
