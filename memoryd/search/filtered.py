"""How many nearest candidates a vector search fetches when a filter must narrow them.

The vector indexes know a memory's vector and namespace, nothing else (nothing readable
lies beside the vectors). Every other filter (kind, tags, thread, metadata, time) is
applied to the candidates afterwards, so a filtered search must fetch enough nearest
candidates that about ``pool`` of them pass. Fetching a fixed 4x the pool returned one
hit of ten, of 50 that matched, for a tag on 1% of 5,000 memories.

With the share of the scope that passes counted first, the search fetches ``MARGIN``
times ``pool / share``. When that is more than ``MAX_FETCH``, or more than the memories
that pass, the filter is narrow: every memory that passes is ranked, exactly, instead
(at 1M memories, reading 11,000 stored vectors took ~21 ms).
"""

from __future__ import annotations

import math

MARGIN = 2.0  # fetch twice what the share predicts: matches are not spread evenly
MAX_FETCH = 4096  # nearest candidates one search fetches for a filter, at most
EXACT_MAX = 50_000  # memories ranked one by one, at most (above: fetch, however many)


def nearest_to_fetch(matching: int, in_scope: int, pool: int) -> int | None:
    """How many nearest candidates to fetch so that about ``pool`` pass a filter that
    ``matching`` of the ``in_scope`` memories pass; ``None``: rank every match instead."""
    if matching >= in_scope:
        return pool
    fetch = math.ceil(MARGIN * pool * in_scope / max(matching, 1))
    if matching <= EXACT_MAX and (matching <= fetch or fetch > MAX_FETCH):
        return None
    return min(fetch, in_scope)
