"""Embeddings: the real model matches its reference vectors; without a model the daemon
keeps working by words and catches up once a model is configured."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time

import numpy as np
import pytest
from support import MODEL_DIR

from memoryd.client import RemoteError
from memoryd.config import EmbeddingSettings
from memoryd.embed.base import (
    INLINE_QUERY_MAX_CHARS,
    EmbeddingRuntime,
    FastEmbedder,
    HashEmbedder,
)
from memoryd.errors import Unavailable


def test_model_matches_reference_vectors():
    rows = [json.loads(line) for line in (MODEL_DIR / "reference.jsonl").read_text().splitlines()
            if line.strip()]
    embedder = FastEmbedder(EmbeddingSettings(model_dir=str(MODEL_DIR)))
    got = embedder.embed([r["text"] for r in rows])
    want = np.asarray([r["embedding"] for r in rows], dtype=np.float32)
    cosines = np.sum(got * want, axis=1) / (np.linalg.norm(got, axis=1)
                                            * np.linalg.norm(want, axis=1))
    assert len(rows) == 40
    assert cosines.min() >= 0.97
    assert cosines.mean() >= 0.99
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-3)


def test_a_batch_run_by_length_in_lanes_keeps_each_text_in_its_place():
    """A batch is embedded shortest first, in runs shared among lanes side by side; the
    rows must come back in the texts' order, each near the text's own vector embedded
    alone (this int8 model's vectors shift a little with the run they are padded in)."""
    embedder = FastEmbedder(EmbeddingSettings(model_dir=str(MODEL_DIR), threads=3))
    texts = [f"{animal} number {i} sleeps" + f" in the old {place}" * (i % 7)
             for i, (animal, place) in enumerate(zip(
                 ["cat", "heron", "otter", "wolf", "moth", "carp"] * 6,
                 ["barn", "river", "attic", "forest", "kitchen", "harbour"] * 6, strict=True))]
    batch = embedder.embed(texts)
    alone = np.concatenate([embedder.embed([text]) for text in texts])
    assert batch.shape == (36, 384)
    assert len(texts) // FastEmbedder.MIN_RUN >= 3  # three lanes, each with runs
    cosines = batch @ alone.T
    assert (cosines.argmax(axis=1) == np.arange(36)).all()
    assert np.diag(cosines).min() >= 0.98


def test_a_batch_leaves_its_extra_lanes_to_searches_while_they_embed_queries():
    """While searches embed queries (``EmbeddingRuntime.searching``), an import's batch
    runs in the calling lane alone, with the same vectors; otherwise in every lane."""
    embedder = FastEmbedder(EmbeddingSettings(model_dir=str(MODEL_DIR), threads=2))
    texts = [f"note {i} about the harbour lantern" + " and the tide" * (i % 5)
             for i in range(64)]
    lanes: set[str] = set()
    run = embedder._run

    def recorded(batch: list[str]) -> np.ndarray:
        lanes.add(threading.current_thread().name)
        return run(batch)

    embedder._run = recorded  # type: ignore[method-assign]
    shared = embedder.embed(texts)
    assert len(lanes) == 2
    lanes.clear()
    embedder.yield_cores = lambda: True
    alone = embedder.embed(texts)
    assert lanes == {threading.current_thread().name}
    assert np.allclose(alone, shared, atol=1e-6)

    runtime = EmbeddingRuntime(EmbeddingSettings(model_dir=str(MODEL_DIR)))

    async def search_once() -> FastEmbedder:
        loaded = await runtime.ensure_loaded()
        assert isinstance(loaded, FastEmbedder) and not loaded.yield_cores()
        await runtime.embed_query("where are the keys")
        return loaded

    try:
        loaded = asyncio.run(search_once())
        assert runtime.searching() and loaded.yield_cores()
    finally:
        runtime.shutdown()


def test_a_negative_thread_count_is_refused_clearly():
    with pytest.raises(Unavailable, match="embedding.threads must be 0 or more"):
        FastEmbedder(EmbeddingSettings(model_dir=str(MODEL_DIR), threads=-1))


def test_a_short_query_is_embedded_while_the_embedding_thread_is_busy():
    """A search's query does not queue behind an import's batch on the embedding thread
    (a 1,000-text batch of the real model takes ~0.6 s): a short one is embedded on the
    caller's thread; a long one still goes to the embedding thread, in turn."""
    runtime = EmbeddingRuntime(EmbeddingSettings(provider="hash"))
    short = "where did I leave the keys"
    long = "keys " * (INLINE_QUERY_MAX_CHARS // 5 + 1)

    async def scenario() -> None:
        assert await runtime.ensure_loaded() is not None
        batch_done = threading.Event()
        busy = asyncio.get_running_loop().run_in_executor(
            runtime._executor, batch_done.wait, 30)  # the embedding thread, mid-batch
        try:
            vector = await asyncio.wait_for(runtime.embed_query(short), 5)
            queued = asyncio.ensure_future(runtime.embed_query(long))
            await asyncio.sleep(0.2)
            assert not queued.done()
        finally:
            batch_done.set()
        assert np.allclose(vector, HashEmbedder().embed([short])[0])
        assert np.allclose(await queued, HashEmbedder().embed([long])[0])
        assert await busy

    try:
        asyncio.run(scenario())
    finally:
        runtime.shutdown()


def test_hash_embedder_is_deterministic_and_normalised():
    a = HashEmbedder().embed(["the cat sat", "the cat sat", "dogs bark"])
    assert np.allclose(a[0], a[1]) and not np.allclose(a[0], a[2])
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0)


def test_hash_embedder_vectors_stay_the_same():
    """Stored vectors are only comparable with new ones while the embedder's output stays
    the same: a change needs a new name (``hash-v2``), so that memories are re-embedded.
    The figures were taken from the implementation before the cache held digests: which
    dimensions are set (exact), and sums and similarities (float32 sums may differ in the
    last bits between CPUs)."""
    texts = [
        "The ferry timetable changes in October",
        "Alice is allergic to peanuts",
        "",
        "note 12345 about the garden",
    ]
    embedder = HashEmbedder()
    vectors = embedder.embed(texts)
    assert vectors.dtype == np.float32 and vectors.shape == (4, 384)
    mask = hashlib.sha256(np.packbits(vectors != 0).tobytes()).hexdigest()
    assert mask == "a146b7debc3ed7e4d0c83751f99241e44a5bd18c390fb1655573215d92aa8d26"
    sums = [-0.388743, 0.267458, -0.57451, 1.152536]
    assert np.allclose(vectors.sum(axis=1), sums, atol=1e-5)
    queries = embedder.embed(["ferry changes", "peanut allergy Alice"])
    expected = [[0.609223, 0.0, 0.0, 0.0], [0.0, 0.122802, 0.0, 0.0]]
    assert np.allclose(queries @ vectors.T, expected, atol=1e-5)


def test_hash_embedder_word_cache_is_bounded_and_changes_nothing():
    warm = HashEmbedder()
    count = HashEmbedder.WORD_CACHE_MAX + 500
    texts = [f"note {i} about the garden" for i in range(count)]
    vectors = warm.embed(texts)
    assert len(warm._word_cache) == HashEmbedder.WORD_CACHE_MAX
    # Words past the cap (the last texts' numbers) embed exactly as in a fresh embedder.
    assert np.array_equal(vectors[-50:], HashEmbedder().embed(texts[-50:]))


def test_missing_model_dir_fails_clearly(tmp_path):
    from memoryd.errors import Unavailable

    with pytest.raises(Unavailable, match="no model.onnx"):
        FastEmbedder(EmbeddingSettings(model_dir=str(tmp_path)))


def test_without_model_memories_wait_then_catch_up(make_daemon, tmp_path):
    no_model = make_daemon({"MEMORYD_MODEL_DIR": str(tmp_path / "no-such-model")}).start()
    with no_model.client() as c:
        memory = c.add("Alice is allergic to peanuts")["memory"]
        assert memory["embedded"] is False
        # Still found by words, straight away.
        assert c.search("peanuts")["hits"][0]["id"] == memory["id"]
        result = c.search("peanuts")
        assert "no embedding model" in result["degraded"]
        with pytest.raises(RemoteError) as err:
            c.search("nut allergy", mode="vector")
        assert err.value.name == "unavailable"
        status = c.status()
        assert status["waiting_for_embedding"] == 1
        assert status["embedding"]["state"] == "unavailable"
        assert "no model.onnx" in status["embedding"]["error"]
    no_model.stop()

    with_model = make_daemon().start()
    with with_model.client() as c:
        deadline = time.monotonic() + 30
        while c.status()["waiting_for_embedding"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert c.status()["waiting_for_embedding"] == 0
        assert c.get(memory["id"])["embedded"] is True
        assert c.search("nut allergy", mode="vector")["hits"][0]["id"] == memory["id"]
