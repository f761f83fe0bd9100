"""A RAM prefilter for the duplicate check: which content hashes may already be stored.

Every add checks its (namespace, content hash) pairs against the memories table. In SQL
that is a join over every stored hash: ~14 ms per 1,000-memory batch at 100k memories,
growing with the store, and an import checks twice (before embedding, to skip the model
for known content, and again inside the transaction). Here each stored hash is kept as its
first 64 bits (8 bytes a memory, never written anywhere), so only the pairs that may be
stored go to SQL, which stays the judge: new content, the usual case, costs no query.

Keys are only ever added: a deleted or edited memory leaves its old key behind, which
only sends that content to SQL once more. Owned by the DuckDB owner thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

MERGE_AFTER = 50_000  # recent keys folded into the sorted array beyond this many


def key_of(content_hash: str) -> int:
    """The first 64 bits of a hex SHA-256 digest."""
    return int(content_hash[:16], 16)


class ContentKeys:
    def __init__(self) -> None:
        self._sorted = np.zeros(0, dtype=np.uint64)
        self._recent: set[int] = set()
        self.ready = False  # the stored keys are loaded: a miss means "not stored"

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def add(self, content_hashes: Iterable[str]) -> None:
        self._recent.update(key_of(h) for h in content_hashes)
        if len(self._recent) > MERGE_AFTER:
            self.fold()

    def fold(self) -> None:
        """Move the recent keys into the sorted array: 8 bytes a key there, ~36 in the
        set (up to ~4 MB held after an import). Done when writes pause, and when the
        set grows past ``MERGE_AFTER``."""
        if self._recent:
            self._merge(np.fromiter(self._recent, dtype=np.uint64, count=len(self._recent)))
            self._recent = set()

    def load(self, stored: np.ndarray) -> None:
        """The keys of every stored memory (keys added meanwhile are kept)."""
        self._merge(np.asarray(stored, dtype=np.uint64))
        self.ready = True

    def may_contain(self, content_hashes: Sequence[str]) -> list[bool]:
        """Per hash: whether it may be stored (``True`` for all until loaded)."""
        if not self.ready:
            return [True] * len(content_hashes)
        keys = np.fromiter(
            (key_of(h) for h in content_hashes), dtype=np.uint64, count=len(content_hashes)
        )
        at = np.searchsorted(self._sorted, keys)
        found = at < len(self._sorted)
        found[found] = self._sorted[at[found]] == keys[found]
        return [bool(f) or int(k) in self._recent for f, k in zip(found, keys, strict=True)]

    def _merge(self, keys: np.ndarray) -> None:
        # A stable sort of two sorted runs is a linear merge (timsort): 3 ms for 50k keys
        # into 1M, where np.union1d sorted everything again (300 ms, numpy 2.4).
        merged = np.concatenate((self._sorted, np.sort(keys)))
        merged.sort(kind="stable")
        keep = np.empty(len(merged), dtype=bool)
        keep[:1] = True
        np.not_equal(merged[1:], merged[:-1], out=keep[1:])
        self._sorted = merged[keep]

    @property
    def nbytes(self) -> int:
        return int(self._sorted.nbytes) + 36 * len(self._recent)


# ``key_of`` in SQL (a hex literal cast), so a load needs no Python string per memory:
# 1M keys in 0.11 s, against 0.15 s for the Python strings alone plus their conversion.
KEY_SQL = "('0x' || left(content_hash, 16))::UBIGINT"
