"""The ANN index of the encrypted vector index: trained in the background once the table
holds search.ann_min_rows vectors, without a search missing a memory before, during or
after the training; rows written after it are found, deleted ones are not.

The hash embedder keeps ingest fast: these tests judge where candidates come from, not
semantics. A memory searched by its own text is its own nearest vector, so it must be the
first hit whenever the candidates include it."""

from __future__ import annotations

import functools
import threading
import time

import support
from support import INDEX_TIER

MIN_ROWS = 3000
ANN_ENV = {
    **INDEX_TIER,
    "MEMORYD_EMBEDDING_PROVIDER": "hash",
    "MEMORYD_SEARCH_ANN_MIN_ROWS": str(MIN_ROWS),
}
WORDS = ("amber basil cedar delta ember fjord garnet harbor iris juniper kelp lotus "
         "maple nectar onyx pepper quartz raven sage tundra umber violet willow yarrow").split()


def text(n: int) -> str:
    # Distinct word mixes, so every memory has a vector of its own.
    picks = [WORDS[(n * k + k * k) % len(WORDS)] for k in range(1, 6)]
    return f"{' '.join(picks)} note {n}"


# An ANN training at the test's size takes a while on a busy two-core machine.
wait_status = functools.partial(support.wait_status, timeout=120.0)


def settled(rows: int):
    return lambda s: s["vector_index"]["rows"] == rows and s["vector_index"]["pending"] == 0


def import_texts(client, numbers: range, ids: dict[int, str]) -> None:
    result = client.import_items([{"content": text(n)} for n in numbers])
    for n, row in zip(numbers, result["results"], strict=True):
        ids[n] = row["id"]


def top_id(client, n: int) -> str | None:
    hits = client.search(text(n), mode="vector", limit=3)["hits"]
    return hits[0]["id"] if hits else None


def test_ann_index_is_trained_in_the_background_without_missing_memories(make_daemon):
    daemon = make_daemon(ANN_ENV).start()
    ids: dict[int, str] = {}
    with daemon.client() as c:
        # Below the threshold: no ANN index, exhaustive search.
        for start in range(0, MIN_ROWS - 500, 500):
            import_texts(c, range(start, start + 500), ids)
        status = wait_status(c, settled(MIN_ROWS - 500))
        time.sleep(3)  # longer than the ANN check interval: nothing may be trained yet
        assert c.status()["vector_index"]["ann"]["trainings"] == 0
        assert all(top_id(c, n) == ids[n] for n in range(0, MIN_ROWS - 500, 97))

        # Cross the threshold while another client searches without pause.
        wrong: list[tuple[int, str | None]] = []
        searched = 0
        stop = threading.Event()

        def search_meanwhile() -> None:
            nonlocal searched
            with daemon.client() as s:
                n = 0
                while not stop.is_set():
                    n = (n + 131) % (MIN_ROWS - 500)
                    found = top_id(s, n)
                    searched += 1
                    if found != ids[n]:
                        wrong.append((n, found))

        searcher = threading.Thread(target=search_meanwhile)
        searcher.start()
        try:
            import_texts(c, range(MIN_ROWS - 500, MIN_ROWS + 500), ids)
            status = wait_status(c, lambda s: s["vector_index"]["ann"]["trainings"] >= 1)
        finally:
            stop.set()
            searcher.join()
        assert searched > 0 and wrong == []
        ann = status["vector_index"]["ann"]
        assert ann["indexed"] >= MIN_ROWS and ann["training"] is False

        # After the training: every memory still found through the ANN index.
        assert all(top_id(c, n) == ids[n] for n in range(0, MIN_ROWS + 500, 89))

        # Rows written after the training sit outside it and must still be found.
        total = MIN_ROWS + 500
        import_texts(c, range(total, total + 50), ids)
        status = wait_status(c, settled(total + 50))
        assert status["vector_index"]["ann"]["unindexed"] >= 50
        # They are scored in RAM, and searches read the ANN index alone.
        ann = wait_status(c, lambda s: s["vector_index"]["ann"]["unindexed_in_ram"]
                          == s["vector_index"]["ann"]["unindexed"], timeout=10)
        assert ann["vector_index"]["ann"]["unindexed_in_ram"] >= 50
        assert all(top_id(c, n) == ids[n] for n in range(total, total + 50, 7))

        # Deleted memories are not found, whether the ANN index covers them or not.
        gone = [5, 1234, MIN_ROWS + 10, total + 3]
        for n in gone:
            c.delete(ids[n])
        wait_status(c, settled(total + 50 - len(gone)))
        assert all(top_id(c, n) != ids[n] for n in gone)
        # Compaction after the deletes folds the new rows into the ANN index.
        # Lance shows the fold as soon as it commits; the RAM copies of the rows it
        # covered go once the compaction's last step (old versions) has ended too.
        wait_status(c, lambda s: s["vector_index"]["ann"]["unindexed"] == 0
                    and s["vector_index"]["ann"]["unindexed_in_ram"] == 0, timeout=60)
        assert all(top_id(c, n) != ids[n] for n in gone)
        assert all(top_id(c, n) == ids[n] for n in range(total, total + 50, 7))

    # A restart keeps the trained index and does not train it again. It reads the index
    # in whole once searches pause, not while they go on.
    daemon.restart()
    with daemon.client() as c:
        status = wait_status(c, lambda s: s["vector_index"]["ready"])
        searching_until = time.monotonic() + 5
        while time.monotonic() < searching_until:
            assert top_id(c, 77) == ids[77]
            assert c.status()["vector_index"]["ann"]["warm"] is False
        status = wait_status(c, lambda s: s["vector_index"]["ann"]["warm"], timeout=30)
        status = status["vector_index"]
        assert status["ann"]["indexed"] == total + 50 - len(gone)
        assert status["ann"]["trainings"] == 0
        assert top_id(c, 77) == ids[77] and top_id(c, gone[0]) != ids[gone[0]]


def test_segments_that_folds_add_are_merged_once_writes_pause(make_daemon):
    # Each fold of new rows adds a segment that every search probes; once writes pause,
    # a compaction merges them (a fold then merges its rows in at once), without a
    # training.
    daemon = make_daemon(ANN_ENV).start()
    ids: dict[int, str] = {}
    with daemon.client() as c:
        for start in range(0, MIN_ROWS, 500):
            import_texts(c, range(start, start + 500), ids)
        status = wait_status(c, lambda s: s["vector_index"]["ann"]["trainings"] == 1)
        assert status["vector_index"]["ann"]["segments"] == 1
        import_texts(c, range(MIN_ROWS, MIN_ROWS + 200), ids)
        status = wait_status(
            c,
            lambda s: s["vector_index"]["ann"]["indexed"] == MIN_ROWS + 200
            and not s["vector_index"]["compacting"],
        )
        ann = status["vector_index"]["ann"]
        assert ann["segments"] == 1 and ann["unindexed"] == 0
        assert ann["trainings"] == 1 and not ann["training"]
        assert all(top_id(c, n) == ids[n] for n in range(0, MIN_ROWS + 200, 97))
        # The indexes the training and the merge replaced leave the disk: one ANN index
        # and the namespace index remain, though no write comes to set off a compaction.
        indexes = daemon.paths.data_dir / "vectors" / "vectors.lance" / "_indices"
        deadline = time.monotonic() + 30
        while len(list(indexes.iterdir())) > 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(list(indexes.iterdir())) == 2
    log = "\n".join(f.read_text() for f in daemon.paths.log_dir.rglob("*.log"))
    # Folded in by the compaction after the training or once writes paused; merged then.
    assert "200 new vectors folded in" in log or "after the training" in log
    assert "2 segments merged" in log


def test_searches_in_one_namespace_use_a_namespace_index_written_with_the_ann_index(
    make_daemon,
):
    # A search in one namespace prefilters the index by it; the bitmap index of the
    # namespace pseudonyms is written with the ANN index, holds rows written after it
    # (exhaustively until folded in), and is added to an ANN index that lacks it.
    from memoryd.store.vectors import NS_INDEX, _open_table

    daemon = make_daemon(ANN_ENV).start()
    ids: dict[int, str] = {}
    home = {n: "work" if n % 3 else "home" for n in range(MIN_ROWS + 100)}

    def top_in(client, n: int, namespace: str) -> str | None:
        hits = client.search(text(n), mode="vector", limit=3, namespace=namespace)["hits"]
        assert all(h["namespace"] == namespace for h in hits)
        return hits[0]["id"] if hits else None

    def check(client, numbers: range) -> None:
        for n in numbers:
            other = "home" if home[n] == "work" else "work"
            assert top_in(client, n, home[n]) == ids[n]
            assert top_in(client, n, other) != ids[n]

    with daemon.client() as c:
        for start in range(0, MIN_ROWS, 500):
            numbers = range(start, start + 500)
            result = c.import_items([{"content": text(n), "namespace": home[n]}
                                     for n in numbers])
            ids.update({n: row["id"] for n, row in zip(numbers, result["results"], strict=True)})
        status = wait_status(c, lambda s: s["vector_index"]["ann"]["trainings"] == 1
                             and s["vector_index"]["ann"]["namespace_index"])
        check(c, range(0, MIN_ROWS, 101))
        numbers = range(MIN_ROWS, MIN_ROWS + 100)
        result = c.import_items([{"content": text(n), "namespace": home[n]} for n in numbers])
        ids.update({n: row["id"] for n, row in zip(numbers, result["results"], strict=True)})
        status = wait_status(c, settled(MIN_ROWS + 100))
        check(c, range(MIN_ROWS, MIN_ROWS + 100, 7))

    # An ANN index written before namespace indexes existed gets one at the next start.
    daemon.stop()
    _open_table(daemon.paths.vector_dir).drop_index(NS_INDEX)
    daemon.start()
    with daemon.client() as c:
        status = wait_status(c, lambda s: s["vector_index"]["ann"]["namespace_index"])
        assert status["vector_index"]["ann"]["trainings"] == 0
        check(c, range(0, MIN_ROWS + 100, 113))
    log = "\n".join(f.read_text() for f in daemon.paths.log_dir.rglob("*.log"))
    assert "namespace index written" in log


def test_an_index_of_another_partition_size_is_trained_again(make_daemon):
    """The probe counts are meant for ``search.ann_partition_rows``: an index trained for
    another size (by an earlier version, or before the setting changed) is trained again
    once, in the background, and searches go on meanwhile."""
    daemon = make_daemon({**ANN_ENV, "MEMORYD_SEARCH_ANN_PARTITION_ROWS": "100"}).start()
    with daemon.client() as c:
        ids = []
        for start in range(0, MIN_ROWS, 1000):
            result = c.import_items([{"content": text(n)} for n in range(start, start + 1000)])
            ids += [row["id"] for row in result["results"]]
        status = wait_status(c, lambda s: s["vector_index"]["ann"]["trainings"] >= 1
                             and not s["vector_index"]["ann"]["training"])
        assert status["vector_index"]["ann"]["partition_rows"] == 100
    daemon.stop()
    daemon.env["MEMORYD_SEARCH_ANN_PARTITION_ROWS"] = "50"
    daemon.start()
    with daemon.client() as c:
        assert top_id(c, 11) == ids[11]
        status = wait_status(c, lambda s: s["vector_index"]["ann"]["trainings"] >= 1
                             and not s["vector_index"]["ann"]["training"])
        assert status["vector_index"]["ann"]["partition_rows"] == 50
        assert status["vector_index"]["ann"]["indexed"] == MIN_ROWS
        assert all(top_id(c, n) == ids[n] for n in range(0, MIN_ROWS, 301))
    # Trained for the setting, it is not trained again.
    daemon.restart()
    with daemon.client() as c:
        wait_status(c, lambda s: s["vector_index"]["ann"]["warm"], timeout=60)
        assert c.status()["vector_index"]["ann"]["trainings"] == 0
