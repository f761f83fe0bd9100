"""Vectors acknowledged in DuckDB but not yet written to the encrypted index (the index
tier's *queue*), searched exactly until a flush writes them.

Held as one float32 matrix that grows by doubling, a row per queued vector, with a live
mask and a row per id. They used to be a dict of (tag, vector) per id, which each search
stacked into a matrix: 1.58 ms for 3,400 queued vectors and 13.1 ms for 20,000, against
0.08 and 0.64 ms scoring the live rows where they lie (one matrix-vector product). That
had kept the index writes of an import small (``FLUSH_GATHER_ROWS`` in
``memoryd.vector_catalog``).

The catalog holds the index's rows that its ANN index does not cover yet the same way
(``VectorCatalog._unindexed``), scored beside the queue.
"""

from __future__ import annotations

from collections.abc import KeysView, Sequence

import numpy as np

from memoryd.search.columns import grow_columns
from memoryd.search.ram import Codes


class QueuedVectors:
    """Queued vectors by id, each under its namespace tag; putting an id again replaces
    its vector (the newer one wins)."""

    def __init__(self, capacity: int = 0) -> None:
        self._capacity_hint = capacity
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._tags = np.zeros(0, dtype=np.int32)  # ``_tag_codes``' codes
        self._live = np.zeros(0, dtype=bool)
        self._ids: list[str] = []  # by row, dead rows included
        self._row: dict[str, int] = {}  # live ids only
        self._tag_codes: Codes[str] = Codes()

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, memory_id: object) -> bool:
        return memory_id in self._row

    def ids(self) -> KeysView[str]:
        return self._row.keys()

    def get(self, memory_id: str) -> tuple[str, np.ndarray] | None:
        """The tag and vector queued for ``memory_id``, if any."""
        row = self._row.get(memory_id)
        if row is None:
            return None
        return self._tag_codes.values[self._tags[row]], self._matrix[row].copy()

    def put(self, ids: Sequence[str], tags: Sequence[str], vectors: np.ndarray) -> None:
        """Queue ``vectors`` (a row per id, all of one width), replacing any queued before
        for the same ids. An id given twice keeps its last row."""
        n = len(ids)
        if n == 0:
            return
        self.discard(ids)
        if self._matrix.shape[1] != vectors.shape[1]:
            assert not self._ids, "queued vectors are of one width"
            self._matrix = np.zeros((0, vectors.shape[1]), dtype=np.float32)
        used = len(self._ids)
        if used + n > len(self._live) and len(self._row) <= used // 2:
            self._compact()  # mostly replaced rows: reuse the room rather than double it
            used = len(self._ids)
        grow_columns(
            self, ("_matrix", "_tags", "_live"), max(used + n, self._capacity_hint)
        )
        self._matrix[used : used + n] = vectors
        self._tags[used : used + n] = [self._tag_codes.code(tag) for tag in tags]
        self._live[used : used + n] = True
        self._ids.extend(ids)
        for row, memory_id in enumerate(ids, start=used):
            previous = self._row.get(memory_id)
            if previous is not None:  # the same id twice in one call
                self._live[previous] = False
            self._row[memory_id] = row

    def discard(self, ids: Sequence[str]) -> None:
        """Unqueue ``ids`` (those queued)."""
        row = self._row
        for memory_id in ids:
            found = row.pop(memory_id, None)
            if found is not None:
                self._live[found] = False

    def rows(self) -> tuple[list[str], list[str], np.ndarray]:
        """The queued ids, their tags and their vectors (a matrix of its own), in the
        order they were queued."""
        live = np.flatnonzero(self._live[: len(self._ids)])
        ids = [self._ids[n] for n in live.tolist()]
        tags = [self._tag_codes.values[code] for code in self._tags[live].tolist()]
        return ids, tags, self._matrix[live]

    def nearest(
        self, query: np.ndarray, k: int, tag: str | None = None
    ) -> list[tuple[str, float]]:
        """The ``k`` queued vectors (under ``tag`` if given) most similar to ``query``:
        (id, similarity), best first."""
        used = len(self._ids)
        if k <= 0 or not self._row:
            return []
        keep = self._live[:used]
        if tag is not None:
            code = self._tag_codes.find(tag)
            if code is None:
                return []
            keep = keep & (self._tags[:used] == code)
        places = np.flatnonzero(keep)
        if len(places) == 0:
            return []
        # Every row scored where it lies (a copy of the kept rows would cost more than
        # the rows it skips), then the kept ones picked.
        sims = (self._matrix[:used] @ query)[places]
        if len(sims) > k:
            best = np.argpartition(-sims, k - 1)[:k]
            best = best[np.argsort(-sims[best], kind="stable")]
        else:
            best = np.argsort(-sims, kind="stable")
        return [(self._ids[int(places[n])], float(sims[n])) for n in best]

    def _compact(self) -> None:
        """Move the live rows to the front, in their order, dropping the dead ones."""
        live = np.flatnonzero(self._live[: len(self._ids)])
        count = len(live)
        self._matrix[:count] = self._matrix[live]
        self._tags[:count] = self._tags[live]
        self._live[:count] = True
        self._live[count:] = False
        self._ids = [self._ids[n] for n in live.tolist()]
        self._row = {memory_id: row for row, memory_id in enumerate(self._ids)}
