"""The vector index's seal, on real DuckDB and Lance files: written at a clean stop only
after a reconcile succeeded, trusted once at the next start. Status calls the index ready
on the same condition."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets

import numpy as np
import pytest

from memoryd.config import SearchSettings
from memoryd.model import new_id, utcnow
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
        embedding=(vector / np.linalg.norm(vector)).tobytes(), embedding_model="m",
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
