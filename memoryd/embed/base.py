"""Embedders and the runtime that loads one lazily, off the event loop.

The model loads on first use in the embedding thread; until then, and if it cannot load at
all, the daemon keeps storing memories (marked as waiting for an embedding) and finds them
by words. ``EmbeddingRuntime.state`` says which of these is the case.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np

from memoryd.config import EmbeddingSettings
from memoryd.errors import Unavailable
from memoryd.search.cores import own_work
from memoryd.search.lexical import words_of

log = logging.getLogger(__name__)


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, each row L2-normalised."""
        ...


class HashEmbedder:
    """Deterministic, dependency-free, nearly free, and not semantic: each word adds
    continuous weights to a few hashed dimensions. Texts that share words are near each
    other; distinct texts practically never tie (integer weights made near-duplicate
    texts tie exactly, which turned any top-k into a coin toss).

    For unit tests, store-only benchmarks (``embedding.provider = "hash"``) and trying
    the tool without a model; search quality needs a model.
    """

    BUCKETS_PER_WORD = 4  # a word's 16-byte digest: 4 bucket and 4 weight uint16s
    # Words whose digests are kept (the first ones seen: the common words of a text set).
    # Numbers and ids are endless and never repeat; the cache held 200k of them (~40 MB
    # of the daemon after a 100k-memory benchmark import) before it was capped here.
    # Digests, not decoded buckets and weights: those lists and floats took ~9 MB at the
    # cap; decoding a batch's digests at once is numpy's work.
    WORD_CACHE_MAX = 16_384

    def __init__(self, dim: int = 384):
        self.dim = dim
        self.name = f"hash-v2-{dim}"
        self._word_cache: dict[str, bytes] = {}

    def _digest(self, word: str) -> bytes:
        digest = self._word_cache.get(word)
        if digest is None:
            digest = hashlib.blake2b(word.encode(), digest_size=16).digest()
            if len(self._word_cache) < self.WORD_CACHE_MAX:
                self._word_cache[word] = digest
        return digest

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        digests: list[bytes] = []
        counts: list[int] = []
        for text_words in words_of(texts):
            text_words = text_words or [""]
            counts.append(len(text_words))
            digests.extend(map(self._digest, text_words))
        codes = np.frombuffer(b"".join(digests), dtype="<u2").reshape(-1, 8)
        buckets = codes[:, : self.BUCKETS_PER_WORD].astype(np.intp) % self.dim
        weights = codes[:, self.BUCKETS_PER_WORD :] / 32767.5 - 1.0  # in [-1, 1]
        rows = np.repeat(np.arange(len(texts), dtype=np.intp), counts)
        # Each weight into its text's row and bucket: bincount sums them (np.add.at took
        # ~2 µs a text more; its float32 sums differ from these in the last bit).
        cells = (rows[:, None] * self.dim + buckets).ravel()
        out = (
            np.bincount(
                cells, weights=weights.astype(np.float32).ravel(), minlength=len(texts) * self.dim
            )
            .astype(np.float32)
            .reshape(len(texts), self.dim)
        )
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms


class FastEmbedder:
    """A fastembed ONNX model: a local folder (offline), or a named model fastembed fetches.

    Texts are embedded shortest first, in runs of similar length, because each run is
    padded to its longest text: on notes of mixed lengths that is ~4x faster than runs in
    the order given. Each run uses one thread, and the runs are shared among one lane per
    core, side by side (the session is thread-safe): on these 2-core machines ~25% more
    texts a second than runs over onnxruntime's two intra-op threads, and a single query
    takes ~1.5 ms instead of ~2.1, because a one-thread run never waits for a sleeping
    pool thread to wake (docs/performance.md). Each lane takes the next run until none
    are left; while searches are embedding queries (``yield_cores``), the extra lanes
    stop taking runs and leave their cores to them.
    """

    # The fewest texts a run: below it, a lane's overhead would outweigh its gain.
    MIN_RUN = 8

    def __init__(self, settings: EmbeddingSettings):
        from fastembed import TextEmbedding

        self.batch_size = settings.batch_size
        if settings.threads < 0:
            raise Unavailable(f"embedding.threads must be 0 or more, got {settings.threads}")
        self.lanes = settings.threads or available_cores()
        threads = 1
        if settings.model_dir:
            folder = Path(settings.model_dir).expanduser()
            if not (folder / "model.onnx").is_file():
                raise Unavailable(f"no model.onnx in embedding.model_dir {folder}")
            self.dim, pooling, normalize = _describe_local_model(folder)
            model_name = f"memoryd-local/{_slug(folder.name)}"
            _register_local_model(model_name, self.dim, pooling, normalize)
            self.model = TextEmbedding(
                model_name, specific_model_path=str(folder), local_files_only=True, threads=threads
            )
            _use_quiet_session(self.model, folder / "model.onnx", threads)
            size = (folder / "model.onnx").stat().st_size
            # The name identifies the vectors: a different model file means re-embedding.
            self.name = f"local:{folder.name}:{size}"
        else:
            self.model = TextEmbedding(settings.model, threads=threads)
            self.dim = int(self.model.embedding_size)
            self.name = settings.model
            inner = getattr(self.model, "model", None)
            fetched = getattr(inner, "_model_dir", None)
            description = getattr(inner, "model_description", None)
            if fetched is not None and description is not None:
                _use_quiet_session(self.model, Path(fetched) / description.model_file, threads)
        self._pool = (ThreadPoolExecutor(self.lanes - 1, thread_name_prefix="embed-lane")
                      if self.lanes > 1 else None)
        # Whether a batch's extra lanes should stop taking runs and leave their cores to
        # searches (``EmbeddingRuntime``: while queries are being embedded).
        self.yield_cores: Callable[[], bool] = lambda: False

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if len(texts) <= 1:
            return self._run(texts)
        order = np.argsort([len(text) for text in texts], kind="stable")
        size = max(self.MIN_RUN, min(self.batch_size, -(-len(texts) // self.lanes)))
        runs = [order[start:start + size] for start in range(0, len(texts), size)]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        lanes = min(self.lanes, len(runs))
        # Each lane takes the next run (they are sorted by length) until none are left;
        # an extra lane stops early while ``yield_cores`` says so, and the first finishes.
        pending = iter(runs)
        taking = threading.Lock()

        def lane(extra: bool) -> None:
            while not (extra and self.yield_cores()):
                with taking:
                    rows = next(pending, None)
                if rows is None:
                    return
                out[rows] = self._run([texts[row] for row in rows])

        others = [self._pool.submit(lane, True) for _ in range(1, lanes)] if self._pool else []
        lane(False)
        for other in others:
            other.result()
        return out

    def _run(self, texts: list[str]) -> np.ndarray:
        vectors = list(self.model.embed(texts, batch_size=max(1, len(texts))))
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _use_quiet_session(model: object, model_file: Path, threads: int) -> None:
    """Swap fastembed's ONNX session for one of ``threads`` threads that never spin.

    onnxruntime's thread pool busy-waits after each run by default. In a daemon that
    embeds one short query and then runs DuckDB and Lance work on the same two cores,
    the spinning threads steal the CPU those need: it made hybrid search ~20% slower
    here (34.6 -> 28.8 ms p50 on the LoCoMo dev set). fastembed does not expose the
    option, so the session is rebuilt; if fastembed's internals differ from what this
    expects, its own session stays (slower, still correct).
    """
    import onnxruntime as ort

    inner = getattr(model, "model", None)
    if inner is None or not isinstance(getattr(inner, "model", None), ort.InferenceSession):
        log.info("keeping fastembed's own ONNX session (unexpected internals)")
        return
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    inner.model = ort.InferenceSession(
        str(model_file), sess_options=options, providers=["CPUExecutionProvider"]
    )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text) or "model"


def _describe_local_model(folder: Path) -> tuple[int, str, bool]:
    """Dimension, pooling and normalisation of a sentence-transformers ONNX export."""
    config = json.loads((folder / "config.json").read_text())
    dim = int(config.get("hidden_size") or config.get("dim") or 0)
    pooling = "mean"
    pooling_file = folder / "1_Pooling" / "config.json"
    if pooling_file.is_file():
        pool = json.loads(pooling_file.read_text())
        dim = int(pool.get("word_embedding_dimension") or dim)
        if pool.get("pooling_mode_cls_token"):
            pooling = "cls"
    normalize = True
    modules_file = folder / "modules.json"
    if modules_file.is_file():
        modules = json.loads(modules_file.read_text())
        normalize = any("Normalize" in str(m.get("type", "")) for m in modules)
    if dim <= 0:
        raise Unavailable(f"cannot tell the embedding size of the model in {folder}")
    return dim, pooling, normalize


_registered: set[str] = set()


def _register_local_model(name: str, dim: int, pooling: str, normalize: bool) -> None:
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    if name in _registered or any(
        m["model"] == name for m in TextEmbedding.list_supported_models()
    ):
        _registered.add(name)
        return
    TextEmbedding.add_custom_model(
        model=name,
        pooling=PoolingType.CLS if pooling == "cls" else PoolingType.MEAN,
        normalization=normalize,
        sources=ModelSource(hf=name),
        dim=dim,
        model_file="model.onnx",
    )
    _registered.add(name)


def make_embedder(settings: EmbeddingSettings) -> Embedder | None:
    provider = settings.provider.lower()
    if provider == "none":
        return None
    if provider == "hash":
        return HashEmbedder()
    if provider == "fastembed":
        return FastEmbedder(settings)
    raise Unavailable(
        f"unknown embedding.provider {settings.provider!r} (use fastembed, hash or none)"
    )


# Queries up to this long are embedded on the event loop (``EmbeddingRuntime.embed_query``):
# ~4 ms at most on these machines (1,000 characters took 18.7 ms).
INLINE_QUERY_MAX_CHARS = 256
# For this long after a search embeds its query, an import's batch embeds in one lane and
# leaves the other cores to searches (``EmbeddingRuntime.searching``).
SEARCHING_S = 0.5


class EmbeddingRuntime:
    """Owns the embedder and its thread; loads it once, in the background, never on the
    event loop. Callers say how long they will wait for a model that is still loading:
    a fetch from a model hub can take minutes (or fail slowly offline), and a write must
    not hang on it; it is stored as waiting and embedded when the model is ready."""

    def __init__(self, settings: EmbeddingSettings):
        self.settings = settings
        self.embedder: Embedder | None = None
        self.state = "not loaded"  # not loaded | loading | ready | unavailable | disabled
        self.error: str | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        self._last_query = -SEARCHING_S  # time.monotonic() of the last search's query
        self._loading: asyncio.Task[Embedder | None] | None = None
        if settings.provider.lower() == "none":
            self.state = "disabled"

    @property
    def model_name(self) -> str | None:
        return self.embedder.name if self.embedder else None

    @property
    def dim(self) -> int | None:
        return self.embedder.dim if self.embedder else None

    def start_loading(self) -> asyncio.Task[Embedder | None]:
        if self._loading is None:
            self._loading = asyncio.get_running_loop().create_task(self._load())
        return self._loading

    async def _load(self) -> Embedder | None:
        if self.state == "disabled":
            return None
        self.state = "loading"
        loop = asyncio.get_running_loop()
        try:
            self.embedder = await loop.run_in_executor(self._executor, make_embedder, self.settings)
        except Exception as exc:  # noqa: BLE001 - any load failure degrades, never kills
            self.state = "unavailable"
            self.error = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            log.warning("embedding model unavailable: %s", self.error)
            return None
        self.state = "ready" if self.embedder else "disabled"
        if isinstance(self.embedder, FastEmbedder):
            self.embedder.yield_cores = self.searching
        if self.embedder:
            log.info("embedding model ready: %s (dim %d)", self.embedder.name, self.embedder.dim)
        return self.embedder

    async def ensure_loaded(self, wait: float | None = None) -> Embedder | None:
        """The embedder; None if there is none, or it is not ready within ``wait`` s."""
        if self.embedder is not None:
            return self.embedder
        task = self.start_loading()
        try:
            return await asyncio.wait_for(asyncio.shield(task), wait)
        except TimeoutError:
            return None

    async def embed(self, texts: Sequence[str], wait: float | None = None) -> np.ndarray | None:
        embedder = await self.ensure_loaded(wait)
        if embedder is None:
            return None
        loop = asyncio.get_running_loop()
        # A batch (not a long query's one text) keeps the cores busy: scans yield them.
        with own_work() if len(texts) > 1 else contextlib.nullcontext():
            return await loop.run_in_executor(self._executor, embedder.embed, list(texts))

    async def embed_query(self, text: str, wait: float | None = None) -> np.ndarray | None:
        """A search query's vector. A short query is embedded right here, on the calling
        (event loop) thread, not on the embedding thread:

        - The hand-over cost more than the run. At 100k memories with the real model,
          five alternating pairs of daemons: vector search p50 3.82-4.22 ms inline
          against 4.16-5.21 through the thread (docs/performance-log.md). The thread
          sleeps between searches and wakes cold, on whichever core is free; in-process,
          a query's run took 1.19-1.30 ms after a 0.5 ms sleep against 0.95-1.05 back to
          back (``/tmp/s28/embsleep.py``).
        - A search no longer queues behind an import's batch on that thread: during an
          import with the real model, vector search p50 6-7.5 ms instead of ~615.

        The loop waits for the run (the session runs it on this thread alone, one
        intra-op thread): ~1.4 ms for 40 characters, ~4 ms for 200 here, so a longer query
        (``INLINE_QUERY_MAX_CHARS``) still goes to the thread."""
        self._last_query = time.monotonic()
        embedder = self.embedder
        if embedder is None or len(text) > INLINE_QUERY_MAX_CHARS:
            vectors = await self.embed([text], wait)
            return None if vectors is None else vectors[0]
        return embedder.embed([text])[0]

    def searching(self) -> bool:
        """Whether a search embedded its query in the last ``SEARCHING_S`` seconds: an
        import's batch then embeds in one lane and leaves the other cores to searches."""
        return time.monotonic() - self._last_query < SEARCHING_S

    def shutdown(self) -> None:
        if self._loading is not None:
            self._loading.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
