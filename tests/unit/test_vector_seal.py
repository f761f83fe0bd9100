"""The vector catalog's index tier on real DuckDB and Lance files. The seal: written at a
clean stop only after a reconcile succeeded, trusted once at the next start (status calls
the index ready on the same condition), and checked before it is written. Repairs of an
index that differs from DuckDB. Searches and the status beside the owner thread. The
rows outside the ANN index, scored in RAM."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import secrets
import threading

import numpy as np
import pytest

from memoryd import vector_catalog
from memoryd.config import SearchSettings
from memoryd.model import new_id, utcnow
from memoryd.search.vector_blob import blobs_matrix, vector_blob
from memoryd.store.database import Database, PreparedMemory
from memoryd.store.owner import OwnerThread
from memoryd.store.vectors import VectorIndex
from memoryd.vector_catalog import SEAL_KEY, VectorCatalog

DIM = 8


def memory(n: int) -> PreparedMemory:
    now, content = utcnow(), f"memory number {n}"
    vector = np.random.default_rng(n).standard_normal(DIM).astype(np.float32)
    return PreparedMemory(
        id=new_id(), content=content, content_hash=hashlib.sha256(content.encode()).hexdigest(),
        namespace="ns", kind="note", tags=[], metadata={}, importance=0.5, source=None,
        thread=None, position=None, created_at=now, expires_at=None, updated_at=now,
        embedding=vector_blob(vector / np.linalg.norm(vector)), embedding_model="m",
    )


async def session(db: Database, tmp_path, dek: bytes) -> VectorCatalog:
    """Open the index tier as the service does."""
    catalog = VectorCatalog(tmp_path / "vectors", SearchSettings(ram_max=0), OwnerThread("db"))
    catalog.attach(db, dek)
    await catalog.open(DIM, "m")
    catalog.ready.set()
    return catalog


def test_seal_is_trusted_once_and_never_written_after_a_failed_reconcile(
    tmp_path, monkeypatch
):
    db = Database(tmp_path / "s.duckdb", os.urandom(32).hex(), tmp_path / "tmp")
    db.insert([memory(n) for n in range(50)], "test")
    dek = secrets.token_bytes(32)

    async def scenario() -> None:
        first = await session(db, tmp_path, dek)  # no seal yet: full reconcile adds all
        assert first._index is not None and first._index.count() == 50
        assert (await first.status())["vector_index"]["ready"] is True
        await first.close()
        assert db.get_meta(SEAL_KEY) is not None

        def no_id_reads(self):
            raise RuntimeError("the index could not be read")

        monkeypatch.setattr(VectorIndex, "id_table", no_id_reads)
        second = await session(db, tmp_path, dek)  # the seal holds: no id read
        assert db.get_meta(SEAL_KEY) is None  # consumed
        await second.close()
        assert db.get_meta(SEAL_KEY) is not None

        db.pop_meta(SEAL_KEY)  # as after a crash: the next start must read the ids
        third = VectorCatalog(tmp_path / "vectors", SearchSettings(ram_max=0), OwnerThread("db"))
        third.attach(db, dek)
        with pytest.raises(RuntimeError):
            await third.open(DIM, "m")
        third.ready.set()  # as the service does, whatever happened
        # Open, but not known to agree with DuckDB: status must not call it ready.
        assert third._index is not None
        assert (await third.status())["vector_index"]["ready"] is False
        await third.close()
        # That session's reconcile failed: its stop must not claim that the index agrees.
        assert db.get_meta(SEAL_KEY) is None

    asyncio.run(scenario())
    db.close()


def test_a_seal_written_while_writes_pause_spares_the_reconcile_after_a_crash(
    tmp_path, monkeypatch
):
    db = Database(tmp_path / "q.duckdb", os.urandom(32).hex(), tmp_path / "tmp")
    db.insert([memory(n) for n in range(50)], "test")
    dek = secrets.token_bytes(32)
    read_ids = VectorIndex.id_table

    def no_id_reads(self):
        raise RuntimeError("the reconcile read every id")

    async def scenario() -> None:
        first = await session(db, tmp_path, dek)  # no seal: a full reconcile
        assert await first.seal_if_quiet()
        assert not await first.seal_if_quiet()  # nothing changed since
        # A crash: first is never closed. The seal it wrote while quiet holds.
        monkeypatch.setattr(VectorIndex, "id_table", no_id_reads)
        second = await session(db, tmp_path, dek)
        assert second._index is not None and second._index.count() == 50

        with second.changing():  # committed, its vector not yet queued
            item = memory(50)
            db.insert([item], "test")
            assert not await second.seal_if_quiet()
            second.queue([(item.id, item.namespace, item.embedding)])
        assert not await second.seal_if_quiet()  # a vector is queued, not yet written
        await second.flush()
        assert await second.seal_if_quiet()
        # Committed to DuckDB, then a crash before its vector was queued: the seal no
        # longer describes DuckDB, so the next start must read the ids and add it.
        db.insert([memory(51)], "test")
        monkeypatch.setattr(VectorIndex, "id_table", read_ids)
        third = await session(db, tmp_path, dek)
        assert third._index is not None and third._index.count() == 52
        await third.close()

    asyncio.run(scenario())
    db.close()


def index_ids(catalog: VectorCatalog) -> list[str]:
    assert catalog._index is not None
    catalog._index.reload()
    return catalog._index.id_table().column("id").to_pylist()


def copy_rows_again(tmp_path, ids: list[str]) -> None:
    """Damage the index as another connection could: the rows of ``ids`` written twice."""
    import lancedb

    table = lancedb.connect(str(tmp_path / "vectors")).open_table("vectors")
    quoted = ", ".join(f"'{i}'" for i in ids)
    table.add(table.search().where(f"id IN ({quoted})").limit(None).to_arrow())


def test_vectors_held_twice_are_written_once_again_before_a_seal_and_at_start(
    tmp_path, caplog
):
    db = Database(tmp_path / "r.duckdb", os.urandom(32).hex(), tmp_path / "tmp")
    items = [memory(n) for n in range(50)]
    db.insert(items, "test")
    dek = secrets.token_bytes(32)
    twice = sorted(m.id for m in items[:5])

    async def scenario() -> None:
        first = await session(db, tmp_path, dek)
        copy_rows_again(tmp_path, twice)  # during the session
        assert len(index_ids(first)) == 55
        # The seal is checked first: the index is repaired instead, and sealed next time.
        assert not await first.seal_if_quiet()
        assert sorted(index_ids(first)) == sorted(m.id for m in items)
        assert await first.seal_if_quiet()
        await first.close()

        copy_rows_again(tmp_path, twice[:2])  # while stopped: the seal no longer holds
        second = await session(db, tmp_path, dek)
        assert sorted(index_ids(second)) == sorted(m.id for m in items)
        await second.close()

    with caplog.at_level(logging.WARNING, logger="memoryd.vector_catalog"):
        asyncio.run(scenario())
    repairs = [r.getMessage() for r in caplog.records if "more than once" in r.getMessage()]
    assert repairs == [
        "vector index held 5 vectors more than once: each written once again",
        "vector index held 2 vectors more than once: each written once again",
    ]
    db.close()


def test_a_vector_queued_while_the_reconcile_repairs_is_written_once(tmp_path):
    """A writer that committed before the reconcile's diff but queued its vector after
    it: the diff counts that vector missing, and the queue writes it. The reconcile must
    not write it a second time."""
    db = Database(tmp_path / "w.duckdb", os.urandom(32).hex(), tmp_path / "tmp")
    items = [memory(n) for n in range(10)]
    db.insert(items, "test")
    dek = secrets.token_bytes(32)

    async def scenario() -> None:
        await (await session(db, tmp_path, dek)).close()
        db.pop_meta(SEAL_KEY)  # as after a crash: the next start diffs in full
        late = memory(10)
        db.insert([late], "test")  # committed; its writer has not queued it yet

        catalog = VectorCatalog(tmp_path / "vectors", SearchSettings(ram_max=0), OwnerThread("db"))
        catalog.attach(db, dek)
        opening = asyncio.create_task(catalog.open(DIM, "m"))
        while not catalog._flush_lock.locked():  # the diff is being taken
            await asyncio.sleep(0)
        while catalog._flush_lock.locked():
            await asyncio.sleep(0)
        # The diff is taken (it counts `late` missing); the repair has begun to read it.
        catalog.queue([(late.id, late.namespace, late.embedding)])
        await catalog.flush()
        await opening
        assert sorted(index_ids(catalog)) == sorted([*(m.id for m in items), late.id])
        await catalog.close()

    asyncio.run(scenario())
    db.close()


def test_index_searches_do_not_wait_for_the_owner_thread(tmp_path):
    """Searches run on a thread and LanceDB handle of their own: a compaction (seconds at
    1M rows) or anything else on the owner thread does not hold them up, and searches
    during a real compaction find what they should."""
    db = Database(tmp_path / "t.duckdb", os.urandom(32).hex(), tmp_path / "tmp")
    items = [memory(n) for n in range(200)]
    db.insert(items, "test")
    dek = secrets.token_bytes(32)
    target = items[7]
    query = blobs_matrix([target.embedding])[0]

    async def scenario() -> None:
        catalog = await session(db, tmp_path, dek)
        release = threading.Event()
        busy = asyncio.ensure_future(catalog._vec_thread.run(release.wait, 30))
        try:
            found = await asyncio.wait_for(catalog.candidates(query, None, 5), 10)
            assert list(found)[0] == target.id
            # With its similarity, from the exact copy the index returned with it.
            assert abs(found[target.id] - float(query @ query)) < 1e-3
            assert not busy.done()  # the owner thread was held all along
        finally:
            release.set()
            await busy
        # Deletes, then a compaction (which rewrites fragments and removes old versions'
        # files) on the owner thread while searches go on.
        catalog.forget([m.id for m in items[100:150]])
        await catalog.flush()
        compaction = asyncio.ensure_future(catalog._vec_thread.run(catalog._index.compact))
        answers = 0
        while not compaction.done() or answers == 0:
            found = await catalog.candidates(query, None, 5)
            assert list(found)[0] == target.id
            answers += 1
        await compaction
        await catalog.close()

    asyncio.run(scenario())
    db.close()


def test_status_does_not_wait_for_the_owner_thread(tmp_path):
    """The status reads the index through the search handle: a compaction on the owner
    thread (74 s after a training at 1M on a busy machine) made store.status time out."""
    db = Database(tmp_path / "u.duckdb", os.urandom(32).hex(), tmp_path / "tmp")
    db.insert([memory(n) for n in range(120)], "test")
    dek = secrets.token_bytes(32)

    async def scenario() -> None:
        catalog = await session(db, tmp_path, dek)
        release = threading.Event()
        busy = asyncio.ensure_future(catalog._vec_thread.run(release.wait, 30))
        try:
            status = await asyncio.wait_for(catalog.status(), 10)
            assert status["vector_index"]["rows"] == 120
            assert status["vector_index"]["ann"]["unindexed"] == 120  # no ANN index yet
            assert not busy.done()  # the owner thread was held all along
        finally:
            release.set()
            await busy
        await catalog.close()

    asyncio.run(scenario())
    db.close()


def ann_store(tmp_path) -> Database:
    """A store of 300 memories: above ``ann_catalog``'s ANN threshold."""
    db = Database(tmp_path / "t.duckdb", os.urandom(32).hex(), tmp_path / "tmp")
    db.insert([memory(n) for n in range(300)], "test")
    return db


async def ann_catalog(tmp_path, db: Database) -> tuple[VectorCatalog, VectorIndex]:
    """An open index-tier catalog of ``db`` whose ANN index is due (200 rows, partitions
    of 50), and its index."""
    settings = SearchSettings(ram_max=0, ann_min_rows=200, ann_partition_rows=50)
    catalog = VectorCatalog(tmp_path / "vectors", settings, OwnerThread("db"))
    catalog.attach(db, secrets.token_bytes(32))
    await catalog.open(DIM, "m")
    catalog.ready.set()
    assert catalog._index is not None
    return catalog, catalog._index


def test_a_training_counts_as_under_way_until_it_is_recorded(tmp_path, monkeypatch):
    """Between the training's job ending and its count going up, ``reload`` renews the
    search handle: a status then must not show the trained index with no training under
    way and none done (a bench run took that for a settled store)."""
    db = ann_store(tmp_path)

    async def scenario() -> None:
        catalog, index = await ann_catalog(tmp_path, db)
        reloaded, release = threading.Event(), threading.Event()
        real_reload = index.reload

        def reload_and_hold() -> None:
            real_reload()
            reloaded.set()
            release.wait(30)  # the training is not recorded until this returns

        monkeypatch.setattr(index, "reload", reload_and_hold)
        training = asyncio.ensure_future(catalog.maintain_ann())
        try:
            await asyncio.get_running_loop().run_in_executor(None, reloaded.wait, 30)
            during = (await catalog.status())["vector_index"]["ann"]
            assert during["indexed"] == 300  # the search handle sees the trained index
            assert during["training"] is True and during["trainings"] == 0
        finally:
            release.set()
        assert await training is True
        after = (await catalog.status())["vector_index"]["ann"]
        assert after["training"] is False and after["trainings"] == 1
        await catalog.close()

    asyncio.run(scenario())
    db.close()


def test_the_status_shows_a_compaction_under_way_and_how_long_the_last_took(
    tmp_path, monkeypatch
):
    """Searches share the cores with a compaction (the one after a training took ~40 s at
    1M rows): the status says when one runs, so that a caller can tell it from the
    steady state."""
    db = ann_store(tmp_path)

    async def scenario() -> None:
        catalog, index = await ann_catalog(tmp_path, db)
        before = (await catalog.status())["vector_index"]
        assert before["compacting"] is False and before["compactions"] == 0
        assert before["last_compaction_s"] is None
        compacted, release = threading.Event(), threading.Event()
        real_compact = index.compact

        def compact_and_hold(merge_segments: bool = False) -> dict[str, float]:
            steps = real_compact(merge_segments)
            compacted.set()
            release.wait(30)
            return steps

        monkeypatch.setattr(index, "compact", compact_and_hold)
        training = asyncio.ensure_future(catalog.maintain_ann())  # compacts after it
        try:
            await asyncio.get_running_loop().run_in_executor(None, compacted.wait, 30)
            during = (await catalog.status())["vector_index"]
            assert during["compacting"] is True and during["compactions"] == 0
            assert during["ann"]["trainings"] == 1 and during["ann"]["training"] is False
        finally:
            release.set()
        assert await training is True
        after = (await catalog.status())["vector_index"]
        assert after["compacting"] is False and after["compactions"] == 1
        assert after["last_compaction_s"] >= 0
        await catalog.close()

    asyncio.run(scenario())
    db.close()


async def queued_session(
    db: Database, tmp_path, dek: bytes, items: list[PreparedMemory]
) -> VectorCatalog:
    """A session with ``items`` committed to DuckDB and their vectors queued, unwritten."""
    catalog = await session(db, tmp_path, dek)
    db.insert(items, "test")
    catalog.queue([(m.id, m.namespace, m.embedding) for m in items])
    return catalog


class HeldWrite:
    """``VectorIndex.add`` held on the vectors thread until the test releases it; then
    the real write, or ``error`` raised instead."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, error: Exception | None = None):
        self._entered, self._released = threading.Event(), threading.Event()
        self._monkeypatch, self._real_add = monkeypatch, VectorIndex.add

        def held_add(index, ids, tags, vectors):
            self._entered.set()
            self._released.wait(30)
            if error is not None:
                raise error
            self._real_add(index, ids, tags, vectors)

        monkeypatch.setattr(VectorIndex, "add", held_add)

    async def flush(self, catalog: VectorCatalog) -> asyncio.Future[None]:
        """A flush of ``catalog``, returned once its write is held."""
        flushing = asyncio.ensure_future(catalog.flush())
        while not self._entered.is_set():
            await asyncio.sleep(0.01)
        return flushing

    def release(self) -> None:
        self._released.set()

    def restore(self) -> None:
        self._monkeypatch.setattr(VectorIndex, "add", self._real_add)


def test_a_flush_cancelled_while_its_write_runs_does_not_write_again(tmp_path, monkeypatch):
    """Stopping cancels the flush loop, maybe while the vectors thread is writing a batch,
    which it finishes regardless: the stop's own flush must not write that batch again."""
    db = Database(tmp_path / "c.duckdb", os.urandom(32).hex(), tmp_path / "tmp")
    dek = secrets.token_bytes(32)
    items = [memory(n) for n in range(20)]

    async def scenario() -> None:
        catalog = await queued_session(db, tmp_path, dek, items)
        held = HeldWrite(monkeypatch)  # the real write, once the test lets it go
        flushing = await held.flush(catalog)
        flushing.cancel()
        held.release()
        with pytest.raises(asyncio.CancelledError):
            await flushing
        await catalog.flush()  # as the stop does first (its seal would repair a double)
        assert sorted(index_ids(catalog)) == sorted(m.id for m in items)
        await catalog.close()

    asyncio.run(scenario())
    db.close()


def test_a_vector_forgotten_while_its_failed_write_ran_is_not_written_back(
    tmp_path, monkeypatch
):
    """A failed write puts its batch back in the queue; a memory deleted while it ran
    must not come back into the index with it."""
    db = Database(tmp_path / "f.duckdb", os.urandom(32).hex(), tmp_path / "tmp")
    dek = secrets.token_bytes(32)
    items = [memory(n) for n in range(10)]

    async def scenario() -> None:
        catalog = await queued_session(db, tmp_path, dek, items)
        held = HeldWrite(monkeypatch, OSError("disk full"))
        flushing = await held.flush(catalog)
        gone = items[3]
        with catalog.changing():
            db.delete(gone.id, "test")
            catalog.forget([gone.id])
        held.release()
        with pytest.raises(OSError):
            await flushing
        held.restore()
        await catalog.flush()
        assert sorted(index_ids(catalog)) == sorted(m.id for m in items if m is not gone)
        await catalog.close()

    asyncio.run(scenario())
    db.close()


def test_a_vector_changed_while_its_old_one_is_written_is_searched_and_kept_new(
    tmp_path, monkeypatch
):
    """A memory re-embedded while a flush writes its old vector: searches meanwhile score
    only the new one (even when the queue's newer vectors crowd it out of their own
    nearest), and when that write fails and its batch goes back to the queue, the new
    vector is not replaced by the old."""
    db = Database(tmp_path / "n.duckdb", os.urandom(32).hex(), tmp_path / "tmp")
    dek = secrets.token_bytes(32)
    items = [memory(n) for n in range(10)]
    changed = items[2]
    old = blobs_matrix([changed.embedding])[0]
    new = -old  # as far from the old vector as can be
    rng = np.random.default_rng(5)
    near_old = []  # queued after the flush began, all nearer the old vector than the new
    for n in range(10, 30):
        vector = old + 0.05 * rng.standard_normal(DIM).astype(np.float32)
        near_old.append(
            dataclasses.replace(memory(n), embedding=vector_blob(vector / np.linalg.norm(vector)))
        )

    async def scenario() -> None:
        catalog = await queued_session(db, tmp_path, dek, items)
        held = HeldWrite(monkeypatch, OSError("disk full"))
        flushing = await held.flush(catalog)
        db.insert(near_old, "test")
        catalog.queue([(m.id, m.namespace, m.embedding) for m in near_old])
        catalog.queue([(changed.id, changed.namespace, vector_blob(new))])
        found = await catalog.candidates(new, None, pool=10)
        assert found[changed.id] == pytest.approx(1.0, abs=1e-3)
        found = await catalog.candidates(old, None, pool=1)
        assert changed.id not in found  # its old vector, being written, is not scored
        assert set(found) <= {m.id for m in items + near_old}
        held.release()
        with pytest.raises(OSError):
            await flushing
        held.restore()
        # The batch is back; the changed memory's new vector kept.
        assert len(catalog._pending) == len(items) + len(near_old)
        await catalog.flush()
        assert sorted(index_ids(catalog)) == sorted(m.id for m in items + near_old)
        found = await catalog.candidates(new, None, pool=10)
        assert found[changed.id] == pytest.approx(1.0, abs=1e-2)  # from the index
        await catalog.close()

    asyncio.run(scenario())
    db.close()


class CountedWrites:
    """The sizes of ``VectorIndex.add``'s writes, which go through."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.sizes: list[int] = []
        real_add = VectorIndex.add

        def counted_add(index, ids, tags, vectors):
            self.sizes.append(len(ids))
            real_add(index, ids, tags, vectors)

        monkeypatch.setattr(VectorIndex, "add", counted_add)


def stream_writes(
    tmp_path, monkeypatch: pytest.MonkeyPatch, batches: int, size: int
) -> list[int]:
    """``batches`` writes of ``size`` vectors, 10 ms apart, with the flush loop running
    (``index_flush_delay_ms`` 60); the sizes of the index writes that flushed them."""
    db = Database(tmp_path / "g.duckdb", os.urandom(32).hex(), tmp_path / "tmp")
    settings = SearchSettings(ram_max=0, index_flush_delay_ms=60)
    writes = CountedWrites(monkeypatch)
    items = [memory(n) for n in range(batches * size)]

    async def scenario() -> None:
        catalog = VectorCatalog(tmp_path / "vectors", settings, OwnerThread("db"))
        catalog.attach(db, secrets.token_bytes(32))
        await catalog.open(DIM, "m")
        catalog.ready.set()
        flushing = asyncio.ensure_future(catalog.flush_loop())
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            db.insert(chunk, "test")
            catalog.queue([(m.id, m.namespace, m.embedding) for m in chunk])
            await asyncio.sleep(0.01)
        for _ in range(500):  # the last flush: within a delay or two of the last write
            if not catalog._pending and not catalog._flushing:
                break
            await asyncio.sleep(0.01)
        flushing.cancel()
        assert sorted(index_ids(catalog)) == sorted(m.id for m in items)
        await catalog.close()

    asyncio.run(scenario())
    db.close()
    return writes.sizes


def test_writes_that_keep_coming_are_flushed_together(tmp_path, monkeypatch):
    """While writes keep arriving within the flush delay, the flush waits for more (up to
    ``FLUSH_GATHER_MAX_S``): 40 writes 10 ms apart, with a 60 ms delay, went to the index
    in one or two writes. Waiting one delay each, they took 14."""
    sizes = stream_writes(tmp_path, monkeypatch, batches=40, size=5)
    assert sum(sizes) == 200
    assert len(sizes) <= 5, sizes  # a stall of the loop may end a gather early


def test_gathering_stops_at_the_row_limit(tmp_path, monkeypatch):
    """...and no more than ``FLUSH_GATHER_ROWS`` at a time (give or take what arrives
    during the last delay)."""
    monkeypatch.setattr(vector_catalog, "FLUSH_GATHER_ROWS", 60)
    sizes = stream_writes(tmp_path, monkeypatch, batches=40, size=5)
    assert sum(sizes) == 200
    assert len(sizes) >= 3, sizes
    assert all(size >= 60 for size in sizes[:-1]), sizes  # each flushed once it held 60


def test_a_vector_queued_before_the_catalog_opens_waits_in_the_queue(tmp_path):
    """A write can commit between the model loading and ``open`` (the service awaits in
    between): its vector goes to the queue, widened from its stored float16, not lost
    or refused for a dimension not known yet."""
    item = memory(3)
    db = Database(tmp_path / "s.duckdb", os.urandom(32).hex(), tmp_path / "tmp")
    catalog = VectorCatalog(tmp_path / "vectors", SearchSettings(ram_max=0), OwnerThread("db"))
    catalog.attach(db, secrets.token_bytes(32))  # at unlock, before any write
    catalog.queue([(item.id, item.namespace, item.embedding)])
    queued = catalog._pending.get(item.id)
    assert queued is not None
    tag, vector = queued
    assert vector.dtype == np.float32 and vector.shape == (DIM,)
    assert np.array_equal(vector, blobs_matrix([item.embedding])[0])
    assert tag == catalog.tag(item.namespace)
    db.close()


async def uncovered_session(
    db: Database, tmp_path, dek: bytes
) -> tuple[VectorCatalog, list[PreparedMemory]]:
    """A catalog of ``ann_store``'s 300 memories with its ANN index trained (and the
    compaction after it done), then 30 memories written to the index after it."""
    settings = SearchSettings(ram_max=0, ann_min_rows=200, ann_partition_rows=50)
    catalog = VectorCatalog(tmp_path / "vectors", settings, OwnerThread("db"))
    catalog.attach(db, dek)
    await catalog.open(DIM, "m")
    catalog.ready.set()
    assert await catalog.maintain_ann()
    late = [memory(n) for n in range(1000, 1030)]
    db.insert(late, "test")
    catalog.queue([(m.id, m.namespace, m.embedding) for m in late])
    await catalog.flush()
    return catalog, late


def best(found: dict[str, float | None]) -> str:
    return max(found, key=lambda i: found[i] or -2.0)


def test_rows_outside_the_ann_index_are_scored_in_ram_not_scanned(tmp_path, monkeypatch):
    """Rows written after a training are kept in RAM and scored there, and the index is
    searched through its ANN index alone (``fast``); a compaction that folds them in
    takes them out of RAM. Each row is found either way."""
    db = ann_store(tmp_path)
    fast_flags: list[bool] = []
    real_search = VectorIndex.search

    def recording_search(index, vector, limit, ns_tag, probes, scored=False, fast=False):
        fast_flags.append(fast)
        return real_search(index, vector, limit, ns_tag, probes, scored, fast)

    monkeypatch.setattr(VectorIndex, "search", recording_search)

    async def scenario() -> None:
        catalog, late = await uncovered_session(db, tmp_path, secrets.token_bytes(32))
        ann = (await catalog.status())["vector_index"]["ann"]
        assert ann["unindexed"] == ann["unindexed_in_ram"] == 30
        for item in late[::3]:
            vector = blobs_matrix([item.embedding])[0]
            fast_flags.clear()
            found = await catalog.candidates(vector, None, 10)
            assert fast_flags == [True]
            assert best(found) == item.id and abs((found[item.id] or 0) - 1.0) < 1e-3
        for n in range(0, 300, 37):  # the store's own rows, through the ANN index
            found = await catalog.candidates(blobs_matrix([memory(n).embedding])[0], None, 10)
            assert abs((found[best(found)] or 0) - 1.0) < 1e-3
        # A forgotten row leaves RAM at once, and the index at the next flush.
        catalog.forget([late[0].id])
        assert late[0].id not in await catalog.candidates(
            blobs_matrix([late[0].embedding])[0], None, 10)
        await catalog._flush_and_compact("test")
        ann = (await catalog.status())["vector_index"]["ann"]
        assert ann["unindexed"] == ann["unindexed_in_ram"] == 0
        for item in late[1::4]:
            found = await catalog.candidates(blobs_matrix([item.embedding])[0], None, 10)
            assert best(found) == item.id
        await catalog.close()

    asyncio.run(scenario())
    db.close()


def test_rows_left_outside_the_ann_index_are_read_into_ram_at_the_next_start(
    tmp_path, monkeypatch
):
    """A start reads the rows an earlier run left outside the ANN index into RAM (from
    their exact copies), except those forgotten while it reads; until then searches scan
    them in the index."""
    db = ann_store(tmp_path)
    dek = secrets.token_bytes(32)

    async def scenario() -> None:
        first, late = await uncovered_session(db, tmp_path, dek)
        await first.close()  # no deletes: nothing folds them in

        read, release = threading.Event(), threading.Event()
        real_read = VectorIndex.unindexed_rows

        def held_read(index, known, limit):
            found = real_read(index, known, limit)
            read.set()
            release.wait(30)
            return found

        monkeypatch.setattr(VectorIndex, "unindexed_rows", held_read)
        second = VectorCatalog(
            tmp_path / "vectors",
            SearchSettings(ram_max=0, ann_min_rows=200, ann_partition_rows=50),
            OwnerThread("db"),
        )
        second.attach(db, dek)
        opening = asyncio.ensure_future(second.open(DIM, "m"))
        try:
            await asyncio.get_running_loop().run_in_executor(None, read.wait, 30)
            assert (await second.status())["vector_index"]["ann"]["unindexed_in_ram"] == 0
            second.forget([late[1].id])  # read as uncovered, forgotten before it lands
        finally:
            release.set()
        await opening
        second.ready.set()
        ann = (await second.status())["vector_index"]["ann"]
        assert ann["unindexed"] == 30 and ann["unindexed_in_ram"] == 29
        assert second._unindexed is not None and late[1].id not in second._unindexed
        for item in late[::2]:
            vector = blobs_matrix([item.embedding])[0]
            found = await second.candidates(vector, None, 10)
            if item is late[1]:
                assert item.id not in found
            else:
                assert best(found) == item.id and abs((found[item.id] or 0) - 1.0) < 1e-3
        await second.close()

    asyncio.run(scenario())
    db.close()
