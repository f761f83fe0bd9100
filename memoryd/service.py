"""The memory service: what every protocol method does, on top of the stores.

Data flows one way: the server validates nothing itself and calls these methods; they
validate params, embed off the loop, write DuckDB (the truth) on its owner thread, and hand
vectors to the VectorCatalog, which keeps vector search in step. Nothing here touches a
socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from memoryd import IMPORT_BATCH_MAX, __version__, heap, validate
from memoryd.config import Paths, Settings
from memoryd.crypto import keys
from memoryd.embed import EmbeddingRuntime
from memoryd.errors import InvalidParams, KeyProblem, Locked, NotFound, Unavailable
from memoryd.logs import redacted_traceback
from memoryd.model import Memory, NewMemory, SearchFilters, format_time, new_ids, utcnow
from memoryd.search.cores import own_work
from memoryd.search.exact import exact_similarities
from memoryd.search.filtered import nearest_to_fetch
from memoryd.search.fusion import Rankable, Ranked, rank
from memoryd.search.lexical import DocumentAnalyzer
from memoryd.search.query import ParsedQuery, parse_query
from memoryd.search.ram import RankFact
from memoryd.search.timeexpr import time_window
from memoryd.search.vector_blob import vector_blob, vector_blobs
from memoryd.store.database import (
    RELEASE_CACHE_LIMIT_MB,
    Database,
    PreparedMemory,
    build_ram_index,
    load_content_keys,
)
from memoryd.store.owner import OwnerThread
from memoryd.vector_catalog import VectorCatalog

log = logging.getLogger(__name__)

EMBED_BATCH = 256
# How long a request waits for a model that is still loading before it goes on without
# it (a local model loads in well under a second; a hub download may take minutes).
MODEL_WAIT_S = 10.0

# Writes paused this long: return freed memory to the OS (memoryd.heap).
RELEASE_AFTER_WRITES_S = 2.0
# The RAM index is built once vector search is ready and searches have paused this long
# (or after the longer wait at most): at 1M memories its build keeps both cores busy for
# ~3 s, and begun at the store's opening it held the first search of a restart up from
# ~1.7 s to 2.2-3.2 s. SQL answers meanwhile.
RAM_INDEX_QUIET_S = 0.5
RAM_INDEX_MAX_WAIT_S = 10.0
# The duplicate check's keys are read once vector search is ready (or after this long at
# most): at 1M memories their read took ~0.4 s of a core while the vectors loaded on
# both, which every search waits for. Until then, each check asks SQL.
CONTENT_KEYS_MAX_WAIT_S = 10.0

Pairs = tuple[str | None, str | None]  # a memory's (previous, next) in its thread


@dataclass
class Context:
    """Who is asking: recorded as the actor of every change."""

    actor: str = "unknown"


def _known_similarities(
    query_vector: np.ndarray | None,
    vector_found: Mapping[str, float | None],
    prefetched: Mapping[str, tuple[Memory, bytes | None]],
) -> dict[str, float | None]:
    """The similarities a search knows before ranking: the vector candidates' (from the
    RAM tier's int8 copies or the index's exact copies; a copy that did not open is left
    out, to be read from DuckDB) and the prefetched lexical candidates' (from their stored
    vectors; ``None`` for one without a vector, which a read would not find either)."""
    known: dict[str, float | None] = {}
    if query_vector is None:
        return known
    if prefetched:
        vectors = {i: vector for i, (_, vector) in prefetched.items()}
        known = dict.fromkeys(vectors)
        known.update(exact_similarities(query_vector, vectors.items()))
    known.update((i, s) for i, s in vector_found.items() if s is not None)
    return known


# A vector search ranked by similarity alone reads the rank facts of this many times
# its limit of best candidates first (``_vector_shortlist``).
SHORTLIST_PER_HIT = 2


def _vector_shortlist(
    mode: str, request: validate.SearchRequest, vector_found: Mapping[str, float | None]
) -> list[str] | None:
    """The candidates whose rank facts a vector search reads first, when it ranks by
    similarity alone (no recency or importance weight) and knows every candidate's: the
    best ``SHORTLIST_PER_HIT`` times its limit, in the order ranking gives them (ties
    by id). The facts say which of them exist, have not expired and pass the filters;
    when at least the limit of them do, the best of those are the best of all the
    candidates (the rest rank below them), and the other facts are not read: at 100k
    real-model memories ~0.1 ms of a ~3.4 ms search read the facts of all 50. ``None``
    for any other search."""
    if mode != "vector" or request.recency_weight > 0 or request.importance_weight > 0:
        return None
    size = SHORTLIST_PER_HIT * request.limit
    if len(vector_found) <= size:
        return None
    known: list[tuple[str, float]] = []
    for memory_id, similarity in vector_found.items():
        if similarity is None:
            return None
        known.append((memory_id, similarity))
    known.sort(key=lambda item: (-item[1], item[0]))
    return [memory_id for memory_id, _ in known[:size]]


class MemoryService:
    def __init__(self, paths: Paths, settings: Settings):
        self.paths = paths
        self.settings = settings
        self.notices: list[str] = []
        self.embedding = EmbeddingRuntime(settings.embedding)
        self.analyzer = DocumentAnalyzer(settings.search.index_keys, settings.search.thread_context)
        self._db_thread = OwnerThread("duckdb")
        # Lexical searches over the RAM postings: beside a hybrid search's embedding (on
        # the event loop), and not queued behind an import's SQL on the DuckDB thread.
        self._ram_search_thread = OwnerThread("ram-search")
        self._db: Database | None = None
        self._dek: bytes | None = None
        self._keyfile: keys.KeyFile | None = None
        self.vectors = VectorCatalog(
            paths.vector_dir, settings.search, self._db_thread,
            model_vectors=settings.embedding.provider.lower() == "fastembed",
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._last_write = 0.0  # time.monotonic() of the last stored memory
        # Background reads of whole tables in progress (start-up loads), and when the
        # last one ended: memory is released only once they are over (_release_when_idle).
        self._bulk_reads = 0
        self._last_bulk_read = 0.0
        self._searches = 0  # in progress
        self._last_search = 0.0  # time.monotonic() when the last one ended

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def locked(self) -> bool:
        return self._db is None

    async def start(self) -> None:
        """Read or create the data key; open the store unless the key is passphrase-locked."""
        keyfile = keys.read_key_file(self.paths.key_file)
        if keyfile is None:
            if self.paths.database.exists():
                raise KeyProblem(
                    f"the database exists but its key file {self.paths.key_file} is missing; "
                    "restore the key file (without it the data cannot be read)"
                )
            keys.create_key_file(self.paths.key_file)
            keyfile = keys.read_key_file(self.paths.key_file)
            assert keyfile is not None
            self.notices.append(
                f"memoryd created a new data key in {self.paths.key_file} "
                f"(fingerprint {keyfile.fingerprint}). Back it up: without it your memories "
                "cannot be read. `memory key passwd` protects it with a passphrase."
            )
            log.info("created a new data key, fingerprint %s", keyfile.fingerprint)
        self._keyfile = keyfile
        if keyfile.protected:
            passphrase = os.environ.get("MEMORYD_PASSPHRASE")
            if not passphrase:
                log.info("data key is passphrase-protected; waiting for unlock")
                return
            await self._open_store(await self._unwrap(keyfile, passphrase))
        else:
            await self._open_store(keys.unlock(keyfile, None))

    async def _unwrap(self, keyfile: keys.KeyFile, passphrase: str) -> bytes:
        loop = asyncio.get_running_loop()
        # scrypt takes a good fraction of a second on purpose: keep it off the event loop.
        return await loop.run_in_executor(None, keys.unlock, keyfile, passphrase)

    async def _open_store(self, dek: bytes) -> None:
        self.paths.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        heap.prepare()  # before the loads: so idle releases reach what they free
        if self.paths.index_on_disk:  # the index tier is likely
            self.vectors.preload_index_library()
        self._db = await self._db_thread.run(
            Database,
            self.paths.database,
            keys.duckdb_key(dek),
            self.paths.temp_dir,
            self.analyzer,
            self.settings.store.memory_limit_mb,
            self.settings.search.lexical_ram_max,
            self.settings.store.checkpoint_mb,
        )
        self._dek = dek
        self.vectors.attach(self._db, dek)
        self.embedding.start_loading()
        memories = await self._db_thread.run(self._db.count)
        log.info("store open: %d memories", memories)
        self._spawn(self._prepare_vectors())
        self._spawn(self._load_content_keys())
        lexical_max = self.settings.search.lexical_ram_max
        if 0 < lexical_max and memories <= lexical_max:
            self._spawn(self._load_ram_index())
        self._spawn(self.vectors.flush_loop())
        self._spawn(self.vectors.compact_loop())
        self._spawn(self.vectors.ann_loop())
        if self.settings.search.first_pass_min_rows > 0:
            self._spawn(self.vectors.first_pass_loop())
        self._spawn(self._expiry_loop())
        self._spawn(self._release_when_idle())

    @contextlib.asynccontextmanager
    async def _bulk_read(self) -> AsyncIterator[None]:
        self._bulk_reads += 1
        try:
            yield
        finally:
            self._bulk_reads -= 1
            self._last_bulk_read = time.monotonic()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            log.error("background task failed: %s", redacted_traceback(exc))

    async def close(self) -> None:
        """Flush the vector index, checkpoint DuckDB, stop the threads."""
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        try:
            await self.vectors.close()
        except Exception as exc:  # noqa: BLE001 - DuckDB must still be closed
            log.error("closing the vector index failed: %s", redacted_traceback(exc))
        if self._db is not None:
            await self._db_thread.run(self._db.close)
            self._db = None
        self._db_thread.shutdown()
        self._ram_search_thread.shutdown()
        self.embedding.shutdown()

    @property
    def embedding_id(self) -> str | None:
        """Names the vectors: the model and the recipe of the text it embedded. When
        either changes, stored vectors no longer fit and memories are embedded again."""
        name = self.embedding.model_name
        if name is None:
            return None
        return f"{name}|text:{','.join(self.analyzer.index_keys)}"

    def _embed_text(self, content: str, metadata: dict[str, Any] | None) -> str:
        return self.analyzer.index_text(content, metadata)

    def _require_store(self) -> Database:
        if self._db is None:
            raise Locked("memoryd is locked: run `memory unlock`")
        return self._db

    # -- embeddings in the background -------------------------------------------------------

    async def _prepare_vectors(self) -> None:
        """Load the model, make vector search complete (RAM vectors loaded, or the
        index reconciled with DuckDB), then embed what waits. In the background."""
        try:
            embedder = await self.embedding.ensure_loaded()
            if embedder is None or self.embedding_id is None:
                return
            async with self._bulk_read():
                await self.vectors.open(embedder.dim, self.embedding_id)
        finally:
            self.vectors.ready.set()
        await self._embed_waiting()

    async def _load_ram_index(self) -> None:
        """Copy the postings and rank facts into RAM for fast lexical search and ranking
        (stores up to ``search.lexical_ram_max`` only); SQL and the rows answer
        meanwhile."""
        db = self._require_store()
        deadline = time.monotonic() + RAM_INDEX_MAX_WAIT_S
        while time.monotonic() < deadline and (
            not self.vectors.ready.is_set()  # the model may take minutes to download
            or self._searches
            or time.monotonic() - self._last_search < RAM_INDEX_QUIET_S
        ):
            await asyncio.sleep(0.1)
        async with self._bulk_read():
            snapshot = await self._db_thread.run(db.begin_ram_index)
            ram = None
            try:
                ram = await asyncio.get_running_loop().run_in_executor(
                    None, build_ram_index, snapshot, self.settings.search.rows_ram_max_mb << 20
                )
            finally:
                await self._db_thread.run(db.finish_ram_index, ram)

    async def _load_content_keys(self) -> None:
        """Load the duplicate-check prefilter; until then every check asks SQL."""
        db = self._require_store()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.vectors.ready.wait(), CONTENT_KEYS_MAX_WAIT_S)
        async with self._bulk_read():
            batches = await self._db_thread.run(db.content_key_reader)
            loop = asyncio.get_running_loop()
            keys = await loop.run_in_executor(None, load_content_keys, batches)
            await self._db_thread.run(db.content_keys.load, keys)

    async def _embed_waiting(self) -> None:
        db = self._require_store()
        model = self.embedding_id
        if model is None:
            return
        total = 0
        while not self._closing:
            batch = await self._db_thread.run(db.waiting_for_embedding, model, EMBED_BATCH)
            if not batch:
                break
            texts = [self._embed_text(text, meta) for _, text, meta in batch]
            vectors = await self.embedding.embed(texts)
            if vectors is None:
                return
            with self.vectors.changing():
                await self._db_thread.run(
                    db.set_embeddings,
                    list(zip([i for i, _, _ in batch], vector_blobs(vectors), strict=True)),
                    model,
                )
                ids = [b[0] for b in batch]
                self.vectors.queue(await self._db_thread.run(db.embedded_vectors, model, ids))
            total += len(batch)
        if total:
            log.info("embedded %d memories that were waiting", total)

    async def _release_when_idle(self) -> None:
        """After the start-up loads, whenever writes pause, and when searches have paused
        for ``store.cache_idle_s``, give memory back: an import of 100k memories, or the
        loads of a restart, left the daemon holding buffers it never used again. Never
        while a load reads a whole table: releasing DuckDB's cache lowers its memory
        limit for a moment, for every reader."""
        released = 0.0
        idle_s = self.settings.store.cache_idle_s
        while True:
            await asyncio.sleep(RELEASE_AFTER_WRITES_S)
            now = time.monotonic()
            busy = self._bulk_reads or self.vectors.loading
            last = max(self._last_write, self._last_bulk_read)
            quiet = now - self._last_write >= RELEASE_AFTER_WRITES_S
            if last > released and quiet and not busy:
                released = last
                await self._release_memory()
            elif (
                idle_s > 0
                and self._last_search > released
                and not self._searches
                and now - max(self._last_search, self._last_write) >= idle_s
                and not busy
            ):
                # What searches cached (a filtered search above the RAM tier can read
                # every row's vector) goes too, once they have paused for long.
                released = self._last_search
                await self._release_after_searches()

    async def _release_memory(self) -> None:
        """After bulk work: the write-ahead log an import left (into the database file),
        DuckDB's cached blocks and what writes left in Python containers, then the
        allocators' free pages."""
        if self._db is not None and await self._db_thread.run(self._db.settle_after_writes):
            log.info("checkpointed the database after writes paused")
        await asyncio.get_running_loop().run_in_executor(None, heap.release)

    async def _release_after_searches(self) -> None:
        db = self._db
        if db is None:
            return
        cached = await self._db_thread.run(db.cached_mb)
        if cached <= RELEASE_CACHE_LIMIT_MB:
            return
        await self._release_memory()
        left = await self._db_thread.run(db.cached_mb)
        log.info("searches paused: DuckDB's cache emptied (%.0f MB, %.0f left)", cached, left)

    async def _expiry_loop(self) -> None:
        db = self._require_store()
        while True:
            with self.vectors.changing():
                ids = await self._db_thread.run(db.purge_expired)
                if ids:
                    self.vectors.forget(ids)
                    log.info("purged %d expired memories", len(ids))
            await asyncio.sleep(60)

    # -- writes -----------------------------------------------------------------------------

    def _prepare(
        self,
        item: NewMemory,
        memory_id: str,
        content_hash: str,
        now: datetime,
        blob: bytes | None,
    ) -> PreparedMemory:
        return PreparedMemory(
            id=memory_id,
            content=item.content,
            content_hash=content_hash,
            namespace=item.namespace,
            kind=item.kind,
            tags=item.tags,
            metadata=item.metadata,
            importance=item.importance,
            source=item.source,
            thread=item.thread,
            position=item.position,
            created_at=item.created_at or now,
            updated_at=now,
            expires_at=item.expires_at,
            embedding=blob,
            embedding_model=None if blob is None else self.embedding_id,
        )

    async def _store(self, items: list[NewMemory], ctx: Context) -> list[tuple[str, bool]]:
        db = self._require_store()
        # Skip the model for content that is already stored: duplicates cost nothing.
        hashes = [(i.namespace, _content_hash(i.content)) for i in items]
        known = await self._db_thread.run(db.find_duplicates, hashes)
        fresh = [n for n, key in enumerate(hashes) if key not in known]
        blob_at: dict[int, bytes] = {}
        if fresh:
            texts = [self._embed_text(items[n].content, items[n].metadata) for n in fresh]
            vectors = await self.embedding.embed(texts, wait=MODEL_WAIT_S)
            if vectors is not None:
                blob_at = dict(zip(fresh, vector_blobs(vectors), strict=True))
        now = utcnow()  # one moment for the batch; ids still order it
        prepared = [
            self._prepare(item, memory_id, key[1], now, blob_at.get(n))
            for n, (item, memory_id, key) in enumerate(
                zip(items, new_ids(len(items)), hashes, strict=True)
            )
        ]
        with self.vectors.changing(), own_work():
            results = await self._db_thread.run(db.insert, prepared, ctx.actor)
            self._last_write = time.monotonic()
            self.vectors.queue(
                [
                    (p.id, p.namespace, p.embedding)
                    for p, (_, duplicate) in zip(prepared, results, strict=True)
                    if not duplicate and p.embedding is not None
                ]
            )
        return results

    async def add(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        item = validate.new_memory(params)
        [(memory_id, duplicate)] = await self._store([item], ctx)
        memory = await self._db_thread.run(self._require_store().get, memory_id)
        log.info("%s memory %s", "duplicate of" if duplicate else "added", memory_id)
        return {"memory": memory.to_json(), "duplicate": duplicate}

    async def import_items(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        validate.check_keys(params, {"items"})
        items = params.get("items")
        if not isinstance(items, list):
            raise InvalidParams("items must be a list of memory objects")
        if len(items) > IMPORT_BATCH_MAX:
            raise InvalidParams(f"at most {IMPORT_BATCH_MAX} items per call")
        results: list[dict[str, Any]] = [{} for _ in items]
        good: list[tuple[int, NewMemory]] = []
        for index, raw in enumerate(items):
            try:
                good.append((index, validate.new_memory(validate.require_object(raw))))
            except InvalidParams as exc:
                results[index] = {"index": index, "error": exc.to_rpc()}
        stored = await self._store([m for _, m in good], ctx) if good else []
        for (index, _), (memory_id, duplicate) in zip(good, stored, strict=True):
            results[index] = {"index": index, "id": memory_id, "duplicate": duplicate}
        duplicates = sum(1 for r in results if r.get("duplicate"))
        failed = sum(1 for r in results if "error" in r)
        log.info(
            "import batch: %d added, %d duplicates, %d failed",
            len(items) - duplicates - failed,
            duplicates,
            failed,
        )
        return {
            "results": results,
            "added": len(items) - duplicates - failed,
            "duplicates": duplicates,
            "failed": failed,
        }

    async def update(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        db = self._require_store()
        validate.check_keys(params, validate.MEMORY_FIELDS | {"id"} - {"source"})
        memory_id = validate.memory_id(params)
        changes = validate.memory_fields({k: v for k, v in params.items() if k != "id"})
        current = await self._db_thread.run(db.get, memory_id)
        derived: dict[str, Any] = {}
        content = changes.get("content", current.content)
        metadata = changes.get("metadata", current.metadata)
        if content != current.content:
            derived["content_hash"] = _content_hash(content)
        new_text = self._embed_text(content, metadata)
        if new_text != self._embed_text(current.content, current.metadata):
            vectors = await self.embedding.embed([new_text], wait=MODEL_WAIT_S)
            derived["embedding"] = None if vectors is None else vector_blob(vectors[0])
            derived["embedding_model"] = None if vectors is None else self.embedding_id
        with self.vectors.changing():
            record = await self._db_thread.run(
                db.update, memory_id, changes, ctx.actor, derived
            )
            memory = await self._db_thread.run(db.get, memory_id)
            if record and ("embedding" in derived or "namespace" in record):
                self.vectors.forget([memory_id])
                if memory.embedded and self.embedding_id:
                    model = self.embedding_id
                    self.vectors.queue(
                        await self._db_thread.run(db.embedded_vectors, model, [memory_id])
                    )
        log.info("updated memory %s (%s)", memory_id, ", ".join(sorted(record)) or "no change")
        return {"memory": memory.to_json()}

    async def delete(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        db = self._require_store()
        validate.check_keys(params, {"id"})
        memory_id = validate.memory_id(params)
        with self.vectors.changing():
            await self._db_thread.run(db.delete, memory_id, ctx.actor)
            self.vectors.forget([memory_id])
        log.info("deleted memory %s", memory_id)
        return {"id": memory_id, "deleted": True}

    # -- reads ------------------------------------------------------------------------------

    async def get(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        db = self._require_store()
        validate.check_keys(params, {"id"})
        memory_id = validate.memory_id(params)

        def read() -> Memory:
            db.get(memory_id)  # not_found before touching
            db.touch(memory_id)
            return db.get(memory_id)

        return {"memory": (await self._db_thread.run(read)).to_json()}

    async def list_memories(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        db = self._require_store()
        validate.check_keys(params, validate.FILTER_FIELDS | {"limit", "after"})
        filters = validate.search_filters(params)
        limit = validate.limit(params, 50, 1000)
        rows = await self._db_thread.run(
            db.list_memories, filters, limit + 1, validate.cursor(params)
        )
        page = rows[:limit]
        return {
            "memories": [m.to_json() for m in page],
            "next": page[-1].id if len(rows) > limit else None,
        }

    async def export(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        db = self._require_store()
        validate.check_keys(params, {"namespace", "after", "limit"})
        filters = SearchFilters(
            namespace=validate.namespace(params["namespace"])
            if params.get("namespace") is not None
            else None
        )
        limit = validate.limit(params, 500, 5000)
        rows = await self._db_thread.run(
            db.list_memories, filters, limit + 1, validate.cursor(params), False
        )
        page = rows[:limit]
        return {
            "memories": [m.to_json() for m in page],
            "next": page[-1].id if len(rows) > limit else None,
        }

    async def history(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        db = self._require_store()
        validate.check_keys(params, {"id"})
        events = await self._db_thread.run(db.history, validate.memory_id(params))
        for event in events:
            event["at"] = format_time(event["at"])
        return {"events": events}

    async def search(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        self._searches += 1
        try:
            return await self._search(params)
        finally:
            self._searches -= 1
            self._last_search = time.monotonic()

    async def _search(self, params: dict[str, Any]) -> dict[str, Any]:
        db = self._require_store()
        started = time.perf_counter()
        request = validate.search_request(params, self.settings.search)
        mode, filters = request.mode, request.filters
        pool = max(request.limit * 4, 50)
        parsed = parse_query(request.query)

        # The rank facts in RAM apply every filter but metadata: that one and phrases need
        # each candidate's row.
        from_ram = not filters.beyond_rank_facts and not parsed.phrases
        # Above the RAM tier the vector candidates come with their exact similarities, and
        # a hybrid search reads the lexical candidates' rows and exact vectors from DuckDB
        # while the vector leg still runs (embedding, then the index search: the longer leg
        # at 1M), not after it: ranking needs their vectors, and the hits are mostly among
        # them (all 2,000 hits of the bench's 200 queries at 1M), so their rows are read
        # already. At 1M, in-process: 50 ids' vectors 2.65 ms, their rows too 4.22 ms,
        # 10 hits' rows 2.17 ms after ranking.
        prefetch = mode == "hybrid" and from_ram and not self.vectors.in_ram
        # Vector searches wait while the index is reconciled at start (a fraction of a
        # second), not while it is rebuilt (minutes at 1M): hybrid ones answer from
        # words alone meanwhile and say so.
        rebuilding = mode != "lexical" and self.vectors.rebuilding

        async def lexical_leg() -> tuple[dict[str, float], dict[str, tuple[Memory, bytes | None]]]:
            if mode == "vector":
                return {}, {}
            args = (parsed.terms, filters, pool, parsed.prefixes)
            in_ram = await self._ram_search_thread.run(db.lexical_search_now, *args)
            found = dict(
                in_ram if in_ram is not None
                else await self._db_thread.run(db.lexical_search, *args)
            )
            if not prefetch or not found:
                return found, {}
            return found, await self._db_thread.run(db.get_many, list(found), filters, True)

        share = 1.0  # of the vector index that the search's namespace holds
        if (mode != "lexical" and not rebuilding and filters.namespace is not None
                and not self.vectors.in_ram):
            # Before the legs start: asked from the vector leg, it waited on the DuckDB
            # thread behind the lexical search and held the ANN search back by as much
            # (hybrid within a namespace at 1M: ~4 ms of ~25).
            share = await self._db_thread.run(db.namespace_share, filters.namespace)

        async def vector_leg() -> tuple[np.ndarray | None, dict[str, float | None]]:
            if mode == "lexical" or rebuilding:
                return None, {}
            vector = await self.embedding.embed_query(parsed.text, wait=MODEL_WAIT_S)
            if vector is None:
                return None, {}
            if filters.beyond_namespace:
                return vector, await self._filtered_vector_candidates(
                    db, vector, filters, pool, share
                )
            return vector, await self.vectors.candidates(
                vector, filters.namespace, pool, share=share
            )

        # The legs run on different threads (the RAM search thread's or DuckDB's; the event
        # loop's, the model's or Lance's): overlap them. In a search of one mode the other
        # leg returns at once, and the one is awaited as it is: gather would wrap each in
        # a task and cost turns of the event loop.
        if mode == "hybrid":
            (lexical_scores, prefetched), (query_vector, vector_found) = await asyncio.gather(
                lexical_leg(), vector_leg()
            )
        else:
            lexical_scores, prefetched = await lexical_leg()
            query_vector, vector_found = await vector_leg()
        degraded = None
        if mode != "lexical" and query_vector is None:
            degraded = (
                "vector index rebuilding"
                if rebuilding
                else f"no embedding model ({self.embedding.state})"
            )
            if mode == "vector":
                raise Unavailable(f"{degraded}; vector search needs it, lexical search works")

        candidates = list(dict.fromkeys([*lexical_scores, *vector_found]))
        spread = mode == "hybrid" and self.settings.search.neighbour_weight > 0
        # Neighbours fetched for spreading are not candidates: no own vector score.
        wanted = list(vector_found) if mode == "vector" else candidates
        known = None
        if from_ram:
            similar = _known_similarities(query_vector, vector_found, prefetched)
            shortlist = _vector_shortlist(mode, request, vector_found)
            if shortlist is not None:
                known = await self._ranked_from_ram(
                    db, shortlist, shortlist, query_vector, filters, spread, similar
                )
                if known is not None and len(known[1]) < request.limit:
                    known = None  # too few of them pass: all of them, as below
            if known is None:
                known = await self._ranked_from_ram(
                    db, candidates, wanted, query_vector, filters, spread, similar
                )
        rows = prefetched
        memories: Mapping[str, Rankable]
        if known is None:
            rows, memories, vector_scores, pairs = await self._ranked_from_rows(
                db, candidates, wanted, query_vector, filters, spread, parsed
            )
        else:
            memories, vector_scores, pairs = known
        # Only neighbours that passed the filters (and phrases) can receive a share.
        neighbours = (
            {
                k: (p if p in memories else None, n if n in memories else None)
                for k, (p, n) in pairs.items()
            }
            if spread
            else None
        )
        now = utcnow()
        window = time_window(request.query, now) if mode == "hybrid" else None
        ranked = rank(
            mode,
            {k: v for k, v in lexical_scores.items() if k in memories},
            vector_scores,
            memories,
            neighbours,
            window,
            self.settings.search,
            request.recency_weight,
            request.importance_weight,
            pool,
            now,
        )
        hits = []
        for r, memory in await self._hit_rows(db, ranked, request.limit, filters, rows):
            hit = memory.to_json()
            hit["score"] = round(r.score, 6)
            if request.explain:
                hit["signals"] = r.signals()
            hits.append(hit)
        result: dict[str, Any] = {
            "hits": hits,
            "mode": mode,
            "took_ms": round((time.perf_counter() - started) * 1000, 2),
        }
        if degraded:
            result["degraded"] = degraded
        if window is not None:
            result["time_preference"] = {
                "since": format_time(window.since),
                "until": format_time(window.until),
                "phrase": window.phrase,
            }
        return result

    async def _filtered_vector_candidates(
        self, db: Database, vector: np.ndarray, filters: SearchFilters, pool: int, share: float
    ) -> dict[str, float | None]:
        """Vector candidates for a search with filters the vector indexes cannot apply:
        enough nearest ones that about ``pool`` pass, or, for a narrow filter, the
        ``pool`` nearest of every memory that passes (``memoryd.search.filtered``); with
        their similarities where known (``VectorCatalog.candidates``)."""
        matching, in_scope = await self._db_thread.run(db.filter_counts, filters)
        if matching == 0:
            return {}
        fetch = nearest_to_fetch(matching, in_scope, pool)
        if fetch is not None:
            return await self.vectors.candidates(vector, filters.namespace, pool, fetch, share)
        await self.vectors.ready.wait()
        read_vectors = not self.vectors.in_ram
        stored = await self._db_thread.run(db.matching_vectors, filters, read_vectors)
        if not read_vectors and not self.vectors.in_ram:  # they left RAM meanwhile
            ids = [i for i, _ in stored]
            stored = list((await self._db_thread.run(db.stored_vectors, ids)).items())
        return self.vectors.nearest_among(vector, stored, pool)

    async def _ranked_from_ram(
        self,
        db: Database,
        candidates: list[str],
        wanted: list[str],
        query_vector: np.ndarray | None,
        filters: SearchFilters,
        spread: bool,
        similar: Mapping[str, float | None],
    ) -> tuple[dict[str, RankFact], dict[str, float], dict[str, Pairs]] | None:
        """What ranking reads, from RAM: the candidates' rank facts, and their vector
        similarities: those already known (``similar``, from ``_known_similarities``;
        ``None`` for a memory known to have no vector), the rest int8 ones from RAM, or
        with the vectors in the index exact ones from their stored vectors alone.
        ``None`` when the facts are not in RAM (the rows are read instead)."""
        # On this (the event loop's) thread when the RAM index can answer here now: the
        # owner thread may be busy with an import's inserts and commits.
        found = db.candidate_facts_now(candidates, spread, filters)
        if found is None:
            found = await self._db_thread.run(db.candidate_facts, candidates, spread, filters)
        if found is None:
            return None
        facts, pairs = found
        vector_scores: dict[str, float] = {}
        if query_vector is not None:
            targets = [i for i in wanted if i in facts]
            vector_scores = {i: s for i in targets if (s := similar.get(i)) is not None}
            rest = [i for i in targets if i not in similar]
            scores = self.vectors.similarities(query_vector, rest)
            if scores is None:
                # At 1M memories a read of ~100 vectors took ~9 ms: only those not known.
                stored = await self._db_thread.run(db.stored_vectors, rest) if rest else {}
                scores = exact_similarities(query_vector, stored.items())
            vector_scores.update(scores)
        return facts, vector_scores, pairs

    async def _ranked_from_rows(
        self,
        db: Database,
        candidates: list[str],
        wanted: list[str],
        query_vector: np.ndarray | None,
        filters: SearchFilters,
        spread: bool,
        parsed: ParsedQuery,
    ) -> tuple[
        dict[str, tuple[Memory, bytes | None]],
        dict[str, Memory],
        dict[str, float],
        dict[str, Pairs],
    ]:
        """What ranking reads, from the candidates' rows: every filter and phrase applied,
        vector similarity exact."""
        rows, pairs = await self._db_thread.run(db.candidates, candidates, filters, spread)
        if parsed.phrases:
            rows = {k: v for k, v in rows.items() if parsed.matches_phrases(v[0].content)}
        vector_scores: dict[str, float] = {}
        if query_vector is not None:
            targets = set(wanted)
            vector_scores = exact_similarities(
                query_vector, ((k, blob) for k, (_, blob) in rows.items() if k in targets)
            )
        return rows, {k: v[0] for k, v in rows.items()}, vector_scores, pairs

    async def _hit_rows(
        self,
        db: Database,
        ranked: list[Ranked],
        limit: int,
        filters: SearchFilters,
        rows: Mapping[str, tuple[Memory, bytes | None]],
    ) -> list[tuple[Ranked, Memory]]:
        """The rows of the best ``limit`` ranked ids: those in ``rows`` (read before
        ranking: every candidate's, or the lexical candidates'), the rest read now,
        skipping any deleted meanwhile."""
        out: list[tuple[Ranked, Memory]] = []
        start = 0
        while len(out) < limit and start < len(ranked):
            chunk = ranked[start : start + limit - len(out)]
            start += len(chunk)
            missing = [r.id for r in chunk if r.id not in rows]
            # From RAM on this thread when it can answer here now, as the facts are.
            in_ram = db.rows_now(missing, filters, ranked=True) if missing else {}
            fetched = (
                in_ram
                if in_ram is not None
                else await self._db_thread.run(db.get_many, missing, filters, False)
            )
            for r in chunk:
                found = rows.get(r.id) or fetched.get(r.id)
                if found is not None:
                    out.append((r, found[0]))
        return out

    # -- status, stats, keys ------------------------------------------------------------------

    async def stats(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        db = self._require_store()
        validate.check_keys(params, set())
        stats = await self._db_thread.run(db.stats)
        stats["disk_bytes"] = {
            "database": _size(db.path) + _size(db.wal_path),
            "vectors": _size(self.paths.vector_dir),
        }
        return stats

    async def status(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        validate.check_keys(params, set())
        out: dict[str, Any] = {
            "locked": self.locked,
            "version": __version__,
            "data_dir": str(self.paths.data_dir),
            "embedding": {
                "provider": self.settings.embedding.provider,
                "model": self.embedding.model_name or self.settings.embedding.model,
                "model_dir": self.settings.embedding.model_dir or None,
                "state": self.embedding.state,
                "error": self.embedding.error,
                "dim": self.embedding.dim,
            },
            "key": {
                "protected": bool(self._keyfile and self._keyfile.protected),
                "fingerprint": self._keyfile.fingerprint if self._keyfile else None,
                "file": str(self.paths.key_file),
            },
        }
        if self._db is not None:
            db = self._db
            out["memories"] = await self._db_thread.run(db.count)
            out["waiting_for_embedding"] = await self._db_thread.run(
                db.count_waiting, self.embedding_id
            )
            out.update(await self.vectors.status())
            out["lexical_in_ram"] = db.ram_ready
            out["hit_fields_in_ram"] = db.hit_fields_in_ram
        return out

    async def unlock(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        validate.check_keys(params, {"passphrase"})
        passphrase = params.get("passphrase")
        if not isinstance(passphrase, str) or not passphrase:
            raise InvalidParams("passphrase must be a non-empty string")
        keyfile = keys.read_key_file(self.paths.key_file)
        if keyfile is None:
            raise KeyProblem(f"no key file at {self.paths.key_file}")
        dek = await self._unwrap(keyfile, passphrase)
        self._keyfile = keyfile
        if self._db is None:
            await self._open_store(dek)
            log.info("unlocked")
        # A plain key has no passphrase to check: say so rather than pretend one matched.
        return {"unlocked": True, "protected": keyfile.protected}

    async def passwd(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        self._require_store()
        validate.check_keys(params, {"new_passphrase", "old_passphrase"})
        new = params.get("new_passphrase")
        old = params.get("old_passphrase")
        if new is not None and (not isinstance(new, str) or not new):
            raise InvalidParams("new_passphrase must be a non-empty string, or null to remove")
        keyfile = keys.read_key_file(self.paths.key_file)
        if keyfile is None:
            raise KeyProblem(f"no key file at {self.paths.key_file}")
        if keyfile.protected:
            if not isinstance(old, str) or not old:
                raise InvalidParams("old_passphrase is required: the key is protected")
            await self._unwrap(keyfile, old)  # bad_passphrase if wrong; nothing changed
        assert self._dek is not None
        loop = asyncio.get_running_loop()
        if new is None:
            await loop.run_in_executor(None, keys.remove_passphrase, self.paths.key_file, self._dek)
        else:
            await loop.run_in_executor(
                None, keys.set_passphrase, self.paths.key_file, self._dek, new
            )
        self._keyfile = keys.read_key_file(self.paths.key_file)
        log.info("data key re-wrapped (%s)", "passphrase" if new else "plain")
        return {"protected": new is not None, "fingerprint": keys.fingerprint(self._dek)}

    def take_notices(self) -> list[str]:
        notices, self.notices = self.notices, []
        return notices


def _content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _size(path: Any) -> int:
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size
    except OSError:
        return 0


__all__ = ["Context", "MemoryService", "NotFound"]
