"""The ANN index's probes follow the store: recent queries are replayed against more
probes, and searches probe as few partitions as find what those find.

Small partitions (``search.ann_partition_rows``) give a few thousand memories dozens of
partitions, as a million have. The hash embedder's vectors are as clustered as the words
of the texts: memories of a topic share its words, memories of random words share none."""

from __future__ import annotations

import functools
import random
import time

import support
from support import INDEX_TIER

from memoryd.search.probes import DEFAULT_PROBES, SAMPLE

ROWS = 4000
PARTITION_ROWS = 50
PARTITIONS = ROWS // PARTITION_ROWS  # 80: fewer than DEFAULT_PROBES, which probes them all
PROBES_ENV = {
    **INDEX_TIER,
    "MEMORYD_EMBEDDING_PROVIDER": "hash",
    "MEMORYD_SEARCH_ANN_MIN_ROWS": str(ROWS),
    "MEMORYD_SEARCH_ANN_PARTITION_ROWS": str(PARTITION_ROWS),
}
wait_status = functools.partial(support.wait_status, timeout=120.0)


def ann(status):
    return status["vector_index"]["ann"]


def build(client, texts: list[str]) -> list[str]:
    ids = []
    for start in range(0, len(texts), 500):
        result = client.import_items([{"content": t} for t in texts[start : start + 500]])
        ids += [row["id"] for row in result["results"]]
    wait_status(
        client,
        lambda s: ann(s)["trainings"] >= 1 and not ann(s)["training"]
        and s["vector_index"]["pending"] == 0,
    )
    return ids


def topic_texts(rng: random.Random) -> tuple[list[str], list[list[str]]]:
    """40 topics of 8 words each; a memory is 5 words of one topic, and a word of its own."""
    topics = [[f"t{t}w{w}" for w in range(8)] for t in range(40)]
    texts = [" ".join(rng.sample(topics[n % 40], 5)) + f" n{n}" for n in range(ROWS)]
    return texts, topics


def test_clustered_vectors_are_searched_with_fewer_probes(make_daemon):
    rng = random.Random(3)
    texts, topics = topic_texts(rng)
    daemon = make_daemon(PROBES_ENV).start()
    with daemon.client() as c:
        ids = build(c, texts)
        assert ann(c.status())["probes"] == DEFAULT_PROBES and ann(c.status())["calibrations"] == 0
        for _ in range(SAMPLE):
            c.search(" ".join(rng.sample(rng.choice(topics), 3)), mode="vector")
        # Not while users search (here every 0.5 s): only once searches pause.
        for _ in range(10):
            time.sleep(0.5)
            c.search(" ".join(rng.sample(rng.choice(topics), 3)), mode="vector")
        assert ann(c.status())["calibrations"] == 0
        status = wait_status(c, lambda s: ann(s)["calibrations"] >= 1)
        assert ann(status)["probes"] < PARTITIONS
        assert ann(status)["probes_recall"] >= 0.99
        # The ciphertexts' order is good enough here that the pool alone is re-ranked.
        assert ann(status)["fetch_factor"] == 1
        # Each memory is still found by its own text through the fewer probes.
        for n in range(0, ROWS, 173):
            assert c.search(texts[n], mode="vector", limit=3)["hits"][0]["id"] == ids[n]
        calibrated = ann(status)
        # Folding new rows in (a compaction) gives the ANN index a new id; the
        # calibration, kept with the index's id, follows it.
        c.import_items([{"content": " ".join(rng.sample(topics[n % 40], 5)) + f" late{n}"}
                        for n in range(100)])
        wait_status(c, lambda s: s["vector_index"]["pending"] == 0
                    and ann(s)["unindexed"] == 0 and ann(s)["indexed"] == ROWS + 100)
    # A restart starts with the calibration instead of the defaults.
    daemon.restart()
    with daemon.client() as c:
        restarted = ann(wait_status(c, lambda s: s["vector_index"]["ready"]))
        assert restarted["calibrations"] == 0  # none in this run
        kept = ("probes", "fetch_factor", "probes_recall")
        assert [restarted[k] for k in kept] == [calibrated[k] for k in kept]
        for n in range(0, ROWS, 397):
            assert c.search(texts[n], mode="vector", limit=3)["hits"][0]["id"] == ids[n]


def test_probes_stay_when_fewer_would_lose_neighbours(make_daemon):
    rng = random.Random(5)
    words = [f"w{n}" for n in range(5000)]
    texts = [" ".join(rng.sample(words, 6)) for _ in range(ROWS)]
    daemon = make_daemon(PROBES_ENV).start()
    with daemon.client() as c:
        build(c, texts)
        for _ in range(SAMPLE):
            c.search(" ".join(rng.sample(words, 4)), mode="vector")
        status = wait_status(c, lambda s: ann(s)["calibrations"] >= 1)
        assert ann(status)["probes"] >= PARTITIONS  # still every partition


def test_a_training_resets_the_probes_until_recalibrated(make_daemon):
    rng = random.Random(7)
    texts, topics = topic_texts(rng)
    daemon = make_daemon(PROBES_ENV).start()
    with daemon.client() as c:
        build(c, texts)
        for _ in range(SAMPLE):
            c.search(" ".join(rng.sample(rng.choice(topics), 3)), mode="vector")
        status = wait_status(c, lambda s: ann(s)["calibrations"] >= 1)
        assert ann(status)["probes"] < PARTITIONS
        # Doubling the table trains the index again: new partitions, default probes.
        more = [" ".join(rng.sample(topics[n % 40], 5)) + f" m{n}" for n in range(ROWS)]
        for start in range(0, ROWS, 500):
            c.import_items([{"content": t} for t in more[start : start + 500]])
        status = wait_status(c, lambda s: ann(s)["trainings"] >= 2 and not ann(s)["training"])
        assert ann(status)["probes"] == DEFAULT_PROBES and ann(status)["fetch_factor"] == 2
        assert ann(status)["probes_recall"] is None
    # The calibration kept before the training was made for the old partitions: a
    # restart does not bring it back.
    daemon.restart()
    with daemon.client() as c:
        restarted = ann(wait_status(c, lambda s: s["vector_index"]["ready"]))
        assert restarted["probes"] == DEFAULT_PROBES and restarted["probes_recall"] is None


def test_a_burst_of_easy_queries_does_not_set_the_probes_for_all(make_daemon):
    # Half the memories gather by topic, half are random words. Searches for random words
    # need most partitions; topic searches do with a few. After 400 of the first kind, a
    # sample's worth of the second: a calibration on the latest queries alone chose 10
    # probes, and the searches for random words found 0.59 of what they had found. The
    # calibration samples all the queries evenly, so they keep what they found.
    rng = random.Random(11)
    texts, topics = topic_texts(rng)
    words = [f"w{n}" for n in range(5000)]
    texts = texts[: ROWS // 2] + [" ".join(rng.sample(words, 6)) for _ in range(ROWS // 2)]
    hard = [" ".join(rng.sample(words, 4)) for _ in range(400)]
    daemon = make_daemon(PROBES_ENV).start()
    with daemon.client() as c:
        build(c, texts)

        def top10(query: str) -> list[str]:
            return [h["id"] for h in c.search(query, mode="vector", limit=10)["hits"]]

        before = [top10(q) for q in hard]  # every partition probed: DEFAULT_PROBES
        for _ in range(SAMPLE):
            c.search(" ".join(rng.sample(rng.choice(topics), 3)), mode="vector")
        status = wait_status(c, lambda s: ann(s)["calibrations"] >= 1)
        assert ann(status)["probes_recall"] >= 0.99
        kept = [
            len(set(top10(q)) & set(found)) / len(found)
            for q, found in zip(hard[:100], before[:100], strict=True)
        ]
        assert sum(kept) / len(kept) >= 0.95, (ann(status)["probes"], sum(kept) / len(kept))
