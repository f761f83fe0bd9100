"""The RAM vectors loaded at start (``memoryd.search.ram_load``) on a real DuckDB file: the
same table as upserting the stored rows one batch at a time, whatever share each of the
readers gets; writes and deletes made while it loads win over what it read. Also the
pieces it is built from against the plain numpy they replace: widening float16, coding
float16 rows, parsing an Arrow column of ids."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import threading
import uuid

import numpy as np
import pyarrow as pa
import pytest

from memoryd.config import SearchSettings
from memoryd.model import new_id, utcnow
from memoryd.search import ram_load
from memoryd.search.ids import column_keys, keys
from memoryd.search.int8 import quantize_halves, quantize_rows
from memoryd.search.quantized import QuantizedVectors
from memoryd.search.vector_blob import blobs_matrix, vector_blob, widen
from memoryd.store.database import Database, PreparedMemory
from memoryd.store.owner import OwnerThread
from memoryd.vector_catalog import VectorCatalog

DIM = 16


def every_half() -> np.ndarray:
    """All 65,536 float16 bit patterns, as rows of 256."""
    return np.arange(65536, dtype=np.uint16).view(np.float16).reshape(256, 256)


def test_widen_gives_astypes_bits_for_every_half():
    halves = every_half()
    with np.errstate(invalid="ignore"):
        expected = halves.astype(np.float32)
    assert np.array_equal(widen(halves).view(np.uint32), expected.view(np.uint32))


def test_halves_code_as_their_widened_rows_do():
    finite = every_half().copy()
    finite[(finite.view(np.uint16) & 0x7C00) == 0x7C00] = 0  # no infinities or NaNs
    rng = np.random.default_rng(3)
    rows = [finite, finite.T.copy(), np.zeros((2, 256), np.float16)]
    rows.append(np.full((2, 256), -0.0, np.float16))
    bits = rng.integers(0, 0x7C00, size=(500, 384), dtype=np.uint16)
    bits[::3, ::2] &= 0x03FF  # subnormal halves beside normal ones
    bits[rng.random(bits.shape) < 0.5] |= 0x8000
    rows.append(bits.view(np.float16))
    rows.append((rng.standard_normal((300, 384)) / 20).astype(np.float16))
    for halves in rows:
        assert np.array_equal(quantize_halves(halves), quantize_rows(widen(halves))[0])


def test_an_arrow_column_of_ids_gives_the_keys_the_strings_do():
    ids = [str(uuid.uuid4()) for _ in range(500)]
    column = pa.array(ids)
    assert np.array_equal(column_keys(column), keys(ids))
    assert np.array_equal(column_keys(column.slice(7, 300)), keys(ids[7:307]))
    assert np.array_equal(column_keys(pa.array(ids, pa.large_string())), keys(ids))
    good = ids[0]
    for bad in (good.upper(), good[:-1] + "g", good.replace("-", "_"), good + "a",
                " " + good[1:], good[:8] + "x" + good[9:]):
        with pytest.raises(ValueError):
            keys([bad])
        with pytest.raises(ValueError):
            column_keys(pa.array([good, bad]))
    with pytest.raises(ValueError):
        column_keys(pa.array([good, None]))


def memory(n: int, namespace: str = "ns", model: str | None = "m") -> PreparedMemory:
    now, content = utcnow(), f"memory number {n}"
    vector = np.random.default_rng(n).standard_normal(DIM).astype(np.float32)
    return PreparedMemory(
        id=new_id(), content=content, content_hash=hashlib.sha256(content.encode()).hexdigest(),
        namespace=namespace, kind="note", tags=[], metadata={}, importance=0.5, source=None,
        thread=None, position=None, created_at=now, expires_at=None, updated_at=now,
        embedding=vector_blob(vector / np.linalg.norm(vector)) if model else None,
        embedding_model=model,
    )


def stored_store(tmp_path) -> tuple[Database, list[PreparedMemory]]:
    """A store whose rows of model "m" have gaps: rows of another model, rows without a
    vector, deleted rows, in three namespaces."""
    db = Database(tmp_path / "s.duckdb", os.urandom(32).hex(), tmp_path / "tmp")
    kept: list[PreparedMemory] = []
    for batch in range(6):
        items = [memory(batch * 1000 + n, namespace=f"ns{n % 3}") for n in range(400)]
        others = [memory(batch * 1000 + 500 + n, model=None if n % 2 else "other")
                  for n in range(50)]
        db.insert(items + others, "test")
        kept += items
    doomed = [m.id for m in kept[::7]]
    for memory_id in doomed:
        db.delete(memory_id, "test")
    gone = set(doomed)
    return db, [m for m in kept if m.id not in gone]


def same_table(loaded: QuantizedVectors, upserted: QuantizedVectors) -> None:
    """The same rows (ids, namespace tags, codes, norms), whatever their order."""
    assert len(loaded) == len(upserted)
    ids, tags, vectors = loaded.rows()
    other_ids, other_tags, other_vectors = upserted.rows()
    order, other = np.argsort(ids), np.argsort(other_ids)
    assert [ids[n] for n in order] == [other_ids[n] for n in other]
    assert [tags[n] for n in order] == [other_tags[n] for n in other]
    assert np.array_equal(vectors[order], other_vectors[other])
    rng = np.random.default_rng(9)
    for query in rng.standard_normal((5, DIM)).astype(np.float32):
        for tag in (None, "tag-ns1"):
            assert loaded.search(query, 10, tag) == upserted.search(query, 10, tag)


@pytest.mark.parametrize("parts", [1, 2, 3])
def test_a_load_in_parts_is_the_table_the_rows_upserted_make(tmp_path, parts):
    db, kept = stored_store(tmp_path)
    readers = db.vector_readers("m", parts)
    assert sum(r.rows for r in readers) == len(kept)
    try:
        loaded = ram_load.load_quantized(readers, DIM, lambda ns: f"tag-{ns}")
    finally:
        for reader in readers:
            reader.close()
    upserted = QuantizedVectors(DIM)
    upserted.upsert([m.id for m in kept], [f"tag-{m.namespace}" for m in kept],
                    blobs_matrix([m.embedding for m in kept]))
    same_table(loaded, upserted)
    # It goes on taking writes and deletes as any table does.
    new = memory(99_999, namespace="ns1")
    for table in (loaded, upserted):
        table.upsert([new.id, kept[0].id], ["tag-ns1", "tag-ns2"],
                     blobs_matrix([new.embedding, kept[5].embedding]))
        table.remove([kept[1].id])
    same_table(loaded, upserted)
    db.close()


def test_writes_and_deletes_during_the_load_win_over_what_it_read(tmp_path, monkeypatch):
    """A vector written while the stored ones load (committed after the load's
    snapshot) replaces the one the load read, and one forgotten meanwhile stays gone,
    even when the load read it."""
    monkeypatch.setattr(ram_load, "TWO_THREADS_MIN_ROWS", 100)  # this store is read in two
    db, kept = stored_store(tmp_path)
    catalog = VectorCatalog(tmp_path / "vectors", SearchSettings(ram_max=100_000),
                            OwnerThread("db"))
    catalog.attach(db, secrets.token_bytes(32))
    changed, forgotten, added = kept[10], kept[20], memory(77_777)
    fresh = np.random.default_rng(5).standard_normal(DIM).astype(np.float32)
    new_vector = blobs_matrix([vector_blob(fresh / np.linalg.norm(fresh))])[0]
    started = threading.Event()
    release = threading.Event()
    real_load = ram_load.load_quantized

    def held_load(parts, dim, tag_of):
        started.set()
        release.wait(10)
        return real_load(parts, dim, tag_of)

    monkeypatch.setattr(ram_load, "load_quantized", held_load)

    async def scenario() -> None:
        opening = asyncio.ensure_future(catalog.open(DIM, "m"))
        while not started.is_set():
            await asyncio.sleep(0.01)
        catalog.queue([(changed.id, changed.namespace, vector_blob(new_vector)),
                       (added.id, added.namespace, added.embedding)])
        catalog.forget([forgotten.id])
        release.set()
        await opening
        catalog.ready.set()
        assert catalog.in_ram
        ram = catalog._ram
        assert ram is not None
        assert len(ram) == len(kept)  # one forgotten, one added
        assert forgotten.id not in ram and added.id in ram
        found = dict(ram.search(new_vector, 1, catalog.tag(changed.namespace)))
        assert list(found) == [changed.id] and found[changed.id] > 0.99
        for memory_id in (kept[0].id, kept[-1].id):
            assert memory_id in ram
        await catalog.close()

    asyncio.run(scenario())
    db.close()
