"""A neighbour graph (HNSW, by usearch) over the RAM vectors' first-pass projections, so
that an unfiltered vector search visits a few thousand rows instead of scanning them all.

The first pass (``memoryd.search.first_pass``) still reads a 64-byte code of every row:
6.4 MB at 100k memories, ~0.9 ms of a ~3.7 ms real-model vector search in the daemon,
and it pushes the embedding model's weights out of the cache before the next query
embeds. The graph links each row to its near neighbours; a search walks it from an
entry point (``EXPANSION_SEARCH`` candidates kept on the way) and returns ``FETCH``
rows, which are then scored in full from the int8 rows like any others: the scores are
the full scan's, only the chance of missing one of the true best is new. How many rows
a walk takes is chosen by ``check`` for the store's graph: more for a bigger store.

Built over the rows' projections onto the first pass's axes (int8, cosine): 64 bytes a
row in the graph plus ~2 x ``CONNECTIVITY`` links, 33 MB at 100k rows by usearch's
count (a real-model daemon at 110k memories idled ~50 MB higher with it). On the real
model's vectors of the 100k bench texts (200 bench queries, ``/tmp/s38/hnsw64.py``)
this found 0.994 of the full int8 scan's top 10 at 64 / 200, the walk taking 0.10-0.18
ms; over all 384 dimensions the graph took 81 MB for 0.994 at 128 / 50.

It suits a model's clustered vectors, not every store: on the ``hash`` embedder's sparse
vectors an HNSW graph found 0.40-0.85 of the true neighbours (docs/performance.md). So
a graph is only kept if it passes ``check``: for the last ``CHECK_QUERIES`` queries the
store was searched with, it must find ``CHECK_RECALL`` of the full scan's top ten. The
store's own rows will not do as queries: each one's neighbours are its near-duplicates,
which any graph finds (1.000 on the bench's ``hash`` vectors, which real queries find
0.675 of); mixtures of two rows told the stores apart less clearly (0.675 against 0.948
on the real model's). So a store gets its graph after it has been searched
``CHECK_MIN_QUERIES`` times, and one whose graph fails scans as before.

Built on a worker thread from the rows as they were (``snapshot``), while searches and
writes go on: rows added since are scanned in full, rows changed since are scored in
full (``QuantizedVectors`` tracks them), rows deleted since are dropped from its answers, and a
compaction (which renumbers the rows) drops the graph. Held in RAM only, like the rows.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from memoryd.search.int8 import quantize_rows
from memoryd.search.products import row_products, scan_scores

CONNECTIVITY = 16  # links a node keeps per layer (twice that on the bottom layer)
EXPANSION_ADD = 128  # candidates kept while a row is linked in
EXPANSION_SEARCH = 64  # candidates kept while a search walks the graph
# Rows a search takes from the graph and scores in full: ``FETCH``, or as many more (by
# doubling, up to ``MAX_FETCH``) as ``check`` finds the store's graph needs to reach
# ``CHECK_RECALL``. A bigger store's graph needs a wider walk: over the 330k real-model
# bench memories (`/tmp/s40/gfetch.py`, 64 queries) 200 rows found 0.966 of the scan's
# nearest, 400 0.975, 800 1.000; a walk for 800 took 0.28 ms, where the first pass
# took 2.5.
# Never more than ``MAX_FETCH_SHARE`` of the rows either: a walk that takes a fifth of a
# small store's rows is a scan by another name, and finds what sparse vectors hide from
# a graph (the ``hash`` embedder's, 8,000 of them: 0.970 at 1,600 rows a walk).
FETCH = 200
MAX_FETCH = 1600
MAX_FETCH_SHARE = 0.005
CHECK_QUERIES = 64  # recent queries kept for ``check`` (the last ones)
CHECK_MIN_QUERIES = 32  # searches before a graph is built and checked
CHECK_K = 10
# The share of the full scan's top CHECK_K that the graph must find for the store to
# use it: the int8 scan itself finds ~0.98 of the exact top 10 on the bench's real-model
# vectors, and the floor is 0.95.
CHECK_RECALL = 0.97
PROJECT_CHUNK_ROWS = 4096  # rows projected at a time: the daemon keeps what it allocates


class Snapshot(NamedTuple):
    """What a graph is built from: the RAM rows ``[0, rows)`` as they were, read on the
    worker thread (the arrays are the ones held then; changes after are tracked)."""

    codes: np.ndarray  # int8 rows, (>= rows, dim)
    inv_norms: np.ndarray  # float32, (>= rows,)
    live: np.ndarray  # bool, (rows,): not a hole when taken
    queries: np.ndarray  # (m, dim) float32: the recent queries' unit vectors
    axes: np.ndarray  # (dims, dim) float32: the first pass's axes
    rows: int
    layout: int  # QuantizedVectors' compaction count when taken


def project(unit: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """int8 codes of unit vectors' coordinates along ``axes`` (cosine ignores the
    per-row scale)."""
    return quantize_rows(row_products(np.asarray(unit, dtype=np.float32), axes))[0]


def _usearch_index() -> type:
    """usearch's ``Index``, imported when a graph is first built, and onnxruntime first.

    Once usearch's extension (2.26.6) is loaded, importing onnxruntime (1.32) makes the
    process segfault in onnxruntime's own extension; the other order works
    (tests/unit/test_neighbour_graph.py). The daemon loads its model before it has RAM
    vectors to build a graph of, but a process that builds one first (a test, or a
    daemon on the ``hash`` embedder, which maps ~20 MB of onnxruntime's library for it)
    must not crash if it embeds later.

    SimSIMD is loaded before usearch too, by this module's import of
    ``memoryd.search.products``: with usearch 2.26.6 loaded first, SimSIMD 6.5.16's
    ``cdist`` refuses every pair of float32 arrays ("Input tensors must have matching
    datatypes", ``/tmp/s39/order.py``).
    """
    import onnxruntime  # noqa: F401 - for its import order; see above
    from usearch.index import Index

    return Index


class NeighbourGraph:
    """The graph over rows ``[0, rows)`` of one layout, and whether ``check`` passed."""

    def __init__(self, snapshot: Snapshot, threads: int = 1):
        Index = _usearch_index()  # noqa: N806 - a class
        self.axes = snapshot.axes
        self.rows = snapshot.rows
        self.layout = snapshot.layout
        self.recall: float | None = None
        self.fetch = FETCH  # rows a search takes; ``check`` may widen it
        self._index = Index(
            ndim=self.axes.shape[0],
            metric="cos",
            dtype="i8",
            connectivity=CONNECTIVITY,
            expansion_add=EXPANSION_ADD,
            expansion_search=EXPANSION_SEARCH,
        )
        live = np.flatnonzero(snapshot.live)
        for start in range(0, len(live), PROJECT_CHUNK_ROWS):
            rows = live[start : start + PROJECT_CHUNK_ROWS]
            unit = snapshot.codes[rows].astype(np.float32) * snapshot.inv_norms[rows, None]
            self._index.add(rows.astype(np.uint64), project(unit, self.axes), threads=threads)

    @property
    def nbytes(self) -> int:
        return int(self._index.memory_usage)

    def nearest(self, query_unit: np.ndarray, fetch: int) -> np.ndarray:
        """About the ``fetch`` rows nearest ``query_unit`` (int64 row numbers)."""
        code = project(query_unit.reshape(1, -1), self.axes)[0]
        matches = self._index.search(code, fetch, threads=1)
        return np.asarray(matches.keys, dtype=np.int64)

    def check(self, snapshot: Snapshot) -> float:
        """The share of the full int8 scan's ``CHECK_K`` nearest that the graph finds
        (after scoring the rows it returns in full) for the snapshot's recent queries,
        as a search ranks them: with ``FETCH`` rows a walk, else twice as many and so on,
        up to ``MAX_FETCH`` (and ``MAX_FETCH_SHARE`` of the rows), until it finds
        ``CHECK_RECALL``. Kept in ``recall``, and the
        rows a search takes from now on in ``fetch``."""
        codes, inv_norms, n = snapshot.codes, snapshot.inv_norms, snapshot.rows
        queries = quantize_rows(snapshot.queries)[0]
        live = snapshot.live
        if not len(queries) or np.count_nonzero(live) <= CHECK_K:
            self.recall = 0.0
            return 0.0
        wanted: list[tuple[np.ndarray, np.ndarray, set[int]]] = []
        for code in queries:
            full = scan_scores(code[None, :], codes[:n], inv_norms[:n])
            full[~live] = -np.inf
            best = set(np.argpartition(-full, CHECK_K)[:CHECK_K].tolist())
            unit = code.astype(np.float32)
            wanted.append((code, unit / max(float(np.linalg.norm(unit)), 1e-12), best))
        fetch, most = FETCH, max(FETCH, min(MAX_FETCH, int(MAX_FETCH_SHARE * n)))
        while True:
            found = 0
            for code, unit, best in wanted:
                walked = self.nearest(unit, fetch)
                walked = walked[walked < n]
                walked = walked[live[walked]]
                scores = scan_scores(code[None, :], codes[walked], inv_norms[walked])
                mine = walked[np.argsort(-scores, kind="stable")[:CHECK_K]]
                found += len(best.intersection(mine.tolist()))
            self.recall, self.fetch = found / (len(wanted) * CHECK_K), fetch
            if self.recall >= CHECK_RECALL or fetch >= most:
                return self.recall
            fetch = min(2 * fetch, most)
