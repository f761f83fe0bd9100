"""Give memory freed by one-off bulk loads back to the operating system.

Loading the RAM search tier reads every vector and posting once through DuckDB and
Arrow. The temporary buffers are freed afterwards, but allocators keep the pages for
reuse: glibc's malloc arenas held ~50 MB that an idle daemon at 100k memories never
needed again. ``release`` asks glibc to return them.

Arrow allocates from malloc too (``prepare``). Its default pool on Linux
wheels is mimalloc, which kept buffers a worker thread had freed even when another
thread called ``release_unused`` (~190 MB kept of ~190 MB freed in tests/unit/
test_heap.py's scenario). The daemon's loads run on three threads: an idle daemon at
100k memories settled at ~265 or ~305 MB by chance.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import sys

log = logging.getLogger(__name__)


def prepare() -> None:
    """Call once, before any load: Arrow's buffers from malloc, so ``release`` reaches
    them. Loads through Arrow were no slower with it.

    (A fixed mmap threshold for glibc, via mallopt, saved another ~6 MB of an idle
    daemon after a 100k import but cost ~7% of its ingest rate: not used.)
    """
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())


def _malloc_trim() -> None:
    if not sys.platform.startswith("linux"):
        return
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return
    trim(0)


def release() -> None:
    gc.collect()
    _malloc_trim()
