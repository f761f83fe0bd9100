"""The RAM vectors' neighbour graph (memoryd/search/graph.py): a search of every row walks
it instead of scanning, with the full scan's scores and nearly its answers; rows written
after its snapshot are still found, deleted ones never returned; a compaction drops it;
and on vectors it cannot serve (sparse ones, as the ``hash`` embedder's) it fails its
check on the store's own queries and is not used."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
from support import uid

from memoryd.embed.base import HashEmbedder
from memoryd.search import first_pass as fp
from memoryd.search import graph as graph_module
from memoryd.search.graph import CHECK_MIN_QUERIES, CHECK_RECALL, NeighbourGraph
from memoryd.search.quantized import COMPACT_MIN_ROWS, QuantizedVectors

DIM = 96
ROWS = 8000
REFRESH = 0.05


def clustered(rng: np.random.Generator, n: int) -> np.ndarray:
    """Vectors in ~40 clusters of a 12-dimension subspace, as a model's are in a few
    dozen dimensions."""
    mixing = np.random.default_rng(99).standard_normal((12, DIM)).astype(np.float32)
    centres = np.random.default_rng(98).standard_normal((40, 12)).astype(np.float32)
    latent = centres[rng.integers(0, 40, n)] + 0.6 * rng.standard_normal((n, 12))
    return (latent.astype(np.float32) @ mixing
            + 0.05 * rng.standard_normal((n, DIM)).astype(np.float32))


def store_of(vectors: np.ndarray, tags: list[str] | None = None) -> QuantizedVectors:
    store = QuantizedVectors(DIM)
    n = len(vectors)
    store.upsert([uid(i) for i in range(n)], tags or ["default"] * n, vectors)
    store.start_first_pass(fp.train_basis(*store.first_pass_sample(), n, dims=16))
    while store.first_pass_building:
        store.build_first_pass(4096)
    return store


def searched(store: QuantizedVectors, queries: np.ndarray) -> None:
    for query in queries:
        store.search(query, 40)


def build(store: QuantizedVectors) -> bool:
    snapshot = store.graph_snapshot()
    graph = NeighbourGraph(snapshot)
    return store.install_graph(graph, graph.check(snapshot) >= CHECK_RECALL)


def with_graph(vectors: np.ndarray, queries: np.ndarray) -> QuantizedVectors:
    store = store_of(vectors)
    searched(store, queries)
    assert store.graph_due(1000, REFRESH)
    assert build(store)
    return store


def test_a_graph_is_due_once_the_store_has_been_searched_enough():
    rng = np.random.default_rng(1)
    store = store_of(clustered(rng, ROWS))
    assert not store.graph_due(1000, REFRESH)
    searched(store, clustered(rng, CHECK_MIN_QUERIES - 1))
    assert not store.graph_due(1000, REFRESH)
    # Filtered searches are not what the graph serves, and are not recorded.
    store.search(clustered(rng, 1)[0], 10, tag="default")
    assert not store.graph_due(1000, REFRESH)
    searched(store, clustered(rng, 1))
    assert store.graph_due(1000, REFRESH)
    assert not store.graph_due(ROWS + 1, REFRESH)  # too few rows for it


def test_searches_of_every_row_walk_the_graph_with_the_full_scans_scores():
    rng = np.random.default_rng(2)
    vectors = clustered(rng, ROWS)
    store, plain = with_graph(vectors, clustered(rng, 64)), store_of(vectors)
    status = store.graph_status()
    assert status["ready"] and status["rows"] == ROWS
    assert status["recall"] >= CHECK_RECALL
    queries = clustered(rng, 100)
    overlap = 0
    for query in queries:
        mine, theirs = store.search(query, 40), plain.search(query, 40)
        assert len(mine) == 40
        # Every similarity is the one the full scan gives that row.
        every = dict(plain.search(query, ROWS))
        assert all(score == every[i] for i, score in mine)
        assert [s for _, s in mine] == sorted((s for _, s in mine), reverse=True)
        overlap += len({i for i, _ in mine[:10]} & {i for i, _ in theirs[:10]})
    assert overlap / (10 * len(queries)) >= 0.95
    assert store.graph_searches == len(queries)
    # Searches in a namespace or among ids scan as before.
    assert store.search(queries[0], 10, tag="default") == plain.search(queries[0], 10,
                                                                        tag="default")
    assert store.graph_searches == len(queries)


def test_a_graph_that_misses_with_few_rows_takes_more_until_it_finds_enough(monkeypatch):
    """A bigger store's graph needs a wider walk: the check doubles the rows a walk
    takes until the graph finds ``CHECK_RECALL`` of the scan's nearest, and searches
    then take that many; never more than ``MAX_FETCH``, nor its share of the rows.
    Here a walk keeps no more candidates than the rows it returns, and starts at 10."""
    monkeypatch.setattr(graph_module, "EXPANSION_SEARCH", 1)
    monkeypatch.setattr(graph_module, "FETCH", 10)
    rng = np.random.default_rng(6)
    vectors, queries = clustered(rng, ROWS), clustered(rng, 64)
    store = store_of(vectors)
    searched(store, queries)
    snapshot = store.graph_snapshot()
    graph = NeighbourGraph(snapshot)
    monkeypatch.setattr(graph_module, "MAX_FETCH", 10)
    assert graph.check(snapshot) < CHECK_RECALL and graph.fetch == 10
    monkeypatch.setattr(graph_module, "MAX_FETCH", 1600)  # 0.005 of 8,000 rows: 40
    assert graph.check(snapshot) >= CHECK_RECALL
    assert graph.fetch in (20, 40)
    widened = graph.fetch
    assert store.install_graph(graph, True)
    taken: list[int] = []
    real_nearest = NeighbourGraph.nearest

    def nearest(self, query_unit, fetch):
        taken.append(fetch)
        return real_nearest(self, query_unit, fetch)

    monkeypatch.setattr(NeighbourGraph, "nearest", nearest)
    store.search(queries[0], 5)
    assert taken == [widened] and store.graph_status()["fetch"] == widened
    monkeypatch.setattr(graph_module, "FETCH", 1)  # one that cannot get there stops
    monkeypatch.setattr(graph_module, "MAX_FETCH", 4)
    assert graph.check(snapshot) < CHECK_RECALL and graph.fetch == 4


def test_rows_written_after_the_snapshot_are_found_and_deleted_ones_never_returned():
    rng = np.random.default_rng(3)
    vectors = clustered(rng, ROWS)
    store = store_of(vectors)
    searched(store, clustered(rng, 64))
    snapshot = store.graph_snapshot()
    graph = NeighbourGraph(snapshot)
    # While the graph is built: a new row, a row changed in place, a row deleted.
    added, moved, gone = clustered(rng, 3)
    store.upsert([uid(ROWS)], ["default"], added[None, :])
    store.upsert([uid(5)], ["default"], moved[None, :])
    store.upsert([uid(7)], ["default"], gone[None, :])
    assert store.install_graph(graph, graph.check(snapshot) >= CHECK_RECALL)
    store.remove([uid(7)])
    before = store.graph_searches
    assert store.search(added, 1)[0][0] == uid(ROWS)
    assert store.search(moved, 1)[0][0] == uid(5)
    assert uid(7) not in {i for i, _ in store.search(gone, 40)}
    assert store.graph_searches == before + 3
    # Rows added or changed since the snapshot are scored in full by every search; once
    # they are more than the refresh share, a new graph is due.
    assert not store.graph_due(1000, REFRESH)
    more = clustered(rng, int(2 * REFRESH * ROWS))
    store.upsert([uid(ROWS + 1 + i) for i in range(len(more))], ["default"] * len(more), more)
    while store.first_pass_building:
        store.build_first_pass(4096)
    assert store.graph_due(1000, REFRESH)


def test_a_compaction_drops_the_graph_and_a_build_across_one_is_not_installed():
    rng = np.random.default_rng(4)
    vectors = clustered(rng, ROWS)
    queries = clustered(rng, 64)
    store, plain = with_graph(vectors, queries), store_of(vectors)
    assert ROWS > COMPACT_MIN_ROWS
    gone = [uid(i) for i in range(0, ROWS, 3)]  # a third: past the compaction share
    for holder in (store, plain):
        holder.remove(gone)
    assert not store.graph_status()["ready"]
    before = store.graph_searches
    for query in queries[:10]:
        assert store.search(query, 40) == plain.search(query, 40)
    assert store.graph_searches == before
    # A graph built from rows as they were before a compaction is not installed.
    snapshot = store.graph_snapshot()
    store.remove([uid(i) for i in range(1, ROWS, 3)])
    assert not store.install_graph(NeighbourGraph(snapshot), True)
    assert not store.graph_status()["ready"]


def test_sparse_vectors_fail_the_check_and_are_not_tried_again_until_the_rows_double():
    words = [f"w{i}" for i in range(400)]
    draw = random.Random(5)
    embedder = HashEmbedder(DIM)
    texts = [" ".join(draw.sample(words, 8)) for _ in range(ROWS)]
    store = store_of(embedder.embed(texts))
    searched(store, embedder.embed([" ".join(draw.sample(words, 3)) for _ in range(64)]))
    assert store.graph_due(1000, REFRESH)
    snapshot = store.graph_snapshot()
    graph = NeighbourGraph(snapshot)
    assert graph.check(snapshot) < CHECK_RECALL
    assert not store.install_graph(graph, False)
    status = store.graph_status()
    assert not status["ready"] and status["failed_check_at_rows"] == ROWS
    assert not store.graph_due(1000, REFRESH)
    more = embedder.embed([" ".join(draw.sample(words, 8)) for _ in range(ROWS)])
    store.upsert([uid(ROWS + i) for i in range(ROWS)], ["default"] * ROWS, more)
    while store.first_pass_building:
        store.build_first_pass(4096)
    assert store.graph_due(1000, REFRESH)


def test_a_process_that_built_a_graph_can_still_load_the_model():
    """usearch loaded before onnxruntime made a later `import onnxruntime` segfault
    (usearch 2.26.6, onnxruntime 1.32): building a graph first must not."""
    script = """
import numpy as np
from memoryd.search.graph import NeighbourGraph, Snapshot
rng = np.random.default_rng(0)
codes = rng.integers(-127, 128, (500, 32)).astype(np.int8)
axes = np.ascontiguousarray(np.linalg.qr(rng.standard_normal((32, 16)))[0].T, np.float32)
snapshot = Snapshot(codes, np.full(500, 1 / 200, np.float32), np.ones(500, bool),
                    np.zeros((0, 32), np.float32), axes, 500, 0)
NeighbourGraph(snapshot)
import onnxruntime
print("loaded", onnxruntime.__version__)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("loaded")
