"""QueuedVectors: the index tier's queue, searched exactly until a flush writes it.

Checked against a dict of the same puts and discards (what the queue used to be), scored
by brute force."""

from __future__ import annotations

import random

import numpy as np

from memoryd.search.columns import MIN_CAPACITY
from memoryd.search.queued import QueuedVectors

DIM = 8


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    rows = rng.standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def reference_nearest(
    reference: dict[str, tuple[str, np.ndarray]], query: np.ndarray, k: int, tag: str | None
) -> list[str]:
    scored = [
        (float(vector @ query), memory_id)
        for memory_id, (t, vector) in reference.items()
        if tag is None or t == tag
    ]
    scored.sort(key=lambda s: -s[0])
    return [memory_id for _, memory_id in scored[:k]]


def test_matches_a_dict_through_puts_replacements_and_discards():
    rng = np.random.default_rng(7)
    choose = random.Random(7)
    queue = QueuedVectors()
    reference: dict[str, tuple[str, np.ndarray]] = {}
    pool = [f"id-{n}" for n in range(3 * MIN_CAPACITY)]  # enough to grow and to compact
    for _ in range(60):
        if choose.random() < 0.75:
            ids = choose.sample(pool, choose.randint(1, 300))
            tags = [choose.choice(["a", "b", "c"]) for _ in ids]
            vectors = unit_rows(rng, len(ids))
            queue.put(ids, tags, vectors)
            reference.update(zip(ids, zip(tags, vectors, strict=True), strict=True))
        else:
            ids = choose.sample(pool, choose.randint(1, 200))
            queue.discard(ids)
            for memory_id in ids:
                reference.pop(memory_id, None)
        assert len(queue) == len(reference)
        assert set(queue.ids()) == set(reference)
        query = unit_rows(rng, 1)[0]
        for tag in (None, "a", "c"):
            got = queue.nearest(query, 10, tag)
            assert [memory_id for memory_id, _ in got] == reference_nearest(
                reference, query, 10, tag
            )
            for memory_id, similarity in got:
                assert np.isclose(similarity, float(reference[memory_id][1] @ query), atol=1e-5)
    ids, tags, matrix = queue.rows()
    assert sorted(ids) == sorted(reference) and len(ids) == len(tags) == len(matrix)
    for memory_id, tag, vector in zip(ids, tags, matrix, strict=True):
        assert tag == reference[memory_id][0]
        assert np.array_equal(vector, reference[memory_id][1])
        held = queue.get(memory_id)
        assert held is not None and held[0] == tag and np.array_equal(held[1], vector)


def test_an_id_put_twice_keeps_its_last_vector():
    rng = np.random.default_rng(1)
    first, second = unit_rows(rng, 2)
    queue = QueuedVectors()
    queue.put(["x", "y", "x"], ["a", "a", "b"], np.stack([first, second, second]))
    assert len(queue) == 2
    held = queue.get("x")
    assert held is not None and held[0] == "b" and np.array_equal(held[1], second)
    ids, tags, _ = queue.rows()
    assert sorted(zip(ids, tags, strict=True)) == [("x", "b"), ("y", "a")]
    assert [i for i, _ in queue.nearest(second, 5, "a")] == ["y"]


def test_replaced_rows_are_reused_rather_than_the_matrix_doubled():
    rng = np.random.default_rng(2)
    queue = QueuedVectors()
    ids = [f"id-{n}" for n in range(MIN_CAPACITY // 4)]
    for _ in range(20):  # the same ids changed over and over: 5 x the room in all
        queue.put(ids, ["a"] * len(ids), unit_rows(rng, len(ids)))
    assert len(queue) == len(ids)
    assert len(queue._live) == MIN_CAPACITY
    last = unit_rows(rng, 1)[0]
    queue.put([ids[0]], ["a"], last[None, :])
    assert queue.nearest(last, 1)[0][0] == ids[0]


def test_an_empty_queue_and_an_unknown_tag_find_nothing():
    queue = QueuedVectors()
    query = unit_rows(np.random.default_rng(3), 1)[0]
    assert queue.nearest(query, 10) == []
    queue.put(["x"], ["a"], query[None, :])
    assert queue.nearest(query, 10, "b") == []
    assert queue.nearest(query, 0) == []
    assert queue.get("y") is None and "x" in queue and "y" not in queue
    queue.discard(["x"])
    assert queue.nearest(query, 10) == [] and not queue
    assert queue.rows()[0] == []
