"""Exact cosine similarity against the stored vectors: what every candidate is re-scored
with, whichever index found it."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def exact_similarities(
    query: np.ndarray, stored: Iterable[tuple[str, bytes | None]]
) -> dict[str, float]:
    """Cosine similarity of ``query`` to each stored (normalised float32) vector of its
    dimension."""
    scores = {}
    for memory_id, blob in stored:
        if blob is not None:
            vec = np.frombuffer(blob, dtype=np.float32)
            if vec.shape == query.shape:
                scores[memory_id] = float(np.dot(vec, query))
    return scores
