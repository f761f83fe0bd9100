"""Memory freed after a bulk load goes back to the operating system, whichever thread
allocated it: the daemon's loads run on its DuckDB, vectors and executor threads, and
its idle release runs on another one."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# In a child: the Arrow pool is process-wide, and this process may have used it already.
SCENARIO = textwrap.dedent(
    """
    import threading
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    from memoryd import heap

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 // 2**20

    heap.prepare()  # as the service does before its loads
    base = rss_mb()
    held = []

    def load():  # ~160 MB of Arrow buffers made on a worker thread
        held.extend(pc.multiply(pa.array(np.arange(50_000) + n), 2) for n in range(400))

    worker = threading.Thread(target=load)
    worker.start()
    worker.join()
    peak = rss_mb()
    held.clear()
    releaser = threading.Thread(target=heap.release)
    releaser.start()
    releaser.join()
    print(base, peak, rss_mb())
    """
)


def test_arrow_buffers_freed_on_another_thread_leave_the_process():
    out = subprocess.run(
        [sys.executable, "-c", SCENARIO], capture_output=True, text=True, check=True
    ).stdout
    base, peak, after = (int(x) for x in out.split())
    assert peak - base > 100, out  # the load really held memory
    # Arrow's default mimalloc pool kept all of it here (after == peak).
    assert after - base < 0.2 * (peak - base), out
