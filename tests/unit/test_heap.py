"""Memory freed after a bulk load goes back to the operating system, whichever thread
allocated it: the daemon's loads run on its DuckDB, vectors and executor threads, and
its idle release runs on another one."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from memoryd import heap

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


# In a child: the thresholds are process-wide.
COLLECTOR = textwrap.dedent(
    """
    import gc
    import weakref
    from memoryd import heap

    def collections_during_batches():
        started = []
        def count(phase, info):
            if phase == "start":
                started.append(info["generation"])
        gc.callbacks.append(count)
        for _ in range(20):  # an import's batches: containers held until stored, then freed
            batch = [{"id": n, "tags": [str(n)], "terms": {"word": n}} for n in range(1000)]
            del batch
        gc.callbacks.remove(count)
        return len(started)

    before = collections_during_batches()
    heap.tune_collector()
    after = collections_during_batches()

    class Node:
        pass

    node = Node()
    node.me = node  # a cycle: reference counting alone never frees it
    gone = weakref.ref(node)
    del node
    heap.release()  # the daemon's idle release
    print(before, after, gone() is None)
    """
)


def test_import_batches_no_longer_set_off_the_collector():
    out = subprocess.run(
        [sys.executable, "-c", COLLECTOR], capture_output=True, text=True, check=True
    ).stdout
    before, after, collected = out.split()
    assert int(before) >= 20, out  # the default threshold: several for every batch
    assert int(after) == 0, out
    assert collected == "True", out  # cyclic garbage is still collected


@pytest.mark.parametrize("index_tier", [False, True])
def test_the_daemon_process_tunes_the_collector_and_limits_arenas_below_the_index_tier(
    tmp_path, index_tier
):
    # A config the daemon refuses: run_foreground returns at once, after tuning. A store
    # whose vector index is on disk (the index tier) keeps glibc's arenas for Lance.
    home = tmp_path / "home"
    code = textwrap.dedent(
        f"""
        import gc, io
        from memoryd import heap
        from memoryd.config import resolve_paths
        from memoryd.server.daemon import run_foreground
        limited = []
        limit_arenas = heap.limit_arenas
        heap.limit_arenas = lambda: limited.append(limit_arenas()) or limited[-1]
        paths = resolve_paths({{"MEMORYD_HOME": {str(home)!r}}})
        paths.config_dir.mkdir(parents=True)
        paths.config_file.write_text("not = [valid toml")
        if {index_tier!r}:
            paths.vector_dir.mkdir(parents=True)
        print(run_foreground(paths, stderr=io.StringIO()), gc.get_threshold()[0], limited)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    status, threshold, limited = out.split(maxsplit=2)
    assert status == "1", out
    assert int(threshold) == heap.COLLECTOR_THRESHOLD, out
    expected = "[True]" if sys.platform.startswith("linux") else "[False]"
    assert limited.strip() == ("[]" if index_tier else expected), out


# In a child: arenas are process-wide. Eight threads allocate while all are alive, then
# glibc's malloc_info (XML, one <heap nr=...> per arena) is counted.
ARENAS = textwrap.dedent(
    """
    import ctypes, ctypes.util, os, sys, tempfile, threading
    from memoryd import heap

    if sys.argv[1] == "limit":
        assert heap.limit_arenas()
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.fopen.restype = ctypes.c_void_p
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    barrier = threading.Barrier(8)

    def work():
        barrier.wait()  # all alive at once: none reuses an arena another left
        blocks = [libc.malloc(4096) for _ in range(64)]
        barrier.wait()
        for block in blocks:
            libc.free(block)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    path = os.path.join(tempfile.mkdtemp(), "info.xml")
    out = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(out))
    libc.fclose(ctypes.c_void_p(out))
    print(open(path).read().count("<heap nr="))
    """
)


def test_the_daemon_keeps_at_most_two_malloc_arenas():
    if not sys.platform.startswith("linux"):
        return  # glibc only; elsewhere limit_arenas says it did nothing
    counts = {
        mode: int(subprocess.run([sys.executable, "-c", ARENAS, mode], capture_output=True,
                                 text=True, check=True).stdout)
        for mode in ("default", "limit")
    }
    assert counts["default"] > heap.ARENAS_MAX, counts  # glibc gives each thread one
    assert counts["limit"] <= heap.ARENAS_MAX, counts
