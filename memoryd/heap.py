"""Give memory freed by one-off bulk loads back to the operating system.

Loading the RAM search tier reads every vector and posting once through DuckDB and
Arrow. The temporary buffers are freed afterwards, but the allocators keep the pages for
reuse: Arrow's pool and glibc's malloc arenas held ~50 MB that an idle daemon at 100k
memories never needed again. ``release`` asks both to return them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import sys

log = logging.getLogger(__name__)


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
    arrow = sys.modules.get("pyarrow")
    if arrow is not None:
        arrow.default_memory_pool().release_unused()
    _malloc_trim()
