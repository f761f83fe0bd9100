"""Vector search kept in step with DuckDB, the source of truth.

Where candidates come from depends on the size of the store (the *tier*), chosen at start:

- **ram** (up to ``search.ram_max`` embedded memories): int8 copies of the
  vectors in RAM (``QuantizedVectors``), loaded from DuckDB at start and updated on every
  write. Nothing vector-shaped is written to disk besides DuckDB, and an index left by a
  larger store is erased.
- **index** (above it, or with the setting at 0): the **encrypted index** (LanceDB, on
  disk) of ids, keyed namespace tags and SAP-encrypted vectors, reconciled with DuckDB at
  start and rebuilt when it does not match, plus the **queue** of vectors acknowledged in
  DuckDB but not yet written to it (flushed in batches; searched exactly meanwhile, so
  nothing acknowledged is missed).

A store that outgrows the RAM tier while running builds the index in the background
from DuckDB, goes on searching RAM meanwhile, and switches once the index holds every
vector. Either way candidates come with their similarities: from the int8 copies in RAM,
from the exact copies the index keeps beside each ciphertext
(``memoryd.crypto.exact_copy``), or, for the queue, from its float32 vectors.

Once the index holds ``search.ann_min_rows`` vectors it gets an ANN index (see
``memoryd.store.vectors``), trained on a thread of its own while searches go on
exhaustively, and trained again when the table has doubled since (its partitions are
sized for the rows it was trained on). Compaction (``VectorIndex.compact``) folds rows
added since into it between trainings, in segments it merges once writes pause. Training
and compaction never overlap: compaction deletes files no committed version references,
which includes an index still being written. The rows the ANN index does not cover yet
are kept in RAM too (``_unindexed``) and scored there, so that searches read the ANN
index alone rather than scan them.

All methods run on the event loop; engine work goes to the owner threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import json
import logging
import math
import shutil
import threading
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pyarrow as pa

from memoryd import heap
from memoryd.config import SearchSettings
from memoryd.crypto import keys
from memoryd.crypto.exact_copy import ExactCopyCipher
from memoryd.crypto.sap import SapCipher
from memoryd.logs import redacted_traceback
from memoryd.search import probes as ann_probes
from memoryd.search import ram_load
from memoryd.search.exact import nearest_scored
from memoryd.search.first_pass import train_basis
from memoryd.search.graph import CHECK_RECALL as GRAPH_CHECK_RECALL
from memoryd.search.graph import NeighbourGraph
from memoryd.search.probes import Replay
from memoryd.search.quantized import QuantizedVectors
from memoryd.search.queued import QueuedVectors
from memoryd.search.vector_blob import blobs_matrix
from memoryd.store.database import Database, IndexDiff
from memoryd.store.owner import OwnerThread

if TYPE_CHECKING:  # lancedb costs ~1 s and ~65 MB to import: only the index tier loads it
    from memoryd.store.vectors import VectorIndex

# The index tier's module; importing it imports lancedb.
INDEX_MODULE = "memoryd.store.vectors"

log = logging.getLogger(__name__)

COMPACT_AFTER_FLUSHES = 50
# While writes go on arriving (an import), a flush waits for more of them, up to this
# many queued vectors or this long since the first: fewer, bigger index writes (a 1M
# store-only import compacted 8-9 times instead of 11-13, and ran 0-3% faster). Searches
# meanwhile score the queue exactly, ~0.5 ms for 16k vectors (``QueuedVectors``).
FLUSH_GATHER_ROWS = 16_384
FLUSH_GATHER_MAX_S = 2.0
COMPACT_DELAY_AFTER_DELETE_S = 5.0
SAP_BETA = 0.3
ANN_CHECK_INTERVAL_S = 2.0
# Rows of the RAM vectors' first pass coded between two turns of the event loop, and how
# often it is checked (trained once due).
FIRST_PASS_CHECK_INTERVAL_S = 2.0
FIRST_PASS_SLICE_ROWS = 2048
# ... once the RAM vectors have had no write for this long: an import's batches come
# ~0.05 s apart, and its new rows are coded after it, not between its batches.
FIRST_PASS_WRITE_PAUSE_S = 1.0
# The neighbour graph is built again once rows added or changed since its snapshot (which
# every search scores in full) are this share of the rows.
GRAPH_REFRESH_SHARE = 0.05
# Train the ANN index again once the table has grown by this factor since the last training.
ANN_RETRAIN_GROWTH = 2.0
# Rows outside the ANN index cost every search: Lance scans them (~2 us a row here) unless
# they are kept in RAM (below). Fold them in by compaction once this many pile up, or once
# writes pause this long.
ANN_FOLD_ROWS = 20_000
ANN_FOLD_IDLE_S = 10.0
# ... except while those rows are kept in RAM and scored there (``_unindexed``), which
# the catalog does while they take at most this much room (~87,000 rows of 384 floats).
UNINDEXED_RAM_MAX_BYTES = 128 * 1024 * 1024
# Upkeep that runs searches of its own on the search thread waits until users' searches
# have paused this long (each of theirs then waits behind one at most): calibrating the
# ANN probes, and reading every partition of the ANN index into a new search handle's
# cache (``warm_ann``, which also waits for writes to pause this long).
SEARCHES_PAUSED_S = 2.0
# Where the last calibration's choice is kept (DuckDB's meta table), with the ANN index's id.
CALIBRATION_KEY = "ann_calibration"
# Candidates a calibration's searches fetch: a default search's (4 x 10 hits, at least
# 50, twice that from the index).
CALIBRATION_POOL = 100
# Probes for a search in a small namespace, at most: above any partition count (1M rows
# at 1,024 a partition make ~980), so a small enough namespace probes every partition.
MAX_PROBES = 4096
# A repair writes the vectors it reads from DuckDB in chunks of this many.
REPAIR_CHUNK = 5000
RAM, INDEX = "ram", "index"
# Meta key of the index's seal: written at a clean stop and while writes pause, consumed
# at the next start.
SEAL_KEY = "vector_index_seal"

T = TypeVar("T")


async def run_in_daemon_thread(name: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` on a daemon thread of its own and await its result. Daemon, unlike an
    executor's workers, so that stopping memoryd does not wait minutes for an ANN
    training to end; the files of a training cut short are never committed, and the
    next compaction deletes them."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        try:
            result, exc = fn(), None
        except BaseException as error:  # noqa: BLE001 - handed to the awaiting task
            result, exc = None, error
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(settle, result, exc)

    threading.Thread(target=work, name=name, daemon=True).start()
    return await future


def scoped_probes(probes: int, share: float) -> int:
    """ANN partitions to probe for a search in a namespace holding ``share`` of the rows.

    Each partition holds about that share of the namespace's rows, so probing ``probes /
    share`` partitions examines about as many of them as an unscoped search examines
    rows: the nearest rows of a small namespace lie in partitions farther out. (Lance
    compares only the namespace's rows, by the bitmap index, and stops at the partitions
    there are.) On 30k hash-embedder memories in 117 partitions, a namespace of 1% had
    recall@10 0.898 at 40 probes, 1.0 probing all, in about the same time."""
    if share >= 1.0:
        return probes
    return min(MAX_PROBES, math.ceil(probes / max(share, 1e-9)))


class VectorCatalog:
    def __init__(self, vector_dir: Path, settings: SearchSettings, db_thread: OwnerThread,
                 model_vectors: bool = True):
        self.vector_dir = vector_dir
        self.settings = settings
        # Whether the vectors come from a model (not the ``hash`` embedder): only those
        # get a neighbour graph (``graph_min_rows``).
        self._model_vectors = model_vectors
        self._db_thread = db_thread
        self._vec_thread = OwnerThread("vectors")
        # Index searches: beside the owner thread's writes, compactions and trainings.
        self._search_thread = OwnerThread("vector-search")
        self._db: Database | None = None
        self._dek: bytes | None = None
        self._model: str | None = None
        self._dim: int | None = None
        self.tier: str | None = None  # RAM or INDEX once open() has chosen
        # Set once candidates can be complete: the RAM vectors are loaded, or the index
        # holds (or has queued) every embedded memory. Searches wait for it, so that a
        # restart never hides memories from them.
        self.ready = asyncio.Event()
        self._index: VectorIndex | None = None
        # The queue: vectors not yet in the index, and those of the flush under way.
        self._pending = QueuedVectors()
        self._flushing = QueuedVectors()
        self._pending_deletes: set[str] = set()
        # The index's rows its ANN index does not cover yet, with their exact vectors,
        # while they fit ``UNINDEXED_RAM_MAX_BYTES``: scored here, so that an index
        # search need not scan them (``fast``). Every write to the index lands in it;
        # ``_refresh_unindexed`` drops what a training or compaction covered and, after
        # a start, reads in what an earlier run left uncovered. Searches use it once it
        # is ``_unindexed_complete``; ``None`` while not kept (no ANN index, or too many).
        self._unindexed: QueuedVectors | None = None
        self._unindexed_complete = False
        self._unindexed_lock = asyncio.Lock()
        # While a refresh reads the index: ids written or forgotten meanwhile, which it
        # must leave as they are.
        self._unindexed_touched: set[str] | None = None
        self._flush_wakeup = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._flushes_since_compact = 0
        self._last_delete_at: float | None = None
        self._last_write_at = time.monotonic()  # to the index
        self._ram_written_at = 0.0  # to the RAM vectors
        self._ram: QuantizedVectors | None = None
        self._ram_ready = False
        self._forgotten_while_loading: set[str] = set()
        self._growing: asyncio.Task[None] | None = None
        self._tags: dict[str, str] = {}
        # Held by compaction, and by an ANN training while it starts: they never overlap.
        self._maintenance = asyncio.Lock()
        self._ann_job: asyncio.Future[int] | None = None
        self._ann_recording = False
        self._ann_trained_rows: int | None = None  # rows at the last training (or at start)
        self._ann_trainings = 0
        self._ann_last_s: float | None = None
        self._compacting = False  # ``_compact`` under way: searches share the cores with it
        self._compactions = 0
        self._last_compaction_s: float | None = None
        self.probes = ann_probes.ProbeTuner()
        self._calibration_kept: str | None = None  # as last written to, or read from, DuckDB
        self._last_search_at = 0.0
        # The index and search handle (``reader_generation``) whose cache holds the whole
        # ANN index: ``warm_ann``.
        self._warmed: tuple[VectorIndex, int] | None = None
        # The index and DuckDB were found (or made) to agree in this session: only then
        # may a clean stop seal the index.
        self._reconciled = False
        self._rebuilding = False  # a start's repair refills a recreated index: ``rebuilding``
        self._changes = 0  # writes begun under ``changing``: a seal may span none
        self._writing = 0  # such writes under way
        self._sealed_version: int | None = None  # index version of this session's last seal
        # While a repair runs: ids writers queued since its diff was taken. Their vectors
        # reach the index through the queue; the repair must not write them a second time.
        self._queued_during_repair: set[str] | None = None

    def attach(self, db: Database, dek: bytes) -> None:
        """The store is open: writes may queue vectors from now on."""
        self._db, self._dek = db, dek
        self._tags.clear()

    def preload_index_library(self) -> None:
        """Start importing lancedb on the vectors thread now, beside the store's opening,
        when the index tier is likely (``Paths.index_on_disk``). Imported when the tier is
        chosen instead, it held up the first search by ~1 s at 1M memories, and on the
        event loop it stalled every request meanwhile."""
        self._vec_thread.submit(importlib.import_module, INDEX_MODULE)

    def tag(self, namespace: str) -> str:
        """The keyed pseudonym of a namespace (cached: deriving it costs an HKDF). Also
        called by the start's load threads: the cache only ever gains the same value."""
        tag = self._tags.get(namespace)
        if tag is None:
            assert self._dek is not None
            tag = self._tags[namespace] = keys.namespace_tag(self._dek, namespace)
        return tag

    @property
    def _feeds_index(self) -> bool:
        """Whether changes must reach the index queue: always, except in the memory tier
        while it is not growing into the index."""
        return self.tier != RAM or self._growing is not None

    # -- opening ---------------------------------------------------------------------------------

    async def open(self, dim: int, model: str) -> None:
        """Choose the tier for the vectors of ``model`` and make it complete."""
        assert self._db is not None
        self._model, self._dim = model, dim
        total = await self._db_thread.run(self._db.count_embedded, model)
        cap = self.settings.ram_max
        if 0 < cap and total <= cap:
            await self._open_memory(dim, total)
        else:
            log.info("%d vectors, search.ram_max %d: encrypted index", total, cap)
            self.tier = INDEX  # chosen now: status must not show an open index untiered
            await self._open_index()

    async def _open_memory(self, dim: int, total: int) -> None:
        """Fill the RAM vectors from DuckDB. Writes that arrive meanwhile go into a table
        of their own, which wins over the stored rows once the load is done, as do the
        deletes made meanwhile."""
        assert self._db is not None and self._model is not None
        self.tier = RAM
        ram = self._ram = QuantizedVectors(dim)
        if self._pending:  # acknowledged before the tier was chosen
            ram.upsert(*self._pending.rows())
            self._pending = QueuedVectors()
        self._pending_deletes.clear()
        # An index left by a larger store (or an older version) holds vectors that later
        # deletes never reached: erase it; it is rebuilt from DuckDB if the store grows.
        await self._vec_thread.run(shutil.rmtree, self.vector_dir, True)
        started = time.perf_counter()
        parts = await self._db_thread.run(
            self._db.vector_readers, self._model, ram_load.threads_for(total)
        )
        try:
            loaded = await self._vec_thread.run(ram_load.load_quantized, parts, dim, self.tag)
        finally:
            for part in parts:  # their cursors, even when cut short
                await self._vec_thread.run(part.close)
        if self._ram is not ram:
            return  # dropped meanwhile (grown into the index)
        forgotten = list(self._forgotten_while_loading)
        if forgotten:
            loaded.remove(forgotten)
        if len(ram):
            loaded.upsert(*ram.rows())
        self._ram = loaded
        self._ram_ready = True
        self._forgotten_while_loading.clear()
        log.info(
            "vectors in RAM: %d (%.0f MB) in %.2f s",
            len(loaded),
            loaded.nbytes / 1e6,
            time.perf_counter() - started,
        )

    async def _open_index(self) -> None:
        """Open (or rebuild) the encrypted index and reconcile it with DuckDB."""
        assert self._dek is not None and self._dim is not None and self._model is not None
        # On the vectors thread, after any preload queued there: never on the event loop.
        index_module = await self._vec_thread.run(importlib.import_module, INDEX_MODULE)
        cipher = SapCipher(self._dek, self._dim, beta=SAP_BETA)
        copies = ExactCopyCipher(self._dek, self._dim)
        # Rebuilt whenever ciphertexts would stop being comparable (another key, dimension,
        # beta or scheme) or the vectors mean something else (model or embedded text).
        identity = {"cipher": cipher.params_id, "model": self._model}
        self._unindexed, self._unindexed_complete = None, False
        self._index = await self._vec_thread.run(
            index_module.VectorIndex, self.vector_dir, cipher, copies, self._dim, identity
        )
        await self.restore_calibration()  # before the status can call the index ready
        await self.reconcile()
        await self._refresh_unindexed()

    async def reconcile(self) -> None:
        """Make the index hold exactly the embedded memories of DuckDB, once each."""
        assert self._index is not None
        await self.flush()
        if await self._seal_holds():
            log.info("vector index unchanged since it was sealed: reconcile skipped")
            self._reconciled = True
            return
        with self._repairing():
            # Both snapshots with no flush in between: a vector flushed after the index's
            # ids were read would look missing and be written twice.
            async with self._flush_lock:
                in_index = await self._vec_thread.run(self._index.id_table)
                diff = await self._diff(in_index)
            await self._repair(diff)
        self._reconciled = True

    @contextlib.contextmanager
    def _repairing(self) -> Iterator[None]:
        """Around a diff and the repair that follows it: see ``_repair``."""
        self._queued_during_repair = set()
        try:
            yield
        finally:
            self._queued_during_repair = None

    async def _diff(self, in_index: pa.Table) -> IndexDiff:
        """How the index (``in_index``: its ids) differs from DuckDB's embedded memories,
        leaving out what is queued: the queue writes it."""
        assert self._db is not None and self._model is not None
        diff = await self._db_thread.run(self._db.diff_embedded_ids, self._model, in_index)
        queued = self._pending.ids() | self._flushing.ids()
        return dataclasses.replace(
            diff,
            missing=[i for i in diff.missing if i not in queued],
            repeated=[i for i in diff.repeated if i not in queued],
        )

    async def _repair(self, diff: IndexDiff) -> None:
        """Delete what ``diff`` found extra; write each missing or repeated vector once,
        from DuckDB (all of a repeated id's copies go first: a flush deletes before it
        writes). Call within ``_repairing``, entered before the diff: what writers queue
        meanwhile is left to the queue, or the index would hold it twice (a writer that
        committed before the diff and queued after it: the diff counts it missing)."""
        assert self._db is not None and self._model is not None and self._index is not None
        if not diff:
            return
        # Its deletes must reach rows another connection wrote, too.
        await self._vec_thread.run(self._index.reload)
        self._pending_deletes.update(diff.extra)
        repeated = set(diff.repeated)
        rewrite = [*diff.missing, *diff.repeated]
        self._rebuilding = self._index.rebuilt and len(rewrite) > REPAIR_CHUNK
        try:
            for start in range(0, len(rewrite), REPAIR_CHUNK):
                chunk = rewrite[start : start + REPAIR_CHUNK]
                rows = await self._db_thread.run(self._db.embedded_vectors, self._model, chunk)
                skip = self._queued_during_repair or set()  # read after the rows: see above
                rows = [r for r in rows if r[0] not in skip]
                self._pending_deletes.update(r[0] for r in rows if r[0] in repeated)
                self._enqueue(rows, blobs_matrix([r[2] for r in rows]))
                await self.flush()
            await self.flush()
        finally:
            self._rebuilding = False
        if diff.missing or diff.extra:
            log.info(
                "vector index reconciled: %d added, %d removed", len(diff.missing), len(diff.extra)
            )
        if diff.repeated:
            log.warning(
                "vector index held %d vectors more than once: each written once again",
                len(diff.repeated),
            )

    async def _seal_holds(self) -> bool:
        """Whether the seal written at the last clean stop, or when writes last paused,
        still describes the index and DuckDB: then they hold the same ids and the
        reconcile's read of every id in the index (~0.1-0.2 s at 1M, before any vector
        search may be answered) is spared.

        The seal is consumed here, whatever it says: after a crash in this session before
        writes pause, the next start finds none and reconciles in full. It holds when the
        index is at the version it was sealed at (Lance versions every commit, from any
        connection) and DuckDB's embedded ids have the same count and hash sum."""
        assert self._db is not None and self._index is not None and self._model is not None
        text = await self._db_thread.run(self._db.pop_meta, SEAL_KEY)
        if text is None:
            return False
        try:
            seal = json.loads(text)
        except ValueError:
            return False
        # The version first: a seal left behind by later commits needs no checksum.
        version = await self._vec_thread.run(self._index.version)
        if not isinstance(seal, dict) or seal.get("version") != version:
            return False
        count, total = await self._db_thread.run(self._db.embedded_checksum, self._model)
        return bool(seal == self._seal_record(version, count, total))

    def _seal_record(self, version: int, count: int, total: int) -> dict[str, Any]:
        # The sum is a HUGEINT: kept as a string, JSON numbers lose its precision.
        return {"model": self._model, "version": version, "count": count, "sum": str(total)}

    async def seal_if_quiet(self) -> bool:
        """Seal the index: at a clean stop, and while writes pause, so that a start after
        a crash in that quiet spell (kill -9, power loss) skips the reconcile's read of
        every id too (~0.1-0.2 s at 1M memories). True if a seal was written.

        The seal is checked, not assumed: the index's ids are read (on a connection of
        its own, so searches go on) and compared with DuckDB's, and an index that
        differs is repaired instead, and sealed at a later pause: a start that trusts the
        seal never looks, so an index that went wrong during a session would stay wrong.

        Each step is checked against what may change in between. No write may be under way
        (``changing``) or begin, and nothing may be queued or in flight, from before the
        ids are read until after the index version is read: so the comparison and
        DuckDB's checksum count only commits whose vectors the index already holds. A
        change after that leaves a seal that describes neither side, which the next start
        ignores.

        Not sealed again while the index version stays the one last sealed: every change
        to the embedded memories reaches the index as a commit, which moves its version.
        (Skipping can only cost a later start its shortcut, never correctness.)"""
        if (
            self.tier != INDEX
            or self._index is None
            or self._db is None
            or not self._reconciled
            or self._growing is not None
        ):
            return False
        index, db, marker = self._index, self._db, self._changes
        if self._sealed_version is not None:
            if await self._vec_thread.run(index.version) == self._sealed_version:
                return False
        async with self._maintenance:  # no compaction in between
            if not self._quiet(marker):
                return False
            from memoryd.store.vectors import read_ids  # index tier only

            with self._repairing():
                in_index = await run_in_daemon_thread("vector-ids", lambda: read_ids(index.path))
                diff = await self._diff(in_index)
                if not self._quiet(marker):
                    return False
                if diff:
                    await self._repair(diff)
                    return False
            assert diff.checksum is not None  # an empty diff compared the checksums
            count, total = diff.checksum
            version = await self._vec_thread.run(index.version)
            if not self._quiet(marker):
                return False
            seal = self._seal_record(version, count, total)
            await self._db_thread.run(db.set_meta, SEAL_KEY, json.dumps(seal))
        self._sealed_version = version
        log.debug("vector index sealed at version %d while writes pause", version)
        return True

    def _quiet(self, marker: int) -> bool:
        """No write under way, nothing queued, flushing or training, and no change begun
        since ``marker``."""
        return (
            self._writing == 0
            and self._changes == marker
            and not (self._pending or self._flushing or self._pending_deletes)
            and not self._ann_training
        )

    async def _grow_into_index(self) -> None:
        """The store outgrew the memory tier: build the index from DuckDB while RAM goes
        on answering, then switch to it."""
        log.info("the store outgrew search.ram_max: building the vector index")
        try:
            await self._open_index()
            self.tier = INDEX
            self._ram, self._ram_ready = None, False
            log.info("vector index ready; vectors in RAM released")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - tried again on the next write
            log.error("building the vector index failed: %s", redacted_traceback(exc))
            self._pending = QueuedVectors()
            self._pending_deletes.clear()
        finally:
            self._growing = None

    # -- changes ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def changing(self) -> Iterator[None]:
        """Hold around a write that may change DuckDB's embedded memories, from before
        its commit until the ``queue`` or ``forget`` that follows it: no seal is taken
        meanwhile, which could count the commit in DuckDB's checksum but miss its vectors
        (a crash then would leave them out of the index for good)."""
        self._changes += 1
        self._writing += 1
        try:
            yield
        finally:
            self._writing -= 1

    def queue(self, rows: list[tuple[str, str, bytes]]) -> None:
        """New or changed (id, namespace, stored vector) rows: into RAM now, the index
        soon."""
        if not rows:
            return
        vectors = blobs_matrix([r[2] for r in rows])  # one model's: of one size
        if self._queued_during_repair is not None:
            self._queued_during_repair.update(r[0] for r in rows)
        if self._ram is not None:
            self._ram_written_at = time.monotonic()
            self._ram.upsert(
                [r[0] for r in rows],
                [self.tag(r[1]) for r in rows],
                vectors,
            )
            if self.tier == RAM and self._growing is None:
                if len(self._ram) > self.settings.ram_max:
                    self._growing = asyncio.get_running_loop().create_task(
                        self._grow_into_index()
                    )
        if self._feeds_index:
            self._enqueue(rows, vectors)

    def _enqueue(self, rows: list[tuple[str, str, bytes]], vectors: np.ndarray) -> None:
        ids = [r[0] for r in rows]
        self._pending.put(ids, [self.tag(r[1]) for r in rows], vectors)
        # A flush under way writes the older vectors of these ids (then the next writes
        # these); searches meanwhile must score only the newer ones.
        self._flushing.discard(ids)
        self._flush_wakeup.set()

    def forget(self, ids: list[str]) -> None:
        """Vectors of deleted (or re-embedded) memories leave RAM and the index."""
        if self._ram is not None:
            self._ram.remove(ids)
            if not self._ram_ready:
                self._forgotten_while_loading.update(ids)
        if self._feeds_index:
            self._pending.discard(ids)
            self._pending_deletes.update(ids)
            self._drop_unindexed(ids)
            self._flush_wakeup.set()

    # -- candidates ------------------------------------------------------------------------------

    async def candidates(
        self,
        query: np.ndarray,
        namespace: str | None,
        pool: int,
        fetch: int | None = None,
        share: float = 1.0,
    ) -> dict[str, float | None]:
        """Ids of the vectors nearest ``query`` (in ``namespace``, which holds ``share``
        of the vectors), nearest first: at least ``pool`` of them when there are, or
        ``fetch`` for a search whose other filters will drop some
        (``memoryd.search.filtered``). Each with its cosine similarity to ``query`` when
        known: from the int8 copies in RAM, or from the exact copies the index returns
        with its candidates; ``None`` for a copy that did not open."""
        await self.ready.wait()
        ns_tag = self.tag(namespace) if namespace is not None else None
        fetch = max(pool, fetch or 0)
        if self._ram is not None and self._ram_ready:
            return dict(self._ram.search(query, fetch, ns_tag))
        # The ANN index's own over-fetch: its exact re-rank keeps the calibrated recall.
        fetch = max(fetch, pool * self.probes.fetch_factor)
        # Scored before the index is searched: a flush that commits during the search
        # takes its vectors out of the queue, and the search may have begun on the
        # version before it. Queued vectors are newer than any copy in the index (a
        # changed memory's), and the pending ones newer than those being flushed.
        # So are the rows the ANN index does not cover, when they are kept here: a fold
        # that commits meanwhile covers them in the version the search reads.
        queued = self._flushing.nearest(query, fetch, ns_tag)
        queued += self._pending.nearest(query, fetch, ns_tag)
        unindexed = self._unindexed_searched
        uncovered = unindexed.nearest(query, fetch, ns_tag) if unindexed is not None else []
        found: dict[str, float | None] = {}
        if self._index is not None:
            self.probes.record(query)
            self._last_search_at = time.monotonic()
            probes = scoped_probes(self.probes.probes, share)
            found.update(
                await self._search_thread.run(
                    self._index.search, query, fetch, ns_tag, probes, True,
                    unindexed is not None,
                )
            )
        found.update(uncovered)
        found.update(queued)
        return found

    def nearest_among(
        self, query: np.ndarray, stored: list[tuple[str, bytes | None]], k: int
    ) -> dict[str, float | None]:
        """The ``k`` of ``stored`` (every memory a narrow filter lets through: id and
        stored vector) nearest ``query``, best first: from the int8 copies when the
        vectors are in RAM (the stored vectors may then be left unread, ``None``), else
        from the stored vectors; with their similarities either way, so that ranking
        does not read those vectors again."""
        if self._ram is not None and self._ram_ready:
            return dict(self._ram.search(query, k, among=[i for i, _ in stored]))
        return dict(nearest_scored(query, stored, k))

    @property
    def rebuilding(self) -> bool:
        """Whether the index is being filled from DuckDB before searches may use it: at
        start it was missing or unreadable, or written under another key, model or
        layout, and holds more than one repair chunk to write. That takes minutes at 1M
        memories (123 s for the bench's store), so searches do not wait for it
        (``MemoryService._search``); a smaller one they wait for."""
        return self._rebuilding and not self.ready.is_set()

    @property
    def loading(self) -> bool:
        """Whether the index is being built from DuckDB (the store outgrew RAM)."""
        return self._growing is not None

    @property
    def in_ram(self) -> bool:
        """Whether searches find candidates and their similarities in RAM."""
        return self._ram is not None and self._ram_ready

    def similarities(self, query: np.ndarray, ids: list[str]) -> dict[str, float] | None:
        """Approximate cosine similarity of ``query`` to those ``ids`` that have a vector,
        from RAM; ``None`` when the vectors are not in RAM (read the exact ones instead)."""
        if self._ram is None or not self._ram_ready:
            return None
        return self._ram.similarities(query, ids)

    # -- the rows the ANN index does not cover -----------------------------------------------

    @property
    def _unindexed_searched(self) -> QueuedVectors | None:
        """The rows outside the ANN index, when searches may score them instead of
        Lance scanning them: kept, and complete since a refresh."""
        return self._unindexed if self._unindexed_complete else None

    @property
    def _unindexed_max_rows(self) -> int:
        """How many such rows ``UNINDEXED_RAM_MAX_BYTES`` holds (float32 vectors)."""
        return UNINDEXED_RAM_MAX_BYTES // (4 * (self._dim or 1))

    def _add_unindexed(self, ids: list[str], tags: list[str], matrix: np.ndarray) -> None:
        """Rows just written to the index: uncovered until a training or fold."""
        unindexed = self._unindexed
        if unindexed is None:
            return
        unindexed.put(ids, tags, matrix)
        if self._unindexed_touched is not None:
            self._unindexed_touched.update(ids)
        if len(unindexed) > self._unindexed_max_rows:
            log.info("%d vectors outside the ANN index: searches scan them until a fold",
                     len(unindexed))
            self._unindexed, self._unindexed_complete = None, False

    def _drop_unindexed(self, ids: Collection[str]) -> None:
        if self._unindexed is not None:
            self._unindexed.discard(list(ids))
            if self._unindexed_touched is not None:
                self._unindexed_touched.update(ids)

    async def _refresh_unindexed(self) -> None:
        """Make ``_unindexed`` the index's rows its ANN index does not cover: after a
        start, and after each compaction (a fold, or a training's, covers what was
        written before it). Drops the rows it kept that are covered now, reads in any it
        lacks (an earlier run's), and leaves rows written or forgotten meanwhile as
        they are. Keeps nothing when there is no ANN index, or too many such rows."""
        index = self._index
        if index is None or self._dim is None:
            return
        async with self._unindexed_lock:
            if self._unindexed is None:  # writes land in it from now on
                self._unindexed, self._unindexed_complete = QueuedVectors(), False
            unindexed, touched = self._unindexed, set[str]()
            known = set(unindexed.ids())
            self._unindexed_touched = touched
            try:
                found = await self._vec_thread.run(
                    index.unindexed_rows, known, self._unindexed_max_rows
                )
            except Exception as exc:  # noqa: BLE001 - searches scan them instead
                log.error("reading the vectors outside the ANN index failed: %s",
                          redacted_traceback(exc))
                found = None
            finally:
                self._unindexed_touched = None
            if found is None or self._index is not index or self._unindexed is not unindexed:
                self._unindexed, self._unindexed_complete = None, False
                return
            uncovered, (ids, tags, matrix) = found
            unindexed.discard([i for i in known - uncovered if i not in touched])
            keep = [n for n, memory_id in enumerate(ids) if memory_id not in touched]
            unindexed.put([ids[n] for n in keep], [tags[n] for n in keep], matrix[keep])
            if not unindexed:  # a fresh one gives back the room of the rows just covered
                self._unindexed = QueuedVectors()
            self._unindexed_complete = True

    # -- background upkeep ---------------------------------------------------------------------

    async def flush_loop(self) -> None:
        delay = self.settings.index_flush_delay_ms / 1000
        while True:
            await self._flush_wakeup.wait()
            self._flush_wakeup.clear()
            began = time.monotonic()
            await asyncio.sleep(delay)  # gather a batch
            while (  # writes still coming: gather a bigger one
                self._flush_wakeup.is_set()
                and len(self._pending) < FLUSH_GATHER_ROWS
                and time.monotonic() - began < FLUSH_GATHER_MAX_S
            ):
                self._flush_wakeup.clear()
                await asyncio.sleep(delay)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried at the next write or restart
                log.error("vector index flush failed: %s", redacted_traceback(exc))
                await asyncio.sleep(1.0)

    async def flush(self) -> None:
        async with self._flush_lock:
            await self._flush()

    async def _flush(self) -> None:
        if self._index is None or (not self._pending and not self._pending_deletes):
            return
        # The batch stays searchable as ``_flushing`` until it is written; the next
        # batch gathers in a queue of the same room (zero pages cost nothing until used).
        self._flushing, self._pending = self._pending, QueuedVectors(capacity=len(self._pending))
        batch = self._flushing.rows()
        deletes, self._pending_deletes = self._pending_deletes, set()
        write = asyncio.ensure_future(self._write(self._index, batch, deletes))
        try:
            # The vectors thread finishes what it has begun whatever happens to this task.
            # So a flush cancelled meanwhile (the daemon stopping) waits to learn how the
            # write ended: it used to queue the batch again although it had been written,
            # and the stop's last flush wrote it twice (most likely how a 1M import left
            # 104k vectors in the index twice: docs/performance.md).
            await asyncio.shield(write)
        except asyncio.CancelledError:
            await asyncio.wait({write})
            raise
        finally:
            self._flushing = QueuedVectors()
            if write.done() and (write.cancelled() or write.exception() is not None):
                # Put the work back (newer entries win) so nothing acknowledged is dropped,
                # except vectors forgotten meanwhile: written back after their delete,
                # they would outlive their memories in the index.
                ids, tags, matrix = batch
                back = [
                    n
                    for n, memory_id in enumerate(ids)
                    if memory_id not in self._pending and memory_id not in self._pending_deletes
                ]
                self._pending.put([ids[n] for n in back], [tags[n] for n in back], matrix[back])
                self._pending_deletes |= deletes

    async def _write(
        self,
        index: VectorIndex,
        batch: tuple[list[str], list[str], np.ndarray],
        deletes: set[str],
    ) -> None:
        # Deletes go first, so an id that was forgotten and queued again ends up once.
        if deletes:
            await self._vec_thread.run(index.delete, sorted(deletes))
            self._last_delete_at = time.monotonic()
            self._drop_unindexed(deletes)  # a repair's extra rows were never forgotten
        ids, tags, matrix = batch
        if ids:
            await self._vec_thread.run(index.add, ids, tags, matrix)
            self._add_unindexed(ids, tags, matrix)
        self._flushes_since_compact += 1
        self._last_write_at = time.monotonic()

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
                await self._flush_and_compact("deletes or fragments piled up")
                self._last_delete_at = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - tried again on the next round
                log.error("vector index compaction failed: %s", redacted_traceback(exc))

    async def ann_loop(self) -> None:
        """Train the ANN index when the encrypted index is big enough, and again when it
        has doubled since."""
        while True:
            await asyncio.sleep(ANN_CHECK_INTERVAL_S)
            if self._index is None or self.tier != INDEX:
                continue
            try:
                await self.maintain_ann()
                await self._fold_unindexed()
                if self._writes_paused:
                    await self.seal_if_quiet()
                await self.warm_ann()
                await self.calibrate_probes()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - tried again on the next round
                log.error("ANN index upkeep failed: %s", redacted_traceback(exc))
                await asyncio.sleep(60.0)

    async def first_pass_loop(self) -> None:
        """Keep the RAM vectors' first pass trained and built (``first_pass_upkeep``)."""
        while True:
            await asyncio.sleep(FIRST_PASS_CHECK_INTERVAL_S)
            try:
                await self.first_pass_upkeep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - tried again on the next round
                log.error("first pass upkeep failed: %s", redacted_traceback(exc))

    async def first_pass_upkeep(self) -> None:
        """Train the RAM vectors' first pass (``memoryd.search.first_pass``) once they
        reach ``search.first_pass_min_rows`` and again once they have doubled, and code
        its rows: the basis on a worker thread from a sample (~0.07 s at 100k), the rows
        here in slices, so that requests wait at most one slice (~3 ms). Both once the
        RAM vectors have had no write for ``FIRST_PASS_WRITE_PAUSE_S``."""
        ram = self._ram
        min_rows = self.settings.first_pass_min_rows
        if ram is None or not self.in_ram or min_rows <= 0:
            return
        if time.monotonic() - self._ram_written_at < FIRST_PASS_WRITE_PAUSE_S:
            return  # after the import (or burst of writes) under way
        trained = ram.first_pass_due(min_rows)
        if trained:
            (codes, inv_norms), rows = ram.first_pass_sample(), len(ram)
            basis = await run_in_daemon_thread(
                "memoryd-first-pass", lambda: train_basis(codes, inv_norms, rows))
            if self._ram is not ram:
                return
            ram.start_first_pass(basis)
            log.info("first pass: basis trained on %d RAM vectors", rows)
        while self._ram is ram and ram.first_pass_building:
            ram.build_first_pass(FIRST_PASS_SLICE_ROWS)
            await asyncio.sleep(0)
        if trained:
            # Give back what the training and the whole build left with the allocator.
            # Rows coded after an import need not: the service releases memory once
            # writes pause (``RELEASE_AFTER_WRITES_S``), and a full collection after
            # every burst of writes would be work done twice.
            await run_in_daemon_thread("memoryd-release", heap.release)
        if self._ram is ram:
            await self.graph_upkeep()

    @property
    def graph_min_rows(self) -> int:
        """``search.graph_min_rows``, or 0 (no graph) for vectors that no model made
        (the ``hash`` embedder). Those fail the graph's check (0.666 of the scan's
        nearest at 100k bench memories), and trying would cost ~5 s of a core and ~20 MB
        of RSS for onnxruntime's library, which must be loaded before usearch
        (``memoryd.search.graph._usearch_index``): 306.6 MB idle at 100k after the try,
        against 283.4 before it."""
        return self.settings.graph_min_rows if self._model_vectors else 0

    async def graph_upkeep(self) -> None:
        """Build the RAM vectors' neighbour graph (``memoryd.search.graph``) when due
        (``QuantizedVectors.graph_due``), on a worker thread of one core (~6 s at 100k
        real-model rows), check it against the full scan there, and search through it
        if it passed. Searches and writes go on meanwhile."""
        ram, min_rows = self._ram, self.graph_min_rows
        if ram is None or not self.in_ram or min_rows <= 0:
            return
        if not ram.graph_due(min_rows, GRAPH_REFRESH_SHARE):
            return
        snapshot = ram.graph_snapshot()

        def build() -> tuple[NeighbourGraph, bool]:
            graph = NeighbourGraph(snapshot)
            return graph, graph.check(snapshot) >= GRAPH_CHECK_RECALL

        started = time.monotonic()
        try:
            graph, passed = await run_in_daemon_thread("memoryd-graph", build)
        except Exception as exc:  # noqa: BLE001 - searches scan instead; not retried soon
            ram.give_up_graph()
            log.error("neighbour graph not built: %s", redacted_traceback(exc))
            return
        installed = self._ram is ram and ram.install_graph(graph, passed)
        log.info("neighbour graph over %d RAM vectors: %.3f of the scan's nearest taking "
                 "%d rows a search, %s (%.1f s)", snapshot.rows, graph.recall or 0.0,
                 graph.fetch, "searched" if installed else "not used",
                 time.monotonic() - started)
        del graph
        await run_in_daemon_thread("memoryd-release", heap.release)

    async def maintain_ann(self) -> bool:
        """Train the ANN index if due; True if it did."""
        index = self._index
        assert index is not None
        rows = await self._vec_thread.run(index.count)
        if rows < max(1, self.settings.ann_min_rows):
            return False
        stats = await self._vec_thread.run(index.ann_stats)
        if self._ann_trained_rows is None:
            # An index left by an earlier run: count its rows as trained on, so it is not
            # trained again at every start.
            self._ann_trained_rows = stats["indexed"] if stats else 0
        reason = self._ann_due(rows, stats)
        if reason is None:
            if stats is not None and not stats["namespace_index"]:
                await self._index_namespaces(index)
            return False
        started = time.perf_counter()
        # A training counts as under way until it is recorded: the search handle sees the
        # new index once ``reload`` renews it, and a status read before the count below
        # showed a trained index, no training under way and none done (a bench run took
        # that for settled and timed no trained index).
        self._ann_recording = True
        try:
            async with self._maintenance:  # not while a compaction runs
                if self._index is not index:
                    return False  # the index was replaced meanwhile
                from memoryd.store.vectors import build_ann_index  # index tier only

                job = self._ann_job = asyncio.ensure_future(
                    run_in_daemon_thread(
                        "vector-ann",
                        lambda: build_ann_index(index.path, self.settings.ann_partition_rows),
                    )
                )
            # Shielded: cancelling this task (at shutdown) must not make the job look
            # finished while its thread still writes; compaction waits for the job itself.
            trained = await asyncio.shield(job)
            # The serving handle would see the index at its next write anyway; a read-only
            # period should not have to wait for one.
            await self._vec_thread.run(index.reload)  # also renews the search handle
            self._ann_trained_rows = trained
            self._ann_trainings += 1
            self.probes.reset()  # new partitions
            self._ann_last_s = time.perf_counter() - started
        finally:
            self._ann_recording = False
        log.info(
            "ANN index trained on %d vectors in %.1f s (%s)", trained, self._ann_last_s, reason
        )
        # The index it replaced stays on disk until a compaction prunes it.
        async with self._maintenance:
            if self._index is index:
                await self._compact("after the training")
        return True

    async def _index_namespaces(self, index: VectorIndex) -> None:
        """Give an ANN index trained before namespace indexes existed its namespace index
        (0.2 s at 1M rows), so that searches in one namespace stop reading every row's."""
        started = time.perf_counter()
        async with self._maintenance:  # not while a compaction runs
            if self._index is not index:
                return
            await self._vec_thread.run(index.index_namespaces)
        log.info("namespace index written (%.1f s)", time.perf_counter() - started)

    def _ann_due(self, rows: int, stats: dict[str, int] | None) -> str | None:
        """Why to train the ANN index (again), or None: there is none, the table has doubled
        since (the partitions are sized for the rows they were trained on), its partitions
        are of another size than ``search.ann_partition_rows`` (an index from an earlier
        version, or the setting changed: the probe counts are meant for that size). The
        segments that folds add are merged by compaction (``_compact``), not by a
        training: 1.4-1.8 s at 1M rows against 25-32 s."""
        if not self._ann_trained_rows:
            return "no ANN index yet"
        if rows >= ANN_RETRAIN_GROWTH * self._ann_trained_rows:
            return f"{rows} vectors, {self._ann_trained_rows} at the last training"
        # Once a run at most: should Lance ever report another size than it was asked
        # for, the index is not trained again and again.
        wanted, found = self.settings.ann_partition_rows, (stats or {}).get("partition_rows", 0)
        if found not in (0, wanted) and not self._ann_trainings:
            return f"partitions of {found} rows, search.ann_partition_rows {wanted}"
        return None

    async def warm_ann(self) -> bool:
        """Read every partition of the ANN index into the search handle's cache, once
        for each handle (a training or a compaction that rewrites the index gives
        searches a new one: ``VectorIndex.reload`` and ``compact``), when searches and writes have
        paused and no fold is due; True if it did.

        Lance reads a partition at the first search that probes it. Right after a start
        at 1M memories, the first search took ~0.25 s and the next few 30-90 ms each,
        against ~15 ms once the partitions were read; after a few searches RSS held them
        all anyway (~470 MB at 1M on the bench's vectors). So a daemon that starts at
        login answers its first search at full speed. One search of every partition does
        it (0.3-0.4 s at 1M); a search that arrives meanwhile waits behind it.

        Before the handle was renewed after each rewrite, its cache kept the partitions of
        every index it had read: warming after each training during a 1M import held
        ~700 MB more."""
        index = self._index
        if index is None or not self._ann_trained_rows:
            return False
        if self._ann_warm:
            return False
        if (
            self._pending
            or self._flushing
            or not self._quiet_since(self._last_search_at)
            or not self._quiet_since(self._last_write_at)
        ):
            return False
        stats = await self._vec_thread.run(index.ann_stats)
        if not stats or stats["unindexed"]:
            return False  # a fold will rewrite the index first (``_fold_unindexed``)
        started, generation = time.perf_counter(), index.reader_generation
        await self._search_thread.run(
            index.search, np.zeros(index.dim, dtype=np.float32), 1, None, MAX_PROBES
        )
        self._warmed = (index, generation)  # a renewal meanwhile: warmed again later
        log.info("ANN index read in whole (%.2f s)", time.perf_counter() - started)
        return True

    @property
    def _ann_warm(self) -> bool:
        """Whether the search handle's cache holds the whole ANN index (``warm_ann``)."""
        index = self._index
        return index is not None and self._warmed == (index, index.reader_generation)

    @staticmethod
    def _quiet_since(moment: float) -> bool:
        return time.monotonic() - moment >= SEARCHES_PAUSED_S

    async def calibrate_probes(self) -> bool:
        """Choose how many partitions ANN searches probe, by replaying a sample of queries
        (``memoryd.search.probes``), when due and searches have paused; True once it has.
        A search pauses the replay until searches pause again. Runs between trainings
        (``ann_loop`` awaits a training to its end, which drops a replay under way)."""
        index = self._index
        if index is None or not self.probes.due():
            return False
        if not self._quiet_since(self._last_search_at):
            return False
        if not self._ann_trained_rows:  # no ANN index (maintain_ann just looked)
            return False
        replay, resumed = self.probes.replay(), time.monotonic()
        while replay.done < len(replay.queries):
            if self._last_search_at > resumed:
                return False  # a user searches: go on once searches pause again
            started = time.perf_counter()
            await self._replay_one(index, replay)
            replay.seconds += time.perf_counter() - started
            if self._index is not index:
                return False
        full_means = ann_probes.mean_recalls(replay.full)
        half_means = ann_probes.mean_recalls(replay.half)
        chosen = ann_probes.choose(full_means, half_means)
        self.probes.settle(chosen)
        await self._remember_calibration(index)
        log.info(
            "ANN probes: %d, fetching %d x the pool. Share of the top %d that %d probes "
            "find, over %d sampled queries, in all candidates / the first half: %s "
            "(calibrated in %.1f s)",
            chosen.probes,
            chosen.fetch_factor,
            ann_probes.TOP,
            ann_probes.REFERENCE_PROBES,
            len(replay.queries),
            ", ".join(
                f"{p} probes {m:.3f} / {half_means.get(p, 0.0):.3f}"
                for p, m in full_means.items()
            )
            or "none",
            replay.seconds,
        )
        return True

    async def _remember_calibration(self, index: VectorIndex) -> None:
        """Keep the calibration in force with the ANN index's id: after a calibration,
        and after each compaction (which may give the index a new id but leaves its
        partitions, so the calibration still holds, as it does within a run). Written
        only when it changed."""
        if self._db is None or not self.probes.calibrated:
            return
        ann_id = await self._vec_thread.run(index.ann_index_id)
        if ann_id is None:
            return
        kept = json.dumps({
            "index": ann_id,
            "probes": self.probes.probes,
            "fetch_factor": self.probes.fetch_factor,
            "recall": self.probes.recall,
        })
        if kept != self._calibration_kept:  # most compactions change neither
            await self._db_thread.run(self._db.set_meta, CALIBRATION_KEY, kept)
            self._calibration_kept = kept

    async def restore_calibration(self) -> None:
        """At start: the last calibration, if it was made for the ANN index as it is.
        A training since (or a compaction the daemon did not live to record) leaves
        the defaults, and the next calibration comes as usual."""
        index = self._index
        if index is None or self._db is None:
            return
        raw = await self._db_thread.run(self._db.get_meta, CALIBRATION_KEY)
        ann_id = await self._vec_thread.run(index.ann_index_id)
        if raw is None or ann_id is None:
            return
        try:
            kept = json.loads(raw)
            chosen = ann_probes.Choice(
                int(kept["probes"]), int(kept["fetch_factor"]),
                None if kept["recall"] is None else float(kept["recall"]),
            )
            if kept["index"] != ann_id:
                return
        except (ValueError, KeyError, TypeError):
            log.warning("kept ANN calibration unreadable; using the defaults")
            return
        self.probes.restore(chosen)
        self._calibration_kept = raw
        log.info("ANN probes: %d, fetching %d x the pool, as calibrated for this index "
                 "before the restart", chosen.probes, chosen.fetch_factor)

    async def _replay_one(self, index: VectorIndex, replay: Replay) -> None:
        """Replay the next query of ``replay``: the exact top 10 of the reference's
        candidates (by the exact copies the index returns with them), and the share of
        it in each probe count's candidates, all of them and the first half (what a
        search fetching only its pool would re-rank)."""
        query = replay.queries[replay.done]
        replay.done += 1
        reference = await self._search_thread.run(
            index.search, query, CALIBRATION_POOL, None, ann_probes.REFERENCE_PROBES, True
        )
        top = ann_probes.exact_top(reference)
        if not top:
            return
        for probes in ann_probes.LADDER:
            found = [
                i
                for i, _ in await self._search_thread.run(
                    index.search, query, CALIBRATION_POOL, None, probes
                )
            ]
            replay.full[probes].append(len(top.intersection(found)) / len(top))
            replay.half[probes].append(len(top.intersection(found[: len(found) // 2])) / len(top))

    async def _fold_unindexed(self) -> None:
        """Compact (which indexes the rows the ANN index does not cover yet) when enough
        of them have piled up, or writes have paused with some left over: compact_loop
        alone would leave the tail of a large import to exhaustive search until the next
        burst of writes. Once writes have paused, also when the ANN index is in more than
        one segment (``_compact`` merges them then)."""
        index = self._index
        if index is None or self._ann_training:
            return
        stats = await self._vec_thread.run(index.ann_stats)
        if not stats:
            return
        if stats["unindexed"] >= ANN_FOLD_ROWS or (stats["unindexed"] and self._writes_paused):
            await self._flush_and_compact(f"{stats['unindexed']} new vectors folded in")
        elif stats["segments"] > 1 and self._writes_paused:
            await self._flush_and_compact("writes paused")

    @property
    def _writes_paused(self) -> bool:
        return time.monotonic() - self._last_write_at >= ANN_FOLD_IDLE_S

    @property
    def _ann_training(self) -> bool:
        """A training under way: from its start until it is recorded (``maintain_ann``)."""
        return self._ann_recording or (self._ann_job is not None and not self._ann_job.done())

    async def _flush_and_compact(self, reason: str) -> None:
        async with self._maintenance:
            await self.flush()
            await self._compact(reason)
        self._flushes_since_compact = 0

    async def _compact(self, reason: str) -> None:
        """Compact the index once no ANN training runs (call with ``_maintenance`` held):
        compaction deletes every file no committed version references, which includes
        those of an index still being written. ``reason``: for the log."""
        assert self._index is not None
        if self._ann_job is not None and not self._ann_job.done():
            await asyncio.wait({self._ann_job})
        started = time.perf_counter()
        self._compacting = True
        try:
            # Each fold of new rows adds a segment to the ANN index, and a search probes
            # its partitions in every segment (~0.8 ms a segment at 1M rows; at 200k rows
            # and 10 probes, 1 / 8 / 32 segments took 9.1 / 11.3 / 19.0 ms a search).
            # Merging them rewrites the whole ANN index (1.4-1.8 s at 1M rows): done once
            # writes have paused, or when a fold would leave more than
            # ``search.ann_max_segments``.
            stats = await self._vec_thread.run(self._index.ann_stats)
            segments = (stats["segments"] + bool(stats["unindexed"])) if stats else 0
            merge = segments > self.settings.ann_max_segments or (
                segments > 1 and self._writes_paused)
            steps = await self._vec_thread.run(self._index.compact, merge)
        finally:
            self._compacting = False
        self._compactions += 1
        self._last_compaction_s = time.perf_counter() - started
        await self._refresh_unindexed()
        log.info("vector index compacted (%s%s) in %.1f s: %s", reason,
                 f"; {segments} segments merged" if merge else "", self._last_compaction_s,
                 ", ".join(f"{name} {took:.2f} s" for name, took in steps.items()))
        await self._remember_calibration(self._index)

    async def close(self) -> None:
        """Write what is queued and erase deleted vectors from disk, then stop."""
        try:
            if self._growing is not None:
                self._growing.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._growing
            await self.flush()
            if self._index is not None and self._last_delete_at is not None:
                # Erased vectors must leave the disk, even if a training must end first.
                async with self._maintenance:
                    await self._compact("erasing deleted vectors before the stop")
            if self._index is not None:
                # A compaction that committed just before the stop cancelled the task
                # that would have recorded it (the owner thread finishes what it began,
                # so the id is read after it).
                await self._remember_calibration(self._index)
            await self.seal_if_quiet()  # not if the last flush failed: then it reconciles
        finally:
            self._vec_thread.shutdown()
            self._search_thread.shutdown()

    async def status(self) -> dict[str, Any]:
        rows, ann = (
            await self._search_thread.run(self._index.committed_stats)
            if self._index else (0, None)
        )
        return {
            "search_tier": self.tier,
            "ram_vectors": {
                "rows": len(self._ram) if self._ram is not None else 0,
                "ready": self._ram_ready,
                "max": self.settings.ram_max,
                "first_pass": (
                    self._ram.first_pass_status() if self._ram is not None else None
                ),
                "graph": (
                    {**self._ram.graph_status(), "min_rows": self.graph_min_rows}
                    if self._ram is not None else None
                ),
            },
            "vector_index": {
                "rows": rows,
                "pending": len(self._pending) + len(self._flushing),
                # Open and found to agree with DuckDB: vector searches are complete.
                "ready": self._index is not None and self._reconciled,
                "rebuilding": self.rebuilding,
                # Compactions rewrite files and indexes beside searches, which share the
                # cores with them: a search's time while one runs is not the steady state.
                "compacting": self._compacting,
                "compactions": self._compactions,
                "last_compaction_s": (
                    round(self._last_compaction_s, 2)
                    if self._last_compaction_s is not None else None
                ),
                "ann": {
                    "indexed": ann["indexed"] if ann else 0,
                    "unindexed": ann["unindexed"] if ann else rows,
                    # Of those, scored in RAM by searches rather than scanned in the index.
                    "unindexed_in_ram": len(self._unindexed_searched or ()),
                    "segments": ann["segments"] if ann else 0,
                    "partition_rows": ann["partition_rows"] if ann else 0,
                    "max_segments": self.settings.ann_max_segments,
                    "namespace_index": bool(ann and ann["namespace_index"]),
                    "warm": self._ann_warm,
                    "training": self._ann_training,
                    "trainings": self._ann_trainings,
                    "last_training_s": (
                        round(self._ann_last_s, 2) if self._ann_last_s is not None else None
                    ),
                    "min_rows": self.settings.ann_min_rows,
                    "probes": self.probes.probes,
                    "fetch_factor": self.probes.fetch_factor,
                    "probes_recall": (
                        round(self.probes.recall, 4) if self.probes.recall is not None else None
                    ),
                    "calibrations": self.probes.calibrations,
                },
            },
        }
