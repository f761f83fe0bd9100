#!/usr/bin/env python3
"""memoryd at scale, side by side with peers, in one run on one machine.

    python scripts/bench.py                               # 10k and 100k, peers, real embedder
    python scripts/bench.py --sizes "" --real 0 --real-search 100000  # the real model only
    python scripts/bench.py --sizes 10000,100000,1000000  # add 1M (long)
    python scripts/bench.py --sizes 1000 --queries 20 --real 0   # smoke (CI)

For each size, a real daemon in a temp MEMORYD_HOME ingests that many memories through
the protocol with the `hash` embedder (deterministic, nearly free: this measures the
store, not the model), then answers searches over the socket in each mode, hybrid ones
within a namespace (`hybrid_namespace`), and vector ones within a tag that 1% of the
memories carry (`vector_tag`: a narrow filter, which the vector indexes cannot apply).
Queries are not copies of stored texts, and no two are the same. Vector recall@10 is
measured against numpy exact search over the same hash vectors (for `vector_tag`, over
the tagged ones). A store with an ANN index answers at the default probes first; then
searches pause until the daemon has calibrated its probes on a sample of those queries
(memoryd/search/probes.py), and hybrid and vector search run again (`*_calibrated`,
with the probes chosen): a daemon's steady state between a user's searches. Up to
`search.ram_max` (1M) a store's vectors are searched in RAM; to time the encrypted index
tier at 1M, run with MEMORYD_SEARCH_RAM_MAX=200000 (the daemons inherit the environment).
Peers on the same vectors and query texts: chromadb PersistentClient
(ingest; query by vector; query by text with the same embedder), at its default index
settings and again at the smallest `ef_search` found that reaches the recall memoryd must
keep (`chroma.matched`: speed at equal recall), and numpy brute force.
With --real N, scripts/bench_appliance.py also runs N memories with the real ONNX model,
and the raw embedding throughput of the same texts is measured.
With --real-search N (`make bench`: 100,000), a daemon with the real model imports N
memories and answers vector and hybrid searches, and chromadb holds the same texts with
the same model's vectors and answers `query(query_texts=...)`: the vector-search target
on the vectors users search (`real_model_search`). Then the daemon answers vector
searches while a second connection imports a tenth more memories
(`vector_during_import_p50_ms`): searching while a folder is ingested.

Prints a markdown table; --json-out FILE writes everything as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))
import bench_appliance  # noqa: E402
import peers  # noqa: E402

REPO = SCRIPTS.parent
TAG, TAG_EVERY = "rare", 100  # every 100th memory carries the tag
# (name, search options): each mode, hybrid within one namespace (the bench's memories
# are all in "default"), which prefilters the vector index by namespace above the RAM tier,
# and vector within the tag on 1% (memoryd/search/filtered.py).
MODES = (
    ("hybrid", {"mode": "hybrid"}),
    ("lexical", {"mode": "lexical"}),
    ("vector", {"mode": "vector"}),
    ("hybrid_namespace", {"mode": "hybrid", "namespace": "default"}),
    ("vector_tag", {"mode": "vector", "tags": [TAG]}),
)
IDLE_S = 5.0  # seconds without requests before "idle" RSS is read
IMPORT_BATCH = 1000  # memories a `memory.import` call
# Warm-up searches before timed ones, at least what a neighbour graph waits for
# (memoryd.search.graph.CHECK_QUERIES).
GRAPH_WARMUP_QUERIES = 64
# Turns of the daemon's vector searches and chromadb's end-to-end queries, alternating,
# in the real-model comparison.
ALTERNATING_ROUNDS = 4
RECALL_TARGET = 0.95  # vector recall@10 memoryd keeps (issue 4); chroma is also timed at it


def _wait_status(client: Any, done: Any, timeout: float, every: float = 0.2
                 ) -> dict[str, Any] | None:
    """Poll ``store.status`` until ``done(status)``: that status, or None at ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status: dict[str, Any] = client.status()
        if done(status):
            return status
        time.sleep(every)
    return None


def _settled(status: dict[str, Any]) -> bool:
    """The index has every vector and the in-memory vectors are loaded (or are off
    because the store is above the cap)."""
    mem = status["ram_vectors"]
    loaded = mem["ready"] or status["memories"] > mem["max"]
    index = status["vector_index"]
    ann = index.get("ann", {})
    # Above ann_min_rows the index tier answers from its ANN index: wait until it is
    # trained and covers every row in one segment (an import's folds leave several,
    # which a compaction merges once writes have paused for 10 s), so that the figures
    # are the steady state.
    ann_done = status["search_tier"] != "index" or index["rows"] < ann.get("min_rows", 0) or (
        not ann.get("training") and ann.get("unindexed") == 0 and ann.get("segments", 1) <= 1)
    # The index's rows are read through the search handle, which can see a flush a
    # moment after the queue has let go of it: nothing pending is not yet every vector
    # in the index.
    embedded = status.get("memories", 0) - status.get("waiting_for_embedding", 0)
    complete = status["search_tier"] != "index" or index["rows"] >= embedded
    # A compaction shares the cores with searches (the one after a 1M import's last
    # training took ~40 s before f86f836, ~1 s since), and may renew the search handle,
    # whose cache the daemon then fills again (``warm``) once searches pause: until both
    # are done, searches are not at their steady pace.
    maintained = not index.get("compacting") and _ann_warm(status)
    return bool(index["pending"] == 0 and complete and loaded and ann_done and maintained)


def _ann_warm(status: dict[str, Any]) -> bool:
    """No ANN index, or one the daemon has read in whole into its search handle's cache."""
    ann = status["vector_index"].get("ann", {})
    return bool(not ann.get("indexed") or ann.get("warm"))


def _graph_settled(status: dict[str, Any]) -> bool:
    """No neighbour graph for the RAM vectors to wait for (off, too few rows, or a daemon
    without graphs), or one built: searched, or failed its check."""
    ram = status["ram_vectors"]
    graph = ram.get("graph")
    if graph is None or graph["min_rows"] <= 0 or ram["rows"] < graph["min_rows"]:
        return True
    return bool(graph["ready"] or graph["failed_check_at_rows"])


def settle_graph(client: Any, timeout: float = 300) -> None:
    """Before timed searches: a daemon builds its RAM vectors' neighbour graph once it
    has been searched ``GRAPH_WARMUP_QUERIES`` times, and checks it on those queries
    (memoryd/search/graph.py). Search it with warm-up queries (not the timed ones), and
    wait until the graph is built or has failed its check, so that no timed search runs
    beside the build (~6 s of a core at 100k)."""
    if _graph_settled(client.status()):
        return
    for query in bench_appliance.queries(GRAPH_WARMUP_QUERIES, seed=5):
        client.search(query, mode="vector", limit=10)
    if _wait_status(client, _graph_settled, timeout) is None:
        print(f"the neighbour graph did not settle within {timeout:g} s", file=sys.stderr)


def _graph_then_idle_rss(client: Any, pid: int, out: dict[str, Any]) -> float:
    """``settle_graph``, the graph's state into ``out``, then the idle RSS (MB)."""
    settle_graph(client)
    graph = client.status()["ram_vectors"].get("graph") or {}
    out["graph_searched"] = bool(graph.get("ready"))
    out["graph_recall_check"] = graph.get("recall")
    time.sleep(IDLE_S)
    return _rss_mb(pid)[0]


def _settle(client: Any, timeout: float = 1800) -> dict[str, Any]:
    """Wait until the store has settled (``_settled``); the status then."""
    return _wait_status(client, _settled, timeout) or client.status()


def wait_loaded(client: Any, timeout: float = 300) -> None:
    """Wait until a restarted daemon's other loads are done too: the lexical index in RAM
    and, above the RAM tier, the ANN index read in whole. Only then does "idle" mean
    idle: at 1M these took ~5 s after `_settle`, and the memory they leave is given back
    once they are done, so RSS read 5 s after `_settle` came out 980 or 1,472 MB by
    chance (docs/performance-log.md). The bench's daemons run at the default settings."""
    from memoryd.config import SearchSettings

    lexical_ram_max = SearchSettings().lexical_ram_max

    def loaded(status: dict[str, Any]) -> bool:
        lexical = status.get("lexical_in_ram") or status["memories"] > lexical_ram_max
        return bool(lexical and _ann_warm(status))

    _wait_status(client, loaded, timeout)


def _calibrated(client: Any, timeout: float = 120) -> dict[str, Any] | None:
    """With searches paused, wait until the daemon has calibrated its ANN probes; the
    ANN status then, or None if it did not within ``timeout``."""
    status = _wait_status(
        client, lambda s: bool(s["vector_index"].get("ann", {}).get("calibrations")),
        timeout, every=0.5)
    return None if status is None else status["vector_index"]["ann"]


def timed_searches(client: Any, queries: list[str], options: dict[str, Any]
                    ) -> tuple[list[float], list[list[str]]]:
    """Each query's search time (ms) and hits' contents, after 5 warm-up searches."""
    for q in queries[:5]:
        client.search(q, **options)
    took, hits = [], []
    for q in queries:
        t = time.perf_counter()
        result = client.search(q, limit=10, **options)
        took.append((time.perf_counter() - t) * 1000)
        hits.append([h["content"] for h in result["hits"]])
    return took, hits


def _import_texts(client: Any, texts: list[str], tag_every: int = 0) -> None:
    """Import ``texts`` as memories, ``IMPORT_BATCH`` a call; with ``tag_every``, those
    at positions 0, ``tag_every``, 2 x ``tag_every``, ... carry ``TAG``."""
    for start in range(0, len(texts), IMPORT_BATCH):
        result = client.import_items([
            {"content": t,
             **({"tags": [TAG]} if tag_every and (start + i) % tag_every == 0 else {})}
            for i, t in enumerate(texts[start:start + IMPORT_BATCH])])
        if result["failed"]:
            raise RuntimeError(f"{result['failed']} of {len(texts)} memories failed to import")


def _searched_during_import(client: Any, home: Path, texts: list[str], queries: list[str]
                            ) -> dict[str, Any]:
    """Vector searches on ``client`` while a second connection imports ``texts`` (1,000
    a call), as when a folder is ingested: p50 / p95 ms and how many ran. At least one."""
    from memoryd.client import Client
    from memoryd.config import resolve_paths

    done, failed = threading.Event(), []

    def import_all() -> None:
        try:
            with Client(resolve_paths({"MEMORYD_HOME": str(home)}), autostart=False) as other:
                _import_texts(other, texts)
        except Exception as exc:  # noqa: BLE001 - reported below
            failed.append(str(exc))
        finally:
            done.set()

    importer = threading.Thread(target=import_all, daemon=True)
    importer.start()
    took: list[float] = []
    while not took or not done.is_set():
        started = time.perf_counter()
        client.search(queries[len(took) % len(queries)], mode="vector", limit=10)
        took.append((time.perf_counter() - started) * 1000)
    importer.join()
    if failed:
        sys.exit(f"the import beside the searches failed: {failed[0]}")
    return {
        "vector_during_import_p50_ms": round(bench_appliance.pct(took, 0.5), 2),
        "vector_during_import_p95_ms": round(bench_appliance.pct(took, 0.95), 2),
        "searches_during_import": len(took),
        "imported_beside_them": len(texts),
    }


def _cell(value: Any) -> str:
    """A table cell: floats to 3 decimals (the JSON keeps them whole)."""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _rss_mb(pid: int) -> tuple[float, float]:
    """The daemon's RSS and the part of it that maps files (RssFile): the shared
    libraries' code, clean and shared. How much of a library is mapped depends on the
    page cache: after `cat` had read the libraries, the same daemon's RSS was ~35 MB
    higher, all of it in this part (docs/performance-log.md, *RSS and the page cache*)."""
    return (round(bench_appliance.rss_kb(pid) / 1024, 1),
            round(bench_appliance.rss_kb(pid, "RssFile") / 1024, 1))


def stop_daemon(daemon: Any, client: Any) -> None:
    """Shut a bench daemon down and wait for it to exit."""
    client.shutdown()
    client.close()
    daemon.wait(120)


def _finish(daemon: Any, home: Path, keep_home: bool, what: str) -> None:
    """After a run, however it ended: no daemon left, and its home removed or kept."""
    if daemon.poll() is None:
        daemon.terminate()
        daemon.wait(60)
    if keep_home:
        print(f"kept {home} (MEMORYD_HOME of {what})", file=sys.stderr)
    else:
        shutil.rmtree(home, ignore_errors=True)


def run_size(n: int, n_queries: int, with_peers: bool, keep_home: bool = False
             ) -> dict[str, Any]:
    from memoryd.config import resolve_paths
    from memoryd.embed.base import HashEmbedder

    home = Path(tempfile.mkdtemp(prefix="mdbench", dir="/tmp"))
    env = dict(os.environ, MEMORYD_HOME=str(home), MEMORYD_EMBEDDING_PROVIDER="hash")
    paths = resolve_paths({"MEMORYD_HOME": str(home)})
    texts = bench_appliance.memories(n)
    query_texts = bench_appliance.queries(n_queries, seed=23)
    out: dict[str, Any] = {"memories": n, "queries": n_queries}
    daemon, client = bench_appliance.start_daemon(env)
    try:
        started = time.perf_counter()
        try:
            _import_texts(client, texts, TAG_EVERY)
        except RuntimeError as exc:
            sys.exit(f"the {n:,}-memory run: {exc}")
        out["store_ingest_per_s"] = round(n / (time.perf_counter() - started), 1)
        ingested = time.perf_counter()
        status = _settle(client)
        out["settle_after_ingest_s"] = round(time.perf_counter() - ingested, 1)
        out["search_tier"] = status["search_tier"]
        if status["vector_index"].get("compactions"):
            out["last_compaction_s"] = status["vector_index"]["last_compaction_s"]
        ann = status["vector_index"].get("ann", {})
        if ann.get("trainings"):
            out["ann_trainings"] = ann["trainings"]
            out["ann_last_training_s"] = ann["last_training_s"]
            out["ann_indexed_rows"] = ann["indexed"]
        time.sleep(IDLE_S)  # idle: the daemon gives freed buffers back once writes pause
        out["idle_rss_mb"], out["idle_rss_file_mb"] = _rss_mb(daemon.pid)

        out["idle_rss_after_graph_mb"] = _graph_then_idle_rss(client, daemon.pid, out)
        sampler = bench_appliance.RssSampler(daemon.pid)
        sampler.start()
        hits_by_query: dict[str, list[list[str]]] = {}
        for mode, options in MODES:
            took, hits_by_query[mode] = timed_searches(client, query_texts, options)
            out[f"{mode}_p50_ms"] = round(bench_appliance.pct(took, 0.5), 2)
            out[f"{mode}_p95_ms"] = round(bench_appliance.pct(took, 0.95), 2)
        ann = _calibrated(client) if out.get("ann_trainings") else None
        if ann is not None:
            out["ann_probes"], out["ann_fetch_factor"] = ann["probes"], ann["fetch_factor"]
            for mode in ("hybrid", "vector"):
                took, hits_by_query[f"{mode}_calibrated"] = timed_searches(
                    client, query_texts, {"mode": mode})
                out[f"{mode}_calibrated_p50_ms"] = round(bench_appliance.pct(took, 0.5), 2)
                out[f"{mode}_calibrated_p95_ms"] = round(bench_appliance.pct(took, 0.95), 2)
        sampler.stop_flag.set()
        sampler.join()
        out["load_rss_mb"] = round(sampler.peak / 1024, 1)

        embedder = HashEmbedder()
        vectors = embedder.embed(texts)
        query_vectors = np.stack([embedder.embed([q])[0] for q in query_texts])
        exact = peers.exact_top_k(vectors, query_vectors, 10)
        row_of = {t: i for i, t in enumerate(texts)}
        for mode in ("vector", "vector_calibrated"):
            if mode in hits_by_query:
                found = [[row_of[c] for c in hits] for hits in hits_by_query[mode]]
                out[f"{mode}_recall_at_10"] = round(peers.recall_at_k(found, exact, 10), 4)
        tagged = np.arange(0, n, TAG_EVERY)
        exact_tagged = [[int(tagged[i]) for i in row]
                        for row in peers.exact_top_k(vectors[tagged], query_vectors, 10)]
        found = [[row_of[c] for c in hits] for hits in hits_by_query["vector_tag"]]
        out["vector_tag_recall_at_10"] = round(peers.recall_at_k(found, exact_tagged, 10), 4)
        out["disk_bytes_per_memory"] = round(peers.folder_bytes(paths.data_dir) / n, 1)

        stop_daemon(daemon, client)
        started = time.perf_counter()
        daemon, client = bench_appliance.start_daemon(env)
        client.search(query_texts[0], mode="hybrid")
        out["cold_start_to_first_search_s"] = round(time.perf_counter() - started, 3)
        # The steady state: a restarted daemon once its loads are done, idle.
        _settle(client)
        wait_loaded(client)
        time.sleep(IDLE_S)
        out["idle_rss_after_restart_mb"], out["idle_rss_after_restart_file_mb"] = _rss_mb(
            daemon.pid)
        stop_daemon(daemon, client)
    finally:
        _finish(daemon, home, keep_home, f"the {n:,} run")

    out["numpy"] = peers.summary(peers.numpy_exact(vectors, query_vectors))
    if with_peers:
        result = peers.chroma(vectors, query_vectors, documents=texts, embed_fn=embedder.embed,
                              query_texts=query_texts, exact_ids=exact,
                              matched_recall=RECALL_TARGET)
        out["chroma"] = peers.summary(result)
        e2e = out["chroma"].get("e2e_p50_ms")
        if e2e:
            out["vector_p50_over_chroma_e2e_p50"] = round(out["vector_p50_ms"] / e2e, 2)
        matched = out["chroma"].get("matched", {})
        if matched.get("reached") and matched.get("e2e_p50_ms"):
            out["vector_p50_over_chroma_matched_e2e_p50"] = round(
                out["vector_p50_ms"] / matched["e2e_p50_ms"], 2)
        out["store_ingest_over_chroma"] = round(
            out["store_ingest_per_s"] / out["chroma"]["ingest_vectors_per_s"], 2)
    return out


def real_embedder(n: int) -> dict[str, Any]:
    """bench_appliance.py at n memories, and the raw embedding rate of the same texts."""
    with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
        subprocess.run([sys.executable, str(SCRIPTS / "bench_appliance.py"), "--memories",
                        str(n), "--json-out", tmp.name], check=True, stdout=subprocess.DEVNULL)
        out = json.loads(Path(tmp.name).read_text())
    from memoryd.config import EmbeddingSettings
    from memoryd.embed.base import FastEmbedder

    model_dir = os.environ.get("MEMORYD_MODEL_DIR") or str(bench_appliance.DEFAULT_MODEL)
    embedder = FastEmbedder(EmbeddingSettings(model_dir=model_dir))
    texts = bench_appliance.memories(n)
    embedder.embed(texts[:64])
    started = time.perf_counter()
    embedder.embed(texts)
    out["raw_embed_per_s"] = round(n / (time.perf_counter() - started), 1)
    out["ingest_over_raw_embed"] = round(out["ingest_per_s"] / out["raw_embed_per_s"], 2)
    return out


def _first_pass_ready(env: dict[str, str]) -> Any:
    """A status check: the RAM vectors' first pass is ready, or will not be (under
    ``search.first_pass_min_rows``, or off): a daemon's steady state between searches."""
    from memoryd.config import load_settings, resolve_paths

    min_rows = load_settings(resolve_paths(env), env).search.first_pass_min_rows

    def ready(status: dict[str, Any]) -> bool:
        ram = status["ram_vectors"]
        if min_rows <= 0 or ram["rows"] < min_rows:
            return True
        return bool(ram.get("first_pass", {}).get("ready"))

    return ready


def real_model_search(n: int, n_queries: int, with_peers: bool, keep_home: bool = False
                      ) -> dict[str, Any]:
    """The vector-search target on a model's vectors: a daemon with the real model imports
    ``n`` memories and answers vector and hybrid searches; then chromadb holds the same
    texts with the same model's vectors and answers ``query(query_texts=...)``.

    The sizes above use the ``hash`` embedder, whose sparse vectors are hard for an HNSW
    graph (chroma's default index finds about half their neighbours at 100k) and loose
    for memoryd's first pass (it mostly scans in full): a model's vectors are what users
    search. Costs ~3 minutes at 100k, most of it embedding the texts twice."""
    from memoryd.config import EmbeddingSettings
    from memoryd.embed.base import FastEmbedder

    model_dir = os.environ.get("MEMORYD_MODEL_DIR") or str(bench_appliance.DEFAULT_MODEL)
    home = Path(tempfile.mkdtemp(prefix="mdbench", dir="/tmp"))
    env = dict(os.environ, MEMORYD_HOME=str(home), MEMORYD_MODEL_DIR=model_dir)
    env.pop("MEMORYD_EMBEDDING_PROVIDER", None)  # the default: the model
    texts = bench_appliance.memories(n)
    query_texts = bench_appliance.queries(n_queries, seed=23)
    out: dict[str, Any] = {"memories": n, "queries": n_queries}
    hits_by_mode: dict[str, list[list[str]]] = {}
    daemon, client = bench_appliance.start_daemon(env)
    try:
        started = time.perf_counter()
        try:
            _import_texts(client, texts)
        except RuntimeError as exc:
            sys.exit(f"the real-model run: {exc}")
        _wait_status(client, lambda s: s["waiting_for_embedding"] == 0 and _settled(s), 3600)
        out["ingest_per_s"] = round(n / (time.perf_counter() - started), 1)
        wait_loaded(client)
        status = _wait_status(client, _first_pass_ready(env), 300) or client.status()
        out["first_pass"] = status["ram_vectors"].get("first_pass", {}).get("ready", False)
        out["idle_rss_mb"] = _graph_then_idle_rss(client, daemon.pid, out)
        for mode in ("vector", "hybrid"):
            took, hits_by_mode[mode] = timed_searches(client, query_texts, {"mode": mode})
            out[f"{mode}_p50_ms"] = round(bench_appliance.pct(took, 0.5), 2)
            out[f"{mode}_p95_ms"] = round(bench_appliance.pct(took, 0.95), 2)
        # The daemon stays up, idle, while this process embeds the texts for recall and
        # chromadb loads them: chromadb's queries then alternate with the daemon's
        # searches, in the same minutes (``alternating``).
        embedder = FastEmbedder(EmbeddingSettings(model_dir=model_dir))
        # In the batches the daemon embedded: the int8 model gives a text a slightly different
        # vector in another batch (cosine 0.986-0.993 between one call for 3,000 texts and
        # calls of 1,000, ``/tmp/s27/embcmp.py``), and among the bench's near-alike texts
        # that reorders the nearest: recall against vectors embedded in one call read 0.5655.
        vectors = np.vstack([np.asarray(embedder.embed(texts[start:start + IMPORT_BATCH]),
                                        dtype=np.float32) for start in range(0, n, IMPORT_BATCH)])
        # One query a call, as the daemon embeds a search's query (alone, unpadded).
        query_vectors = np.vstack([np.asarray(embedder.embed([q]), dtype=np.float32)
                                   for q in query_texts])
        exact = peers.exact_top_k(vectors, query_vectors, 10)
        row_of = {t: i for i, t in enumerate(texts)}
        found = [[row_of[c] for c in hits] for hits in hits_by_mode["vector"]]
        out["vector_recall_at_10"] = round(peers.recall_at_k(found, exact, 10), 4)
        if with_peers:
            def ours() -> float:
                took, _ = timed_searches(client, query_texts, {"mode": "vector"})
                return statistics.median(took)

            result = peers.chroma(vectors, query_vectors, documents=texts,
                                  embed_fn=embedder.embed, query_texts=query_texts,
                                  exact_ids=exact, matched_recall=RECALL_TARGET,
                                  alternate=ours, rounds=ALTERNATING_ROUNDS)
            out["chroma"] = peers.summary(result)
            out["vector_p50_over_chroma_e2e_p50"] = round(
                out["vector_p50_ms"] / out["chroma"]["e2e_p50_ms"], 2)
            out["alternating_vector_over_chroma_e2e"] = result["alternating"]["ratio_of_medians"]
        # Then a tenth more memories (new texts), imported beside vector searches.
        more = bench_appliance.memories(n + max(n // 10, 1))[n:]
        out.update(_searched_during_import(client, home, more, query_texts))
        stop_daemon(daemon, client)
    finally:
        _finish(daemon, home, keep_home, "the real-model run")
    return out


def cli_import_ms(runs: int = 10) -> float:
    took = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "memory_cli.main", "--version"], check=True,
                       capture_output=True)
        took.append((time.perf_counter() - started) * 1000)
    return round(bench_appliance.pct(took, 0.5), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--real", type=int, default=10000,
                        help="memories for the real-embedder run (0: skip)")
    parser.add_argument("--real-search", type=int, default=0,
                        help="memories for the search comparison with the real model "
                             "against chromadb (0: skip; `make bench`: 100000)")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--keep-home", action="store_true",
                        help="keep each size's MEMORYD_HOME (e.g. to time restarts)")
    args = parser.parse_args()
    bench_appliance.as_installed()

    with_peers = not args.no_peers
    if with_peers:
        try:
            import chromadb  # noqa: F401
        except ImportError:
            print("chromadb not installed (pip install -e '.[bench]'): peers skipped",
                  file=sys.stderr)
            with_peers = False
    report: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 2)},
        "cli_version_process_p50_ms": cli_import_ms(),
        "sizes": [run_size(int(n), args.queries, with_peers, args.keep_home)
                  for n in args.sizes.split(",") if n],
    }
    if args.real:
        report["real_embedder"] = real_embedder(args.real)
    if args.real_search:
        report["real_model_search"] = real_model_search(args.real_search, args.queries,
                                                        with_peers, args.keep_home)
    report["machine"]["load_1m_end"] = round(os.getloadavg()[0], 2)

    print(f"machine: {report['machine']}; `memory --version` process p50 "
          f"{report['cli_version_process_p50_ms']} ms")
    keys = ["store_ingest_per_s", "hybrid_p50_ms", "hybrid_p95_ms", "lexical_p50_ms",
            "hybrid_namespace_p50_ms", "vector_p50_ms", "vector_p95_ms", "vector_recall_at_10",
            "vector_tag_p50_ms", "vector_tag_recall_at_10", "ann_probes",
            "hybrid_calibrated_p50_ms", "vector_calibrated_p50_ms",
            "vector_calibrated_recall_at_10",
            "graph_searched", "graph_recall_check",
            "idle_rss_mb", "idle_rss_file_mb", "idle_rss_after_graph_mb",
            "idle_rss_after_restart_mb", "idle_rss_after_restart_file_mb", "load_rss_mb",
            "disk_bytes_per_memory",
            "cold_start_to_first_search_s",
            "search_tier", "settle_after_ingest_s", "ann_trainings", "ann_last_training_s",
            "ann_indexed_rows", "vector_p50_over_chroma_e2e_p50",
            "vector_p50_over_chroma_matched_e2e_p50", "store_ingest_over_chroma"]
    print("| metric | " + " | ".join(f"{s['memories']:,}" for s in report["sizes"]) + " |")
    print("|---|" + "---|" * len(report["sizes"]))
    for key in keys:
        print(f"| {key} | " + " | ".join(str(s.get(key, "-")) for s in report["sizes"]) + " |")
    for peer, fields in (("numpy", ("p50_ms", "p95_ms")),
                         ("chroma", ("ingest_vectors_per_s", "p50_ms", "p95_ms",
                                     "e2e_p50_ms", "recall_at_10"))):
        for field in fields:
            values = [_cell(s.get(peer, {}).get(field, "-")) for s in report["sizes"]]
            print(f"| {peer} {field} | " + " | ".join(values) + " |")
    for field in ("ef_search", "recall_at_10", "p50_ms", "e2e_p50_ms"):
        values = [_cell(s.get("chroma", {}).get("matched", {}).get(field, "-"))
                  for s in report["sizes"]]
        print(f"| chroma at recall >= {RECALL_TARGET} {field} | " + " | ".join(values) + " |")
    if "real_embedder" in report:
        real = report["real_embedder"]
        print(f"real embedder, {real['memories']:,} memories: ingest {real['ingest_per_s']}/s, "
              f"raw embedding {real['raw_embed_per_s']}/s (ratio "
              f"{real['ingest_over_raw_embed']}), hybrid p50 {real['search_hybrid_p50_ms']} "
              f"ms, `memory search` process p50 {real['cli_search_roundtrip_p50_ms']} ms")
    if "real_model_search" in report:
        found = report["real_model_search"]
        chroma = found.get("chroma", {})
        versus = (f"; chromadb query_texts p50 {_cell(chroma['e2e_p50_ms'])} ms (recall "
                  f"{_cell(chroma['e2e_recall_at_10'])}), by vector {_cell(chroma['p50_ms'])} "
                  f"ms; ratio {found['vector_p50_over_chroma_e2e_p50']}") if chroma else ""
        first_pass = "ready" if found["first_pass"] else "not in use"
        graph = (f"searched, check {found['graph_recall_check']}" if found["graph_searched"]
                 else "not in use")
        if "chroma" in found:
            turns = found["chroma"]["alternating"]
            print(f"  alternating ({ALTERNATING_ROUNDS} turns each): memoryd vector p50 "
                  f"{turns['other_p50_ms']} ms, chromadb query_texts p50 "
                  f"{turns['chroma_e2e_p50_ms']} ms; ratio of medians "
                  f"{turns['ratio_of_medians']}")
        print(f"real model, {found['memories']:,} memories (first pass {first_pass}, "
              f"neighbour graph {graph}, idle RSS {found['idle_rss_mb']} MB): "
              f"ingest {found['ingest_per_s']}/s, "
              f"vector p50 {found['vector_p50_ms']} ms (p95 {found['vector_p95_ms']}, recall "
              f"{found['vector_recall_at_10']}), hybrid p50 {found['hybrid_p50_ms']} ms"
              + versus)
        print(f"  vector p50 {found['vector_during_import_p50_ms']} ms (p95 "
              f"{found['vector_during_import_p95_ms']}, {found['searches_during_import']} "
              f"searches) while another connection imported "
              f"{found['imported_beside_them']:,} more")
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
