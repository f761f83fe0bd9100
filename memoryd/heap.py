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

The cyclic garbage collector is tuned for the daemon too (``tune_collector``), and glibc
keeps at most ``ARENAS_MAX`` malloc arenas in the RAM tier (``limit_arenas``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging
import sys

log = logging.getLogger(__name__)

# glibc's malloc arenas at most (its default: 8 a core). Each thread that allocates
# gets one of its own while there are fewer, and what one arena frees only it can reuse.
ARENAS_MAX = 2
M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)
# Net new container objects (lists, dicts, class instances) before the cyclic collector's
# youngest generation is scanned; CPython's default is 700.
COLLECTOR_THRESHOLD = 50_000


def prepare() -> None:
    """Call once, before any load: Arrow's buffers from malloc, so ``release`` reaches
    them. Loads through Arrow were no slower with it.

    (A fixed mmap threshold for glibc, via mallopt, saved another ~6 MB of an idle
    daemon after a 100k import but cost ~7% of its ingest rate: not used.)
    """
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())


def tune_collector() -> None:
    """Call once in the daemon's process: the collector runs far less often.

    An import's batch of 1,000 memories holds ~10 containers a memory until it is
    stored, so at the default threshold each batch set off ~15 collections of the youngest
    generation, which moved the batch's objects on to older generations, and every so
    often a collection of the whole heap (~30 ms each). Over a 100k import that was
    ~0.6 s of ~7 s (measured with ``gc.callbacks``); at this threshold a batch is freed
    before any collection. Cyclic garbage is still collected: when the daemon's young
    objects pass the threshold, and by ``release`` once writes and searches pause.
    """
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(COLLECTOR_THRESHOLD, older, oldest)


def limit_arenas() -> bool:
    """Call once, early in the daemon's process (before its threads allocate): glibc
    keeps at most ``ARENAS_MAX`` malloc arenas. Whether the limit was set.

    The daemon's threads (the event loop, DuckDB's, the model's, SimSIMD's, executors)
    each had an arena of their own, and an import left memory spread over them that
    ``malloc_trim`` could not give back: at 100k bench memories, idle RSS after the
    import was 297.1-300.4 MB with glibc's default and 282.7-287.0 with two arenas
    (four and six runs), 260.5-261.6 against 266.6-268.0 after a restart; four
    arenas gave 293.1-295.2, three 294.6. Store-only ingest: 15,940-19,231 per s with
    two against 17,763-20,185. With the real model at 100k, seven alternating daemons
    each: vector search about the same (3.91-5.08 against 3.77-4.85 ms p50), hybrid
    ~0.3 ms slower (4.45-6.15 against 4.62-6.08) (docs/performance-log.md, *Two malloc
    arenas*).

    Not for a store in the index tier (``memoryd.server.daemon.run_foreground``): Lance
    searches on threads of its own, which then share two arenas. Daemons started on the
    1M bench store, four of each taking turns (``scripts/bench_ab.py``): hybrid / vector
    search 18.46 / 15.27 ms p50 without the limit against 21.93 / 17.27 with it, and
    15.07 / 14.00 against 16.90 / 14.20 with the search through Lance's dataset
    (docs/performance-log.md). The limit cannot be raised again for threads started
    later: glibc keeps it in a static variable from the first new arena it needs with
    the limit set (``arena_get2`` in malloc/arena.c).
    """
    libc = _libc()
    if libc is None:
        return False
    try:
        mallopt = libc.mallopt
    except AttributeError:  # not glibc
        return False
    return bool(mallopt(M_ARENA_MAX, ARENAS_MAX))


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, once: ``find_library`` runs ``ldconfig`` each time it is asked."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def _malloc_trim() -> None:
    libc = _libc()
    if libc is None:
        return
    try:
        trim = libc.malloc_trim
    except AttributeError:  # musl and others have no malloc_trim
        return
    trim(0)


def release() -> None:
    gc.collect()
    _malloc_trim()
