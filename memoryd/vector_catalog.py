"""Vector search kept in step with DuckDB, the source of truth.

Three places hold vectors besides DuckDB, and this module keeps them consistent:

- the **encrypted index** (LanceDB, on disk): ids, keyed namespace tags and SAP-encrypted
  vectors; derived, reconciled with DuckDB at start and rebuilt when it does not match;
- the **queue** of vectors acknowledged in DuckDB but not yet written to the index
  (flushed in batches; searched exactly meanwhile, so nothing acknowledged is missed);
- the **in-memory matrix** of exact vectors, loaded after start up to
  ``search.memory_vectors_max``: the fast path for candidates once ready.

All methods run on the event loop; engine work goes to the owner threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from memoryd.config import SearchSettings
from memoryd.crypto import keys
from memoryd.crypto.sap import SapCipher
from memoryd.logs import redacted_traceback
from memoryd.model import SearchFilters
from memoryd.search.exact import ExactVectors
from memoryd.store.database import Database
from memoryd.store.owner import OwnerThread
from memoryd.store.vectors import VectorIndex

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.2
COMPACT_AFTER_FLUSHES = 50
COMPACT_DELAY_AFTER_DELETE_S = 5.0
SAP_BETA = 0.3
LOAD_PAGE = 10_000


class VectorCatalog:
    def __init__(self, vector_dir: Path, settings: SearchSettings, db_thread: OwnerThread):
        self.vector_dir = vector_dir
        self.settings = settings
        self._db_thread = db_thread
        self._vec_thread = OwnerThread("lance")
        self._db: Database | None = None
        self._dek: bytes | None = None
        self._model: str | None = None
        self._index: VectorIndex | None = None
        # Set once the index holds (or has queued) every embedded memory: candidate
        # searches wait for it so that a restart never hides memories from them.
        self.ready = asyncio.Event()
        self._pending: dict[str, tuple[str, np.ndarray]] = {}
        self._flushing: dict[str, tuple[str, np.ndarray]] = {}
        self._pending_deletes: set[str] = set()
        self._flush_wakeup = asyncio.Event()
        self._flushes_since_compact = 0
        self._last_delete_at: float | None = None
        self._exact: ExactVectors | None = None
        self._exact_ready = False
        self._exact_forgotten: set[str] = set()  # deleted while the matrix was loading
        self._tags: dict[str, str] = {}

    def attach(self, db: Database, dek: bytes) -> None:
        """The store is open: writes may queue vectors from now on."""
        self._db, self._dek = db, dek
        self._tags.clear()

    def tag(self, namespace: str) -> str:
        """The keyed pseudonym of a namespace (cached: deriving it costs an HKDF)."""
        tag = self._tags.get(namespace)
        if tag is None:
            assert self._dek is not None
            tag = self._tags[namespace] = keys.namespace_tag(self._dek, namespace)
        return tag

    # -- opening and reconciling ---------------------------------------------------------------

    async def open(self, dim: int, model: str) -> None:
        """Open (or rebuild) the index for vectors of ``model`` and reconcile it."""
        assert self._dek is not None
        self._model = model
        cipher = SapCipher(self._dek, dim, beta=SAP_BETA)
        # Rebuilt whenever ciphertexts would stop being comparable (another key, dimension,
        # beta or scheme) or the vectors mean something else (model or embedded text).
        identity = {"cipher": cipher.params_id, "model": model}
        self._index = await self._vec_thread.run(
            VectorIndex, self.vector_dir, cipher, dim, identity
        )
        await self.reconcile()

    async def reconcile(self) -> dict[str, int]:
        """Make the index hold exactly the embedded memories of DuckDB."""
        assert self._db is not None and self._index is not None and self._model is not None
        db, model = self._db, self._model
        await self.flush()
        in_db = await self._db_thread.run(db.embedded_ids, model)
        in_index = await self._vec_thread.run(self._index.ids)
        missing = in_db - in_index - set(self._pending)
        extra = in_index - in_db
        self._pending_deletes |= extra
        ordered = sorted(missing)
        for start in range(0, len(ordered), 5000):
            chunk = ordered[start : start + 5000]
            self.queue(await self._db_thread.run(db.embedded_vectors, model, chunk))
        await self.flush()
        if missing or extra:
            log.info("vector index reconciled: %d added, %d removed", len(missing), len(extra))
        return {"added": len(missing), "removed": len(extra)}

    async def load_exact(self, dim: int) -> None:
        """Fill the in-memory matrix from DuckDB, page by page. Writes that arrive
        meanwhile go into it directly; the loader never overwrites them, nor brings back
        what was deleted in the meantime."""
        assert self._db is not None and self._model is not None
        db, model = self._db, self._model
        cap = self.settings.memory_vectors_max
        total = await self._db_thread.run(db.count_embedded, model)
        if cap <= 0 or total > cap:
            log.info("%d vectors, search.memory_vectors_max %d: index only", total, cap)
            return
        self._exact = exact = ExactVectors(dim, capacity=max(1024, total))
        after = None
        while True:
            page = await self._db_thread.run(db.embedded_vectors_page, model, after, LOAD_PAGE)
            if not page or self._exact is not exact:
                break
            after = page[-1][0]
            fresh = [r for r in page if r[0] not in exact and r[0] not in self._exact_forgotten]
            if fresh:
                exact.upsert(
                    [r[0] for r in fresh],
                    [self.tag(r[1]) for r in fresh],
                    np.stack([np.frombuffer(r[2], dtype=np.float32) for r in fresh]),
                )
        if self._exact is exact:
            self._exact_ready = True
            self._exact_forgotten.clear()
            log.info("in-memory vectors ready: %d (%.0f MB)", len(exact), exact.nbytes / 1e6)

    # -- changes ---------------------------------------------------------------------------------

    def queue(self, rows: list[tuple[str, str, bytes]]) -> None:
        """New or changed (id, namespace, vector) rows: into the matrix now, the index soon."""
        if not rows:
            return
        tags = [self.tag(namespace) for _, namespace, _ in rows]
        vectors = [np.frombuffer(blob, dtype=np.float32) for _, _, blob in rows]
        for (memory_id, _, _), tag, vector in zip(rows, tags, vectors, strict=True):
            self._pending[memory_id] = (tag, vector)
        if self._exact is not None:
            self._exact.upsert([r[0] for r in rows], tags, np.stack(vectors))
            if len(self._exact) > self.settings.memory_vectors_max:
                self._drop_exact("the store outgrew search.memory_vectors_max")
        self._flush_wakeup.set()

    def forget(self, ids: list[str]) -> None:
        """Vectors of deleted (or re-embedded) memories leave the matrix and the index."""
        for memory_id in ids:
            self._pending.pop(memory_id, None)
        self._pending_deletes.update(ids)
        if self._exact is not None:
            self._exact.remove(ids)
            if not self._exact_ready:
                self._exact_forgotten.update(ids)
        self._flush_wakeup.set()

    def _drop_exact(self, why: str) -> None:
        log.info("in-memory vectors off: %s; searching the vector index", why)
        self._exact, self._exact_ready = None, False
        self._exact_forgotten.clear()

    # -- candidates ------------------------------------------------------------------------------

    async def candidates(self, query: np.ndarray, filters: SearchFilters, pool: int) -> list[str]:
        """Ids of the vectors nearest ``query``, at least ``pool`` of them when there are."""
        await self.ready.wait()
        ns_tag = self.tag(filters.namespace) if filters.namespace is not None else None
        # Filters other than the namespace are applied afterwards, on the rows: fetch more.
        other_filters = filters.beyond_namespace
        if self._exact_ready and self._exact is not None:
            fetch = pool * (4 if other_filters else 1)  # exact: no approximation to cover
            return [i for i, _ in self._exact.search(query, fetch, ns_tag)]
        fetch = pool * (4 if other_filters else 2)
        found: dict[str, None] = {}
        if self._index is not None:
            for memory_id, _ in await self._vec_thread.run(
                self._index.search, query, fetch, ns_tag
            ):
                found[memory_id] = None
        unindexed = {**self._flushing, **self._pending}
        ids = [i for i, (tag, _) in unindexed.items() if ns_tag is None or tag == ns_tag]
        if ids:
            sims = np.stack([unindexed[i][1] for i in ids]) @ query
            for n in np.argsort(-sims)[:fetch]:
                found.setdefault(ids[int(n)], None)
        return list(found)

    # -- background upkeep ---------------------------------------------------------------------

    async def flush_loop(self) -> None:
        while True:
            await self._flush_wakeup.wait()
            self._flush_wakeup.clear()
            await asyncio.sleep(FLUSH_INTERVAL_S)  # gather a batch
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried at the next write or restart
                log.error("vector index flush failed: %s", redacted_traceback(exc))
                await asyncio.sleep(1.0)

    async def flush(self) -> None:
        if self._index is None or (not self._pending and not self._pending_deletes):
            return
        batch, self._pending = self._pending, {}
        deletes, self._pending_deletes = self._pending_deletes, set()
        # Deletes go first, so an id that was forgotten and queued again ends up once.
        self._flushing.update(batch)
        try:
            if deletes:
                await self._vec_thread.run(self._index.delete, sorted(deletes))
                self._last_delete_at = time.monotonic()
            if batch:
                ids = list(batch)
                tags = [batch[i][0] for i in ids]
                matrix = np.stack([batch[i][1] for i in ids])
                await self._vec_thread.run(self._index.add, ids, tags, matrix)
            self._flushes_since_compact += 1
        except BaseException:
            # Put the work back (newer entries win) so nothing acknowledged is dropped.
            for memory_id, entry in batch.items():
                self._pending.setdefault(memory_id, entry)
            self._pending_deletes |= deletes
            raise
        finally:
            for memory_id in batch:
                self._flushing.pop(memory_id, None)

    async def compact_loop(self) -> None:
        """Compact the index once deletes have settled (so erased vectors leave the disk)
        or once enough small writes have piled up fragments."""
        while True:
            await asyncio.sleep(COMPACT_DELAY_AFTER_DELETE_S)
            if self._index is None:
                continue
            if self._last_delete_at is None and self._flushes_since_compact < COMPACT_AFTER_FLUSHES:
                continue
            try:
                await self.flush()
                await self._vec_thread.run(self._index.compact)
                self._flushes_since_compact = 0
                self._last_delete_at = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - tried again on the next round
                log.error("vector index compaction failed: %s", redacted_traceback(exc))

    async def close(self) -> None:
        """Write what is queued and erase deleted vectors from disk, then stop."""
        try:
            await self.flush()
            if self._index is not None and self._last_delete_at is not None:
                await self._vec_thread.run(self._index.compact)
        finally:
            self._vec_thread.shutdown()

    async def status(self) -> dict[str, Any]:
        rows = await self._vec_thread.run(self._index.count) if self._index else 0
        return {
            "memory_vectors": {
                "rows": len(self._exact) if self._exact is not None else 0,
                "ready": self._exact_ready,
                "max": self.settings.memory_vectors_max,
            },
            "vector_index": {
                "rows": rows,
                "pending": len(self._pending) + len(self._flushing),
                "ready": self._index is not None,
            },
        }
