#!/usr/bin/env python3
"""Peers for the benchmark: what a user would pick instead of memoryd, on the same vectors.

- ``numpy_exact``: brute force over an in-memory float32 matrix, the physical reference
  (and the exact top-k that every recall@k in the benchmark is measured against);
- ``chroma``: chromadb ``PersistentClient`` with an HNSW cosine collection at its default
  index settings, fed precomputed embeddings, queried by vector and, given an embedder,
  by text (chroma embeds the query with the same embedder memoryd uses); and, given a
  recall to match, again with the smallest ``ef_search`` found that reaches it, so the
  speed is also compared at equal recall (``_chroma_matched``).

``scripts/bench.py`` imports these; run alone it compares the two on synthetic vectors:

    python scripts/peers.py --n 10000 --dim 384
    python scripts/peers.py --n 100000 --dim 384 --queries 200 --json-out peers.json

chromadb is an optional extra (``pip install -e '.[bench]'``) and is imported only by
``chroma()``, so this module imports without it. Chroma never reaches the network here:
embeddings are always supplied (precomputed, or by our embedder), so its default ONNX
embedder is never called and never downloads, and telemetry is switched off.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

EmbedFn = Callable[[list[str]], np.ndarray]

CHROMA_COLLECTION = "memoryd-bench"
WARMUP_QUERIES = 5
# The largest ef_search the matched-recall search tries (HNSW near exhaustive by then).
MATCHED_EF_MAX = 51_200


# --- data ------------------------------------------------------------------------------------


def synthetic_vectors(
    n: int, dim: int, seed: int = 0, clusters: int | None = None, spread: float = 1.0
) -> np.ndarray:
    """(n, dim) float32 unit vectors around ``clusters`` random unit centres.

    Each vector is a centre plus gaussian noise of norm ~``spread``, normalised; spread 1.0
    puts a vector at cosine ~0.7 from its centre and ~0.5 from its cluster mates, so a
    query's nearest neighbours are a close-run contest inside one cluster, as with real
    text embeddings of one topic. Built in chunks so 1M x 384 needs no float64 copy.

    Cluster size sets how hard the data is for an ANN index, so ``clusters`` defaults to
    clusters of ~2,000 (``default_clusters``).
    """
    if n <= 0 or dim <= 0:
        raise ValueError("n and dim must be positive")
    rng = np.random.default_rng(seed)
    clusters = clusters or default_clusters(n)
    centres = _unit_rows(rng.standard_normal((clusters, dim), dtype=np.float32))
    out = np.empty((n, dim), dtype=np.float32)
    scale = np.float32(spread / np.sqrt(dim))
    chunk = 65536
    for start in range(0, n, chunk):
        rows = min(chunk, n - start)
        block = centres[rng.integers(clusters, size=rows)]
        block += scale * rng.standard_normal((rows, dim), dtype=np.float32)
        out[start : start + rows] = _unit_rows(block)
    return out


def default_clusters(n: int) -> int:
    """~2,000 vectors per cluster: HNSW recall then falls with n as on real corpora.

    With sqrt(n) clusters (316 of 316 at 100k) chromadb's default HNSW found the exact
    top-10 every time (recall 1.000), which would tell no index from another; with
    clusters of ~2,000 it scores 0.97 at 10k and 0.90 at 100k, near the 0.94 measured
    for it on the issue's 100k vectors.
    """
    return max(8, n // 2000)


def synthetic_queries(vectors: np.ndarray, m: int, seed: int = 1, noise: float = 1.0) -> np.ndarray:
    """(m, dim) float32 unit queries: perturbed copies of distinct stored vectors.

    Noise of norm ~``noise`` (1.0: cosine ~0.7 to the source vector, about what a real
    query scores against its best document) makes the query a copy of nothing stored.
    """
    n, dim = vectors.shape
    if not 0 < m <= n:
        raise ValueError(f"m must be in 1..{n}")
    rng = np.random.default_rng(seed)
    sources = vectors[rng.choice(n, size=m, replace=False)].astype(np.float32)
    sources += np.float32(noise / np.sqrt(dim)) * rng.standard_normal((m, dim), dtype=np.float32)
    return _unit_rows(sources)


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (matrix / norms).astype(np.float32, copy=False)


# --- measures --------------------------------------------------------------------------------


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> list[list[int]]:
    """Exact top-k row indices by inner product, best first, for all queries at once.

    The untimed reference; ``numpy_exact`` answers the same per query, timed.
    """
    ids: list[list[int]] = []
    for start in range(0, len(queries), 256):
        scores = queries[start : start + 256] @ vectors.T
        for row in scores:
            ids.append(_top_k(row, k))
    return ids


def _top_k(scores: np.ndarray, k: int) -> list[int]:
    k = min(k, len(scores))
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.argsort(-scores[top], kind="stable")].tolist()


def recall_at_k(
    found: Sequence[Sequence[int]], exact: Sequence[Sequence[int]], k: int = 10
) -> float:
    """Mean over queries of |found[:k] ∩ exact[:k]| / |exact[:k]|."""
    if len(found) != len(exact):
        raise ValueError("found and exact must have one row per query")
    hits = [
        len(set(f[:k]) & set(e[:k])) / len(e[:k]) for f, e in zip(found, exact, strict=True) if e
    ]
    return float(np.mean(hits)) if hits else 0.0


def _percentiles_ms(seconds: Sequence[float]) -> tuple[float, float]:
    ms = np.asarray(seconds) * 1000.0
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def folder_bytes(path: str | Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:  # a file removed while walking (a temp file) holds no bytes
                pass
    return total


# --- peers -----------------------------------------------------------------------------------


def numpy_exact(vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> dict[str, Any]:
    """Brute force over an in-memory float32 matrix, one query at a time.

    ``build_s`` is the copy into a fresh C-contiguous float32 matrix (what loading would
    cost); each timed query is the matrix-vector product plus the top-k selection.
    Returns p50_ms, p95_ms, build_s and ``ids`` (exact top-k row indices per query).
    """
    started = time.perf_counter()
    matrix = np.array(vectors, dtype=np.float32, order="C", copy=True)
    build_s = time.perf_counter() - started
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    for query in queries[:WARMUP_QUERIES]:
        _top_k(matrix @ query, k)
    ids: list[list[int]] = []
    seconds: list[float] = []
    for query in queries:
        started = time.perf_counter()
        ids.append(_top_k(matrix @ query, k))
        seconds.append(time.perf_counter() - started)
    p50, p95 = _percentiles_ms(seconds)
    return {
        "peer": "numpy exact",
        "n": int(matrix.shape[0]),
        "dim": int(matrix.shape[1]),
        "queries": len(queries),
        "build_s": build_s,
        "p50_ms": p50,
        "p95_ms": p95,
        "recall_at_10": 1.0,
        "memory_bytes_per_vector": matrix.nbytes / max(1, matrix.shape[0]),
        "ids": ids,
    }


def chroma(
    vectors: np.ndarray,
    queries: np.ndarray,
    ids: Sequence[str] | None = None,
    documents: Sequence[str] | None = None,
    embed_fn: EmbedFn | None = None,
    query_texts: Sequence[str] | None = None,
    k: int = 10,
    path: str | Path | None = None,
    exact_ids: Sequence[Sequence[int]] | None = None,
    matched_recall: float | None = None,
    hnsw: dict[str, Any] | None = None,
    alternate: Callable[[], float] | None = None,
    rounds: int = 3,
) -> dict[str, Any]:
    """chromadb PersistentClient: ingest precomputed vectors, then query them.

    - ``ids`` name the rows (default "0".."n-1"); recall maps chroma's answers back to rows
      and compares them with ``exact_ids`` (computed here when not given).
    - ``documents``, when given, are stored with the vectors and returned by every query,
      as memoryd returns texts; otherwise queries return only ids and distances.
    - ``embed_fn`` (list[str] -> (n, dim) array) with ``query_texts`` adds the end-to-end
      figure: ``query(query_texts=[...])``, chroma embedding each query with our embedder.
    - ``alternate`` (with ``embed_fn``): after the end-to-end queries, ``rounds`` turns of
      ``alternate()`` (another system's p50 ms over the same queries) and chroma's
      end-to-end queries again, so that both are timed in the same minutes
      (``alternating``): these machines' speed moves by a third within a minute.
    - ``matched_recall`` adds ``matched``: the same queries again with the smallest
      ``ef_search`` found whose recall@k reaches it (``_chroma_matched``).
    - ``hnsw`` adds index settings to the collection's (tests; the benchmark keeps
      chroma's defaults).
    - ``path`` must be new or empty; by default a temp folder, removed afterwards.

    Disk bytes are measured after the client is closed (everything flushed).
    """
    import chromadb
    from chromadb.config import Settings

    n = len(vectors)
    row_ids = [str(i) for i in range(n)] if ids is None else [str(i) for i in ids]
    if len(row_ids) != n or (documents is not None and len(documents) != n):
        raise ValueError("ids and documents must have one entry per vector")
    if exact_ids is None:
        exact_ids = exact_top_k(vectors, queries, k)
    row_of = {row_id: row for row, row_id in enumerate(row_ids)}
    own_folder = path is None
    folder = Path(tempfile.mkdtemp(prefix="peers-chroma-") if path is None else path)
    if folder.exists() and any(folder.iterdir()):
        raise ValueError(f"chroma path {folder} is not empty")
    result: dict[str, Any] = {
        "peer": "chromadb",
        "version": chromadb.__version__,
        "n": n,
        "dim": int(vectors.shape[1]),
        "queries": len(queries),
    }
    try:
        client = chromadb.PersistentClient(
            path=str(folder), settings=Settings(anonymized_telemetry=False)
        )
        try:
            collection = client.create_collection(
                CHROMA_COLLECTION,
                configuration={"hnsw": {"space": "cosine", **(hnsw or {})}},
                # Without ours, chroma would fall back to its default embedder (which
                # downloads a model) the moment anything asks it to embed.
                embedding_function=_chroma_embedding_function(embed_fn) if embed_fn else None,
            )
            with warnings.catch_warnings():
                # chromadb warns "legacy embedding function config" when reading back a
                # collection created without an embedder, i.e. every vector-only run.
                warnings.simplefilter("ignore", DeprecationWarning)
                result["hnsw"] = dict((collection.configuration or {}).get("hnsw") or {})
            batch = client.get_max_batch_size() if hasattr(client, "get_max_batch_size") else 5000
            result["batch_size"] = batch
            vectors32 = np.ascontiguousarray(vectors, dtype=np.float32)
            started = time.perf_counter()
            for start in range(0, n, batch):
                end = min(n, start + batch)
                collection.add(
                    ids=row_ids[start:end],
                    embeddings=vectors32[start:end],
                    documents=list(documents[start:end]) if documents is not None else None,
                )
            result["ingest_s"] = time.perf_counter() - started
            result["ingest_vectors_per_s"] = n / result["ingest_s"]

            include = ["documents", "distances"] if documents is not None else ["distances"]
            queries32 = np.ascontiguousarray(queries, dtype=np.float32)
            # The first query after a bulk add may pay for loading the index: report it
            # apart so neither ingest nor p50 hides it.
            started = time.perf_counter()
            collection.query(query_embeddings=queries32[:1], n_results=k, include=include)
            result["first_query_ms"] = (time.perf_counter() - started) * 1000.0
            found, seconds = _chroma_timed_queries(collection, queries32, row_of, include, k)
            result["p50_ms"], result["p95_ms"] = _percentiles_ms(seconds)
            result["recall_at_10"] = recall_at_k(found, exact_ids, k)
            result["ids"] = found

            if embed_fn is not None and query_texts:
                result.update(
                    _chroma_end_to_end(
                        collection, vectors32, embed_fn, query_texts, row_of, include, k
                    )
                )
                if alternate is not None:
                    result["alternating"] = _alternating(
                        collection, alternate, query_texts, include, k, rounds)
            if matched_recall is not None:
                result["matched"], client = _chroma_matched(
                    client, folder, target=matched_recall,
                    default_recall=result["recall_at_10"],
                    default_ef=int(result["hnsw"].get("ef_search") or 100),
                    queries=queries32, exact_ids=exact_ids, row_of=row_of, include=include,
                    k=k, embed_fn=embed_fn, query_texts=query_texts, vectors=vectors32,
                )
        finally:
            if hasattr(client, "close"):
                client.close()
        result["disk_bytes"] = folder_bytes(folder)
        result["disk_bytes_per_vector"] = result["disk_bytes"] / max(1, n)
        result["stores_documents"] = documents is not None
    finally:
        if own_folder:
            shutil.rmtree(folder, ignore_errors=True)
    return result


def _chroma_timed_queries(
    collection: Any, queries: np.ndarray, row_of: dict[str, int], include: list[str], k: int
) -> tuple[list[list[int]], list[float]]:
    """Each query by vector, one a call, after a few warm-up ones: the rows chroma
    answered, and the seconds each answer took."""
    for query in queries[:WARMUP_QUERIES]:
        collection.query(query_embeddings=query[None, :], n_results=k, include=include)
    found: list[list[int]] = []
    seconds: list[float] = []
    for query in queries:
        started = time.perf_counter()
        answer = collection.query(query_embeddings=query[None, :], n_results=k, include=include)
        seconds.append(time.perf_counter() - started)
        found.append([row_of[i] for i in answer["ids"][0]])
    return found, seconds


def _chroma_matched(
    client: Any,
    folder: Path,
    *,
    target: float,
    default_recall: float,
    default_ef: int,
    queries: np.ndarray,
    exact_ids: Sequence[Sequence[int]],
    row_of: dict[str, int],
    include: list[str],
    k: int,
    embed_fn: EmbedFn | None,
    query_texts: Sequence[str] | None,
    vectors: np.ndarray,
) -> tuple[dict[str, Any], Any]:
    """chroma at a recall@k of ``target`` or more: ``ef_search`` doubled from its default
    until the queries reach it, then bisected down to the smallest value found that still
    does (within 1/8 of it), with that try's timings.

    On the benchmark's sparse ``hash`` vectors chroma's default finds about half of the
    true top 10 at 100k; this says what its speed is at the recall memoryd must keep.
    chroma reads ``ef_search`` when it loads the index, so each try closes the client and
    opens a new one; returns the figures and the client now open.
    """
    import chromadb
    from chromadb.config import Settings

    embedder = _chroma_embedding_function(embed_fn) if embed_fn else None

    def reopen_at(ef: int) -> Any:
        nonlocal client
        # chroma warns "legacy embedding function config" whenever it reads back a
        # collection made without an embedder (every vector-only run).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            collection = client.get_collection(CHROMA_COLLECTION, embedding_function=embedder)
            collection.modify(configuration={"hnsw": {"ef_search": ef}})
            client.close()  # the last client of its folder: chroma stops and forgets it
            client = chromadb.PersistentClient(
                path=str(folder), settings=Settings(anonymized_telemetry=False)
            )
            return client.get_collection(CHROMA_COLLECTION, embedding_function=embedder)

    def run_at(ef: int) -> dict[str, Any]:
        nonlocal opened
        collection = reopen_at(ef)
        opened = ef
        found, seconds = _chroma_timed_queries(collection, queries, row_of, include, k)
        p50, p95 = _percentiles_ms(seconds)
        run = {"ef_search": ef, "recall_at_10": recall_at_k(found, exact_ids, k)}
        tried.append(dict(run))
        return {**run, "p50_ms": p50, "p95_ms": p95, "collection": collection}

    # Each try is timed, and the figures are those of the try that chose the value: a
    # reopened index can answer a query or two differently, so a second run at the same
    # value may land on the other side of the target.
    opened: int | None = None
    tried: list[dict[str, Any]] = [{"ef_search": default_ef, "recall_at_10": default_recall}]
    runs: dict[int, dict[str, Any]] = {}

    def reaches(ef: int) -> bool:
        runs[ef] = run_at(ef)
        return bool(runs[ef]["recall_at_10"] >= target)

    # The default is timed again, as every try is, after a reopen.
    chosen = smallest_reaching(
        default_ef, default_recall >= target and reaches(default_ef), reaches, MATCHED_EF_MAX
    )
    if chosen is None:
        return {"target": target, "reached": False, "tried": tried}, client
    best = runs[chosen]
    collection = best.pop("collection")
    matched: dict[str, Any] = {"target": target, "reached": True, **best, "tried": tried}
    if embed_fn is not None and query_texts:
        if opened != best["ef_search"]:
            collection = reopen_at(best["ef_search"])
        matched.update(
            _chroma_end_to_end(collection, vectors, embed_fn, query_texts, row_of, include, k)
        )
    return matched, client


def smallest_reaching(
    start: int, start_reaches: bool, reaches: Callable[[int], bool], limit: int
) -> int | None:
    """The smallest value found at which ``reaches`` holds, from ``start`` (which it does
    if ``start_reaches``) up to ``limit``: doubled until it holds, then bisected down to
    within 1/8 of the value chosen, or to the one next to a value where it does not.
    ``None`` if it holds nowhere up to ``limit``. Each value is tried at most once."""
    best = start if start_reaches else None
    low = value = start  # low: the largest value known not to reach
    while best is None and value < limit:
        value = min(value * 2, limit)
        if reaches(value):
            best = value
        else:
            low = value
    if best is None:
        return None
    # max(1, ...): an eighth of a value below 8 is 0, and the gap never gets below 1.
    while best != start and best - low > max(1, best // 8):
        middle = (low + best) // 2
        if reaches(middle):
            best = middle
        else:
            low = middle
    return best


def _chroma_end_to_end(
    collection: Any,
    vectors: np.ndarray,
    embed_fn: EmbedFn,
    query_texts: Sequence[str],
    row_of: dict[str, int],
    include: list[str],
    k: int,
) -> dict[str, Any]:
    """Timed ``query(query_texts=[text])``: chroma embeds with our embedder, then searches.

    Recall is against exact search for the embedded texts, so it judges the index alone.
    """
    texts = [str(t) for t in query_texts]
    for text in texts[:WARMUP_QUERIES]:
        collection.query(query_texts=[text], n_results=k, include=include)
    answers, seconds = _timed_text_queries(collection, texts, include, k)
    found = [[row_of[i] for i in ids] for ids in answers]
    p50, p95 = _percentiles_ms(seconds)
    # Embedded one text per call, as chroma did: an int8 model gives a text a slightly
    # different vector alone than padded in a batch (cosine down to 0.988 here), enough to
    # reorder near-tied neighbours and cost a perfect index ~0.1 of recall.
    singles = np.vstack([np.asarray(embed_fn([text]), dtype=np.float32) for text in texts])
    exact = exact_top_k(vectors, singles, k)
    return {
        "e2e_p50_ms": p50,
        "e2e_p95_ms": p95,
        "e2e_queries": len(texts),
        "e2e_recall_at_10": recall_at_k(found, exact, k),
    }


def _timed_text_queries(
    collection: Any, texts: Sequence[str], include: list[str], k: int
) -> tuple[list[list[str]], list[float]]:
    """``query(query_texts=[text])`` for each text, one a call: the ids chroma answered,
    and the seconds each answer took."""
    answers: list[list[str]] = []
    seconds: list[float] = []
    for text in texts:
        started = time.perf_counter()
        answer = collection.query(query_texts=[text], n_results=k, include=include)
        seconds.append(time.perf_counter() - started)
        answers.append(answer["ids"][0])
    return answers, seconds


def _alternating(
    collection: Any,
    alternate: Callable[[], float],
    query_texts: Sequence[str],
    include: list[str],
    k: int,
    rounds: int,
) -> dict[str, Any]:
    """``rounds`` turns of ``alternate()`` and chroma's ``query(query_texts=[text])``
    over the same texts (the order reversed every round): each side's p50s (ms), and the
    ratio of their medians."""
    texts = [str(t) for t in query_texts]

    def chroma_p50() -> float:
        return _percentiles_ms(_timed_text_queries(collection, texts, include, k)[1])[0]

    other: list[float] = []
    mine: list[float] = []
    for turn in range(rounds):
        if turn % 2 == 0:
            other.append(alternate())
            mine.append(chroma_p50())
        else:
            mine.append(chroma_p50())
            other.append(alternate())
    return {
        "other_p50_ms": [round(x, 3) for x in other],
        "chroma_e2e_p50_ms": [round(x, 3) for x in mine],
        "ratio_of_medians": round(statistics.median(other) / statistics.median(mine), 3),
    }


def _chroma_embedding_function(embed_fn: EmbedFn) -> Any:
    """Wrap ``embed_fn`` as a chromadb EmbeddingFunction (chromadb imported lazily).

    name/get_config/build_from_config are implemented so chroma records it as a known
    function instead of warning about a legacy one; the config cannot carry a Python
    callable, so rebuilding from it only works within this process.
    """
    from chromadb.api.types import Documents, EmbeddingFunction, Embeddings

    class MemorydEmbedder(EmbeddingFunction[Documents]):
        def __init__(self, fn: EmbedFn) -> None:
            self._fn = fn

        def __call__(self, input: Documents) -> Embeddings:  # noqa: A002 - chroma's name
            return np.asarray(self._fn(list(input)), dtype=np.float32)  # type: ignore[return-value]

        @staticmethod
        def name() -> str:
            return "memoryd-bench-embedder"

        def default_space(self) -> str:  # type: ignore[override]
            return "cosine"

        def get_config(self) -> dict[str, Any]:
            return {}

        @staticmethod
        def build_from_config(config: dict[str, Any]) -> MemorydEmbedder:
            return MemorydEmbedder(embed_fn)

    return MemorydEmbedder(embed_fn)


# --- report ----------------------------------------------------------------------------------

SUMMARY_KEYS = ("ids",)


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The result without per-query id lists: what goes into JSON and tables."""
    return {key: value for key, value in result.items() if key not in SUMMARY_KEYS}


def render_markdown(results: Sequence[dict[str, Any]]) -> str:
    def fmt(value: Any, spec: str) -> str:
        return "–" if value is None else format(value, spec)

    lines = [
        "| peer | n | dim | build s | ingest vec/s | p50 ms | p95 ms | recall@10 "
        "| e2e p50 ms | e2e p95 ms | disk B/vector |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        name = r["peer"] + (f" {r['version']}" if r.get("version") else "")
        lines.append(
            f"| {name} | {r['n']:,} | {r['dim']} | {fmt(r.get('build_s'), '.3f')} "
            f"| {fmt(r.get('ingest_vectors_per_s'), ',.0f')} | {r['p50_ms']:.2f} "
            f"| {r['p95_ms']:.2f} | {r['recall_at_10']:.3f} | {fmt(r.get('e2e_p50_ms'), '.2f')} "
            f"| {fmt(r.get('e2e_p95_ms'), '.2f')} | {fmt(r.get('disk_bytes_per_vector'), ',.0f')} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="stored vectors")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--clusters", type=int, default=None, help="default: n // 2000, >= 8")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-chroma", action="store_true", help="numpy only")
    parser.add_argument("--json-out", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    vectors = synthetic_vectors(args.n, args.dim, seed=args.seed, clusters=args.clusters)
    queries = synthetic_queries(vectors, args.queries, seed=args.seed + 1)
    generate_s = time.perf_counter() - started

    exact = numpy_exact(vectors, queries, k=args.k)
    results = [exact]
    if not args.no_chroma:
        try:
            results.append(chroma(vectors, queries, k=args.k, exact_ids=exact["ids"]))
        except ImportError:
            print("chromadb is not installed: pip install -e '.[bench]'", file=sys.stderr)
            return 1

    print(
        f"{args.n:,} x {args.dim} synthetic unit vectors "
        f"({args.clusters or default_clusters(args.n)} clusters, seed {args.seed}), "
        f"{args.queries} perturbed queries, k={args.k}; "
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; "
        f"generated in {generate_s:.1f} s\n"
    )
    print(render_markdown(results))
    if len(results) > 1:
        print(f"\nchromadb HNSW settings: {results[1].get('hnsw')}")
    if args.json_out:
        payload = {
            "n": args.n,
            "dim": args.dim,
            "queries": args.queries,
            "k": args.k,
            "seed": args.seed,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "results": [summary(r) for r in results],
        }
        args.json_out.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
