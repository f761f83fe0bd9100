"""Exact similarities and the nearest stored vectors (memoryd.search.exact)."""

from __future__ import annotations

import numpy as np

from memoryd.search.exact import exact_similarities, nearest


def test_nearest_orders_by_similarity_then_id_and_skips_what_has_no_vector():
    rng = np.random.default_rng(5)
    rows = rng.standard_normal((300, 16)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    stored = [(f"m{n:03d}", rows[n].tobytes()) for n in range(300)]
    stored += [("twin-b", rows[7].tobytes()), ("twin-a", rows[7].tobytes()),  # ties
               ("no-vector", None), ("other-dim", rows[0][:8].tobytes())]
    query = rows[7]
    scores = exact_similarities(query, stored)
    assert "no-vector" not in scores and "other-dim" not in scores
    for n, (memory_id, _) in enumerate(stored[:300]):
        assert abs(scores[memory_id] - float(np.dot(rows[n], query))) < 1e-6
    expected = sorted(scores, key=lambda i: (-scores[i], i))
    assert nearest(query, stored, 3) == ["m007", "twin-a", "twin-b"]
    assert nearest(query, stored, 2) == ["m007", "twin-a"]  # the tie at the cut, by id
    assert nearest(query, stored, 40) == expected[:40]
    assert nearest(query, stored, 1000) == expected
    assert nearest(query, [], 5) == [] and nearest(query, stored, 0) == []
