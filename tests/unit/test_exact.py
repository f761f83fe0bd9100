"""Exact similarities and the nearest stored vectors (memoryd.search.exact)."""

from __future__ import annotations

import numpy as np

from memoryd.search.exact import exact_similarities, nearest
from memoryd.search.vector_blob import vector_blob


def test_nearest_orders_by_similarity_then_id_and_skips_what_has_no_vector():
    rng = np.random.default_rng(5)
    rows = rng.standard_normal((300, 16)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    stored = [(f"m{n:03d}", vector_blob(rows[n])) for n in range(300)]
    stored += [("twin-b", vector_blob(rows[7])), ("twin-a", vector_blob(rows[7])),  # ties
               ("no-vector", None), ("other-dim", vector_blob(rows[0][:8]))]
    query = rows[7]
    scores = exact_similarities(query, stored)
    assert "no-vector" not in scores and "other-dim" not in scores
    for n, (memory_id, _) in enumerate(stored[:300]):
        # Stored as float16: within its rounding (2**-11 of each component).
        assert abs(scores[memory_id] - float(np.dot(rows[n], query))) < 1e-3
    expected = sorted(scores, key=lambda i: (-scores[i], i))
    assert nearest(query, stored, 3) == ["m007", "twin-a", "twin-b"]
    assert nearest(query, stored, 2) == ["m007", "twin-a"]  # the tie at the cut, by id
    assert nearest(query, stored, 40) == expected[:40]
    assert nearest(query, stored, 1000) == expected
    assert nearest(query, [], 5) == [] and nearest(query, stored, 0) == []
