"""Dot products of rows by SimSIMD: the RAM scan's int8 codes against a query's, and the
first pass's float projections and scatter matrix (``memoryd.search.first_pass``).

One place for one call, because of two things it must get right:

- Not through ``cdist``'s ``out=``: simsimd 6.5.16 returns ``None`` from it without
  taking a reference, so each call took one from ``None``'s count, and a daemon aborted
  ("Fatal Python error: none_dealloc") after 17,181 vector searches. The returned array
  costs the same (100k rows: 1.27 / 0.63 ms on one / two threads, either way).
- Not numpy's ``@``: OpenBLAS keeps ~5 MB after a process's first matrix product and
  buffers for each thread that makes one, and LAPACK's code pages stay mapped. An idle
  daemon at 100k memories held 22 and 40 MB more with the first pass when it trained by
  ``eigh`` and coded by ``@`` (two restarts), of which its own columns are 7.6 MB.
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np

# SimSIMD's threads come from its own copy of libgomp, which reads its wait policy when
# it loads. Without one, a worker spins 300,000 times (GOMP_SPINCOUNT's default) after
# each parallel region before it sleeps: at 100k real-model memories ~9 ms of a core
# after each two-thread scan of a ~3 ms search. PASSIVE workers sleep at once: a search
# 100 ms after the last took 5.1-7.5 ms of CPU instead of 14.7-15.4, at about the same
# latency (docs/performance-log.md). A policy the user set stays.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import simsimd  # noqa: E402 - after the wait policy, which libgomp reads when it loads


def row_products(
    left: np.ndarray,
    right: np.ndarray,
    dtype: Literal["float32", "float64"] = "float32",
    threads: int = 1,
) -> np.ndarray:
    """``left @ right.T`` for rows of one dtype (int8 or float): a new, writable array."""
    if not len(left) or not len(right):  # SimSIMD refuses empty collections
        return np.zeros((len(left), len(right)), dtype=dtype)
    return np.asarray(
        simsimd.cdist(left, right, metric="dot", out_dtype=dtype, threads=threads))


def scan_scores(
    query_code: np.ndarray, codes: np.ndarray, inv_norms: np.ndarray, threads: int = 1
) -> np.ndarray:
    """The RAM scan's score of each int8 row: its dot product with the query's code
    (one row) times the row's inverse norm, the cosine short of the query's own inverse
    norm (a constant, which ranking leaves out). A new float32 array, one per row."""
    scores = row_products(query_code, codes, threads=threads)[0]
    return np.multiply(scores, inv_norms, out=scores)
