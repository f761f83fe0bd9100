"""The RAM vectors' first pass (memoryd/search/first_pass.py) gives the full scan's answer:
its bounds hold for every row, and a search through it returns the same rows and scores
as one without it, through upserts, deletes, namespaces and a compaction, while it is
being built and when its bounds are too loose to help."""

from __future__ import annotations

import numpy as np
from support import uid

from memoryd.search import first_pass as fp
from memoryd.search.quantized import (
    FIRST_PASS_INLINE_ROWS,
    SELECT_STEP,
    QuantizedVectors,
    _about_largest,
    inverse_norms,
    quantize,
)

DIM = 96


def clustered(rng: np.random.Generator, n: int) -> np.ndarray:
    """Vectors that mostly live in a 12-dimension subspace, as a model's do in a few
    dozen: the first pass can bound them tightly."""
    latent = rng.standard_normal((n, 12)).astype(np.float32)
    mixing = np.random.default_rng(99).standard_normal((12, DIM)).astype(np.float32)
    return latent @ mixing + 0.05 * rng.standard_normal((n, DIM)).astype(np.float32)


def with_first_pass(store: QuantizedVectors) -> None:
    store.start_first_pass(fp.train_basis(*store.first_pass_sample(), len(store), dims=16))
    while store.first_pass_building:
        store.build_first_pass(1000)


def twins(rng: np.random.Generator, n: int, vectors: np.ndarray | None = None,
          tags: list[str] | None = None) -> tuple[QuantizedVectors, QuantizedVectors, list[str]]:
    """The same rows in a store with a first pass and in one without."""
    vectors = clustered(rng, n) if vectors is None else vectors
    ids = [uid(i) for i in range(n)]
    tags = tags or ["default"] * n
    fast, plain = QuantizedVectors(DIM), QuantizedVectors(DIM)
    for store in (fast, plain):
        store.upsert(ids, tags, vectors)
    with_first_pass(fast)
    return fast, plain, ids


def assert_same_answers(fast, plain, queries, k=40, tag=None) -> None:
    for query in queries:
        assert fast.search(query, k, tag) == plain.search(query, k, tag)


def test_every_rows_score_is_within_its_bound():
    rng = np.random.default_rng(1)
    store = QuantizedVectors(DIM)
    for vectors in (clustered(rng, 3000), rng.standard_normal((3000, DIM))):
        store = QuantizedVectors(DIM)
        store.upsert([uid(i) for i in range(3000)], ["default"] * 3000, vectors)
        with_first_pass(store)
        first = store._first
        codes = quantize(vectors)
        rows = codes.astype(np.float32) * inverse_norms(codes)[:, None]
        for query in rng.standard_normal((20, DIM)).astype(np.float32):
            query_code = quantize(query[None])
            query_unit = query_code[0].astype(np.float32) * inverse_norms(query_code)[0]
            full = rows @ query_unit
            reduced = first.encode(query_unit)
            dots = (first.codes[:3000].astype(np.int32) @ reduced.code[0].astype(np.int32))
            estimate, bound = first.estimates(reduced, dots.astype(np.float32), 3000)
            assert np.all(full <= bound)
            assert np.all(full >= 2 * estimate - bound)  # the bound is symmetric


def test_the_first_pass_answers_as_the_full_scan_does():
    rng = np.random.default_rng(2)
    fast, plain, _ = twins(rng, 20_000)
    queries = clustered(rng, 50)
    assert_same_answers(fast, plain, queries)
    assert fast.pace.used == 50 and fast.pace.fallbacks == 0
    assert fast.first_pass_status()["ready"] is True
    assert_same_answers(fast, plain, queries, k=10)


def test_through_namespaces_upserts_deletes_and_a_compaction():
    rng = np.random.default_rng(3)
    n = 12_000
    tags = [("a", "b", "c")[i % 3] for i in range(n)]
    fast, plain, ids = twins(rng, n, tags=tags)
    queries = clustered(rng, 20)
    assert_same_answers(fast, plain, queries, tag="b")
    # Rows changed after the pass was built are coded again, and a few new rows with
    # them; a batch of new rows is left to the builder. Until it has coded them, searches
    # score those rows in full beside the pass while they are at most MAX_SHARE of the
    # rows, and scan every row in full once they are more.
    changed = ids[:500] + [uid(n + i) for i in range(FIRST_PASS_INLINE_ROWS)]
    vectors = clustered(rng, len(changed))
    for store in (fast, plain):
        store.upsert(changed, ["a"] * len(changed), vectors)
    assert fast.first_pass_status()["ready"] is True
    assert_same_answers(fast, plain, queries)
    assert_same_answers(fast, plain, queries, tag="a")
    batch = [uid(n + FIRST_PASS_INLINE_ROWS + i) for i in range(700)]
    vectors = clustered(rng, len(batch))
    for store in (fast, plain):  # a new namespace "d" only among them
        store.upsert(batch, ["d"] * 100 + ["a"] * 600, vectors)
    assert fast.first_pass_status()["ready"] is False
    used = fast.pace.used
    assert_same_answers(fast, plain, queries, tag="a")
    assert_same_answers(fast, plain, queries, k=10)
    assert_same_answers(fast, plain, queries, tag="d")
    assert fast.pace.used == used + 3 * len(queries)  # the pass, and 700 rows in full
    more = [uid(2 * n + i) for i in range(1600)]  # 2,300 of 14,364 rows not coded
    vectors = clustered(rng, len(more))
    for store in (fast, plain):
        store.upsert(more, ["c"] * len(more), vectors)
    used = fast.pace.used
    assert_same_answers(fast, plain, queries)
    assert_same_answers(fast, plain, queries, tag="c")
    assert fast.pace.used == used  # scanned in full
    while fast.first_pass_building:
        fast.build_first_pass(1000)
    assert_same_answers(fast, plain, queries)
    assert_same_answers(fast, plain, queries, tag="a")
    # A quarter of the rows deleted: the rows are compacted, the codes follow them.
    gone = ids[1000:5000]
    for store in (fast, plain):
        store.remove(gone)
    assert fast._used == len(fast)  # compacted
    assert fast.first_pass_status()["ready"] is True
    assert_same_answers(fast, plain, queries)
    assert_same_answers(fast, plain, queries, tag="c")
    assert fast.pace.used >= 100 and fast.pace.fallbacks == 0


def test_the_best_estimates_are_the_top_of_the_values_and_never_masked_ones():
    """The rows the first pass scores in full to find its floor: a top set (every value
    left out is below every value chosen), about as many as asked, none masked."""
    rng = np.random.default_rng(7)
    count = 256
    values = rng.standard_normal(100_000).astype(np.float32)
    chosen = _about_largest(values, count, 40)
    left = np.ones(len(values), dtype=bool)
    left[chosen] = False
    assert count // 2 <= len(chosen) <= 2 * count
    assert values[left].max() < values[chosen].min()
    # Most rows masked (another namespace): the sample's threshold is -inf, and the
    # exact selection answers, from the unmasked rows only.
    masked = values.copy()
    masked[SELECT_STEP // 2:] = -np.inf
    masked[::SELECT_STEP] = -np.inf
    live = np.flatnonzero(masked > -np.inf)
    chosen = _about_largest(masked, len(live), len(live))
    assert sorted(chosen.tolist()) == live.tolist()


def test_searches_scan_in_full_until_the_pass_is_built():
    rng = np.random.default_rng(4)
    vectors = clustered(rng, 8000)
    ids = [uid(i) for i in range(8000)]
    fast, plain = QuantizedVectors(DIM), QuantizedVectors(DIM)
    for store in (fast, plain):
        store.upsert(ids, ["default"] * 8000, vectors)
    fast.start_first_pass(fp.train_basis(*fast.first_pass_sample(), len(fast), dims=16))
    fast.build_first_pass(3000)
    assert fast.first_pass_building
    # Changes while it is built: to rows coded already and to rows not yet reached, and
    # a batch of only the latter (nothing to code now: an import's batch failed so).
    changed, new = clustered(rng, 3), clustered(rng, 2)
    for store in (fast, plain):
        store.upsert([ids[10], ids[7000], uid(9000)], ["default"] * 3, changed)
        store.upsert([uid(9001), uid(9002)], ["default"] * 2, new)
    queries = clustered(rng, 10)
    assert_same_answers(fast, plain, queries)
    assert fast.pace.used == 0
    while fast.first_pass_building:
        fast.build_first_pass(3000)
    assert_same_answers(fast, plain, queries)
    assert fast.pace.used == 10


def test_loose_bounds_fall_back_to_the_full_scan_and_back_off():
    rng = np.random.default_rng(5)
    noise = rng.standard_normal((20_000, DIM)).astype(np.float32)  # no subspace to find
    fast, plain, _ = twins(rng, 20_000, vectors=noise)
    queries = rng.standard_normal((60, DIM)).astype(np.float32)
    assert_same_answers(fast, plain, queries)
    assert fast.pace.fallbacks >= 1
    # After each fallback the next searches do not try: far fewer than 60 tried.
    assert fast.pace.used + fast.pace.fallbacks < 30


def test_a_basis_is_due_at_the_minimum_and_again_once_the_rows_double():
    rng = np.random.default_rng(6)
    store = QuantizedVectors(DIM)
    store.upsert([uid(i) for i in range(1000)], ["default"] * 1000, clustered(rng, 1000))
    assert not store.first_pass_due(2000)
    assert store.first_pass_due(1000)
    with_first_pass(store)
    assert not store.first_pass_due(1000)
    store.upsert([uid(i) for i in range(1000, 1999)], ["default"] * 999, clustered(rng, 999))
    assert not store.first_pass_due(1000)
    store.upsert([uid(2000)], ["default"], clustered(rng, 1))
    assert store.first_pass_due(1000)


def test_the_trained_axes_are_orthonormal_and_hold_what_the_top_eigenvectors_hold():
    """``train_basis`` finds its axes by subspace iteration (no LAPACK in the daemon):
    orthonormal, which the bounds need, and as good as the exact principal axes."""
    rng = np.random.default_rng(7)
    store = QuantizedVectors(DIM)
    store.upsert([uid(i) for i in range(5000)], ["default"] * 5000, clustered(rng, 5000))
    codes, inv_norms = store.first_pass_sample()
    basis = fp.train_basis(codes, inv_norms, len(store), dims=16)
    assert basis.axes.shape == (16, DIM)
    np.testing.assert_allclose(basis.axes @ basis.axes.T, np.eye(16), atol=1e-5)
    unit = codes.astype(np.float64) * inv_norms[:, None]
    np.testing.assert_allclose(basis.mean, unit.mean(axis=0), atol=1e-5)
    centred = unit - unit.mean(axis=0)
    scatter = centred.T @ centred

    def held(axes: np.ndarray) -> float:
        return float(np.trace(axes @ scatter @ axes.T) / np.trace(scatter))

    best = np.linalg.eigh(scatter)[1][:, ::-1][:, :16].T
    assert held(basis.axes.astype(np.float64)) >= held(best) - 1e-3
    assert held(basis.axes.astype(np.float64)) > 0.95  # the 12-dimension subspace


def test_axes_stay_orthonormal_when_the_vectors_span_fewer_dimensions_than_the_axes():
    """A scatter matrix of rank below the number of axes (here 0 and 3, for 16 axes)
    leaves subspace iteration nothing for the other axes: they must still come out
    orthonormal, and the answers the full scan's."""
    rng = np.random.default_rng(8)
    for vectors in (np.tile(np.arange(1, DIM + 1, dtype=np.float32), (3000, 1)),
                    rng.standard_normal((3000, 3)).astype(np.float32)
                    @ rng.standard_normal((3, DIM)).astype(np.float32)):
        store = QuantizedVectors(DIM)
        store.upsert([uid(i) for i in range(3000)], ["default"] * 3000, vectors)
        codes, inv_norms = store.first_pass_sample()
        basis = fp.train_basis(codes, inv_norms, 3000, dims=16)
        assert np.isfinite(basis.axes).all()
        np.testing.assert_allclose(basis.axes @ basis.axes.T, np.eye(16), atol=1e-5)
    zero = fp._orthonormal_columns(np.zeros((DIM, 4)))  # nothing at all to start from
    np.testing.assert_allclose(zero.T @ zero, np.eye(4), atol=1e-9)
    fast, plain, _ = twins(rng, 3000, vectors=vectors)
    assert_same_answers(fast, plain, rng.standard_normal((10, DIM)).astype(np.float32))
