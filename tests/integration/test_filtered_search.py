"""Vector search under filters the vector indexes cannot apply (kind, tags, metadata,
time): the hits are the nearest memories that pass, however few pass.

The indexes hold vectors and namespaces only, so these filters narrow the candidates
afterwards: a narrow filter must rank every memory that passes, a broad one must fetch
enough nearest candidates. The hash embedder keeps ingest fast, and the test computes
the same vectors to know the true nearest memories that pass."""

from __future__ import annotations

import random

import numpy as np
import pytest
from support import ANN_TIER, INDEX_TIER, wait_status

from memoryd.embed.base import HashEmbedder

HASH = {"MEMORYD_EMBEDDING_PROVIDER": "hash"}
N = 2400
WORDS = ("amber basil cedar delta ember fjord garnet harbor iris juniper kelp lotus maple "
         "nectar onyx pepper quartz raven sage tundra umber violet willow yarrow acorn birch "
         "comet dune elm fern glacier heron inlet jade kiwi lagoon meadow nutmeg olive pine"
         ).split()


def corpus() -> list[dict]:
    rng = random.Random(7)
    items = []
    for n in range(N):
        item: dict = {"content": " ".join(rng.sample(WORDS, 6)) + f" note {n}"}
        if n % 100 == 0:
            item["tags"] = ["rare"]  # 1%
        if n % 5 in (0, 1):
            item["kind"] = "fact"  # 40%
        if n % 50 == 7:
            item["created_at"] = "2021-03-01T00:00:00Z"  # 2%
        if n % 20 == 3:
            item["metadata"] = {"project": "apollo"}  # 5%
        items.append(item)
    return items


FILTERS = {  # filter -> which corpus items pass it
    "tag on 1%": ({"tags": ["rare"]}, lambda i: "rare" in i.get("tags", [])),
    "kind on 40%": ({"kind": "fact"}, lambda i: i.get("kind") == "fact"),
    "until, 2%": ({"until": "2022-01-01T00:00:00Z"}, lambda i: "created_at" in i),
    "since, 98%": ({"since": "2022-01-01T00:00:00Z"}, lambda i: "created_at" not in i),
    "metadata on 5%": ({"metadata": {"project": "apollo"}},
                       lambda i: i.get("metadata") == {"project": "apollo"}),
    "kind and tag": ({"kind": "fact", "tags": ["rare"]},
                     lambda i: i.get("kind") == "fact" and "rare" in i.get("tags", [])),
}
TIERS = {"ram": HASH, "index": {**INDEX_TIER, **HASH}, "ann": {**ANN_TIER, **HASH}}


def ready(tier: str):
    if tier == "ram":
        return lambda s: s["ram_vectors"]["ready"] and s["ram_vectors"]["rows"] == N
    if tier == "index":
        return lambda s: s["vector_index"]["rows"] == N and s["vector_index"]["pending"] == 0
    return lambda s: (s["vector_index"]["rows"] == N and s["vector_index"]["pending"] == 0
                      and s["vector_index"]["ann"].get("unindexed") == 0
                      and not s["vector_index"]["ann"].get("training"))


@pytest.mark.parametrize("tier", list(TIERS))
def test_filtered_vector_search_returns_the_nearest_memories_that_pass(make_daemon, tier):
    items = corpus()
    embedder = HashEmbedder()
    vectors = embedder.embed([i["content"] for i in items])
    rng = random.Random(11)
    queries = [" ".join(rng.sample(WORDS, 4)) for _ in range(6)]
    daemon = make_daemon(TIERS[tier]).start()
    with daemon.client() as c:
        for start in range(0, N, 600):
            assert not c.import_items(items[start:start + 600])["failed"]
        wait_status(c, ready(tier), timeout=120.0)
        for name, (options, passes) in FILTERS.items():
            eligible = [n for n, item in enumerate(items) if passes(item)]
            for query in queries:
                sims = vectors[eligible] @ embedder.embed([query])[0]
                expected = {items[eligible[k]]["content"] for k in np.argsort(-sims)[:10]}
                hits = c.search(query, mode="vector", limit=10, **options)["hits"]
                found = {h["content"] for h in hits}
                assert len(hits) == min(10, len(eligible)), (name, query, len(hits))
                assert found <= {items[n]["content"] for n in eligible}, name
                # int8 (RAM) and encrypted (index) distances may swap a near tie at the edge
                assert len(found & expected) >= min(9, len(eligible)), (name, query)
                hybrid = c.search(query, mode="hybrid", limit=10, **options)["hits"]
                assert len(hybrid) == min(10, len(eligible)), (name, query, "hybrid")
                assert {h["content"] for h in hybrid} <= {items[n]["content"] for n in eligible}


def test_a_small_namespace_finds_its_nearest_memories_in_the_ann_index(make_daemon):
    """Above the RAM tier the ANN index probes some of its partitions; a namespace that
    holds 1% of the rows has few of them in the partitions nearest a query, so its search
    probes more partitions (as many of its rows as an unscoped search sees rows)."""
    items = corpus()
    for n, item in enumerate(items):
        item["namespace"] = "small" if n % 100 == 5 else "big"
    embedder = HashEmbedder()
    vectors = embedder.embed([i["content"] for i in items])
    small = [n for n, item in enumerate(items) if item["namespace"] == "small"]
    env = {**ANN_TIER, **HASH, "MEMORYD_SEARCH_ANN_PARTITION_ROWS": "8"}  # ~300 partitions
    daemon = make_daemon(env).start()
    with daemon.client() as c:
        for start in range(0, N, 600):
            assert not c.import_items(items[start:start + 600])["failed"]
        status = wait_status(c, ready("ann"), timeout=120.0)
        assert status["vector_index"]["ann"]["probes"] * 2 < N // 8  # most left unprobed
        rng = random.Random(13)
        recalls = []
        for _ in range(12):
            query = " ".join(rng.sample(WORDS, 4))
            sims = vectors[small] @ embedder.embed([query])[0]
            expected = {items[small[k]]["content"] for k in np.argsort(-sims)[:10]}
            hits = c.search(query, mode="vector", limit=10, namespace="small")["hits"]
            assert all(h["namespace"] == "small" for h in hits)
            recalls.append(len(expected & {h["content"] for h in hits}) / 10)
    assert np.mean(recalls) >= 0.95, recalls


def test_a_vector_search_that_reads_its_best_candidates_first_ranks_as_one_that_reads_all(
    make_daemon
):
    """A vector search ranked by similarity alone reads the rank facts of its best
    candidates first, and the rest only when too few of those pass its filters
    (``service._vector_shortlist``). With an importance weight it reads them all; every
    memory here has the same importance, so that search must give the same hits in the
    same order, whether the best candidates pass or not."""
    items = corpus()
    rng = random.Random(5)
    queries = [" ".join(rng.sample(WORDS, 4)) for _ in range(4)]
    daemon = make_daemon(HASH).start()
    with daemon.client() as c:
        for start in range(0, N, 600):
            assert not c.import_items(items[start:start + 600])["failed"]
        wait_status(c, ready("ram"), timeout=120.0)
        for options in ({}, *(f for f, _ in FILTERS.values())):
            for query, limit in zip(queries, (10, 3, 10, 1), strict=True):
                by_similarity = c.search(query, mode="vector", limit=limit, **options)["hits"]
                all_read = c.search(query, mode="vector", limit=limit, importance_weight=0.1,
                                    **options)["hits"]
                assert [h["id"] for h in by_similarity] == [h["id"] for h in all_read], options
                assert len(by_similarity) == min(limit, len(all_read)) and by_similarity
