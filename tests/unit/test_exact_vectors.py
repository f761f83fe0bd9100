"""The in-memory exact vector store agrees with brute force through upserts and deletes."""

from __future__ import annotations

import numpy as np

from memoryd.search.exact import ExactVectors


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def brute(ids, vectors, tags, query, k, tag=None):
    scores = [(float(v @ query), i) for i, v, t in zip(ids, vectors, tags, strict=True)
              if tag is None or t == tag]
    return [i for _, i in sorted(scores, key=lambda s: -s[0])[:k]]


def test_matches_brute_force_through_changes():
    rng = np.random.default_rng(1)
    store = ExactVectors(dim=16)
    live: dict[str, tuple[np.ndarray, str]] = {}
    for step in range(30):
        ids = [f"m{step}-{n}" for n in range(200)]
        vectors = unit(rng.standard_normal((200, 16)).astype(np.float32))
        tags = [rng.choice(["a", "b", "c"]) for _ in ids]
        store.upsert(ids, tags, vectors)
        live.update({i: (v, t) for i, v, t in zip(ids, vectors, tags, strict=True)})
        doomed = rng.choice(sorted(live), size=120, replace=False).tolist()
        store.remove(doomed)
        for i in doomed:
            live.pop(i)
        # Re-embed a few: the same id gets a new vector and namespace.
        again = rng.choice(sorted(live), size=10, replace=False).tolist()
        fresh = unit(rng.standard_normal((10, 16)).astype(np.float32))
        store.upsert(again, ["a"] * 10, fresh)
        live.update({i: (v, "a") for i, v in zip(again, fresh, strict=True)})
    assert len(store) == len(live)
    ids = sorted(live)
    vectors = np.stack([live[i][0] for i in ids])
    tags = [live[i][1] for i in ids]
    for query in unit(rng.standard_normal((20, 16)).astype(np.float32)):
        assert [i for i, _ in store.search(query, 10)] == brute(ids, vectors, tags, query, 10)
        assert [i for i, _ in store.search(query, 7, "b")] == brute(
            ids, vectors, tags, query, 7, "b")
    assert store.search(vectors[0], 5, "no-such-tag") == []


def test_compaction_keeps_everything_findable():
    store = ExactVectors(dim=4)
    vectors = unit(np.eye(4, dtype=np.float32).repeat(2000, axis=0)
                   + np.linspace(0, 0.01, 8000, dtype=np.float32)[:, None])
    ids = [f"id{n}" for n in range(8000)]
    store.upsert(ids, ["t"] * 8000, vectors)
    store.remove(ids[:6000])  # more than half: compacts
    assert len(store) == 2000 and "id7999" in store and "id0" not in store
    hits = store.search(np.array([0, 0, 0, 1], dtype=np.float32), 3)
    assert all(i in ids[6000:] for i, _ in hits)
