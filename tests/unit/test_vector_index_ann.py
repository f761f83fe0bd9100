"""VectorIndex with an ANN index, on real Lance files: trained on a connection and thread
of its own while the owner handle goes on writing and searching."""

from __future__ import annotations

import secrets
import threading

import numpy as np

from memoryd.config import SearchSettings
from memoryd.crypto.exact_copy import ExactCopyCipher
from memoryd.crypto.sap import SapCipher
from memoryd.search.probes import DEFAULT_PROBES
from memoryd.store.vectors import VectorIndex, build_ann_index

DIM = 64
PARTITION_ROWS = SearchSettings().ann_partition_rows


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    rows = rng.standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def nearest(index: VectorIndex, vector: np.ndarray) -> str:
    return index.search(vector, 20, None, DEFAULT_PROBES)[0][0]


def test_training_runs_beside_writes_and_searches(tmp_path):
    rng = np.random.default_rng(3)
    dek = secrets.token_bytes(32)
    index = VectorIndex(
        tmp_path / "vectors",
        SapCipher(dek, DIM, beta=0.3),
        ExactCopyCipher(dek, DIM),
        DIM,
        {"model": "test"},
    )
    vectors = {}
    for start in range(0, 20_000, 5_000):
        rows = unit_rows(rng, 5_000)
        ids = [f"m{n}" for n in range(start, start + 5_000)]
        index.add(ids, ["ns"] * len(ids), rows)
        vectors.update(zip(ids, rows, strict=True))
    assert index.ann_stats() is None

    result: list[int] = []
    trainer = threading.Thread(
        target=lambda: result.append(build_ann_index(index.path, PARTITION_ROWS))
    )
    trainer.start()
    rounds, n = 0, 20_000
    while trainer.is_alive() or rounds == 0:
        # Writes and searches on the owner handle while the other connection trains.
        rows = unit_rows(rng, 100)
        ids = [f"m{k}" for k in range(n, n + 100)]
        index.add(ids, ["ns"] * 100, rows)
        vectors.update(zip(ids, rows, strict=True))
        index.delete([f"m{rounds}"])
        vectors.pop(f"m{rounds}")
        assert nearest(index, rows[0]) == ids[0]
        n, rounds = n + 100, rounds + 1
    trainer.join()
    assert result and result[0] >= 20_000

    index.reload()
    assert index.reader_generation == 1  # the trained index gave searches a new handle
    stats = index.ann_stats()
    assert stats is not None and stats["indexed"] >= 20_000 - rounds
    assert stats["partition_rows"] == PARTITION_ROWS  # what the catalog compares
    assert stats["indexed"] + stats["unindexed"] == index.count() == len(vectors)

    # Rows added after the training (unindexed fragments) are found; deleted ones are not.
    late = unit_rows(rng, 10)
    index.add([f"late{k}" for k in range(10)], ["ns"] * 10, late)
    assert all(nearest(index, late[k]) == f"late{k}" for k in range(10))
    near_late = index.search(late[0], 50, None, DEFAULT_PROBES)
    assert all(memory_id != f"m{k}" for k in range(rounds) for memory_id, _ in near_late)
    found = sum(nearest(index, vectors[f"m{k}"]) == f"m{k}" for k in range(1000, 1200))
    assert found >= 190  # ANN over 64-dim random vectors: near-exact, not guaranteed exact

    # A scored search gives each candidate, indexed or not, its similarity from the exact
    # copy; an unscored one none.
    query = vectors["m1500"]
    scored = index.search(query, 50, None, DEFAULT_PROBES, scored=True)
    assert [i for i, _ in scored] == [i for i, _ in index.search(query, 50, None, DEFAULT_PROBES)]
    assert scored[0][0] == "m1500" and abs(scored[0][1] - 1.0) < 1e-3
    every = {**vectors, **{f"late{k}": late[k] for k in range(10)}}
    for memory_id, similarity in scored:
        assert abs(similarity - float(every[memory_id] @ query)) < 1e-3
    late_scored = dict(index.search(late[3], 5, None, DEFAULT_PROBES, scored=True))
    assert abs(late_scored["late3"] - 1.0) < 1e-3
    assert all(s is None for _, s in index.search(query, 5, None, DEFAULT_PROBES))

    # Compaction folds the late rows into the ANN index, and leaves on disk only the
    # indexes that the table's latest version uses: each segment of the ANN index and the
    # namespace index, not those that the training and the fold replaced.
    ann_id, reader = index.ann_index_id(), index._reader
    index.compact()
    # A compaction that rewrote the ANN index gives searches a new handle (an empty
    # cache), and only then.
    assert index.ann_index_id() != ann_id
    assert index._reader is not reader
    stats = index.ann_stats()
    assert stats is not None and stats["unindexed"] == 0
    # The late rows went into a segment of their own; the namespace index was merged.
    assert stats["segments"] == 2
    on_disk = list((index.path / "vectors.lance" / "_indices").iterdir())
    assert len(on_disk) == stats["segments"] + 1
    assert all(nearest(index, late[k]) == f"late{k}" for k in range(10))

    # Merging folds new rows and every segment into one, and the old segments leave.
    later = unit_rows(rng, 10)
    index.add([f"later{k}" for k in range(10)], ["ns"] * 10, later)
    index.compact(merge_segments=True)
    stats = index.ann_stats()
    assert stats is not None and stats["segments"] == 1 and stats["unindexed"] == 0
    assert stats["indexed"] == index.count()
    assert len(list((index.path / "vectors.lance" / "_indices").iterdir())) == 2
    assert all(nearest(index, later[k]) == f"later{k}" for k in range(10))
    assert all(nearest(index, late[k]) == f"late{k}" for k in range(10))


def test_an_index_from_before_exact_copies_is_rebuilt(tmp_path):
    """An index written before rows carried exact copies (no ``exact`` column, no
    ``exact_copy`` in its identity) is dropped at open, to be filled again from DuckDB."""
    import lancedb
    import pyarrow as pa

    dek = secrets.token_bytes(32)
    cipher = SapCipher(dek, DIM, beta=0.3)
    identity = {"cipher": cipher.params_id, "model": "test"}
    old = pa.schema(
        [
            pa.field("id", pa.string()),
            pa.field("ns", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), DIM)),
        ],
        metadata={f"memoryd.{k}": v for k, v in identity.items()},
    )
    rows = cipher.encrypt(unit_rows(np.random.default_rng(4), 3))
    lancedb.connect(str(tmp_path / "vectors")).create_table("vectors", schema=old).add(
        pa.table(
            {
                "id": ["a", "b", "c"],
                "ns": ["ns"] * 3,
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), DIM),
            },
            schema=old,
        )
    )
    index = VectorIndex(tmp_path / "vectors", cipher, ExactCopyCipher(dek, DIM), DIM, identity)
    assert index.rebuilt and index.count() == 0
    assert "exact" in index.table.schema.names
    index.add(["d"], ["ns"], unit_rows(np.random.default_rng(5), 1))
    again = VectorIndex(tmp_path / "vectors", cipher, ExactCopyCipher(dek, DIM), DIM, identity)
    assert not again.rebuilt and again.count() == 1  # the new layout is kept


def index_of_small_fragments(tmp_path, monkeypatch, fragment_rows: int) -> VectorIndex:
    """A new index whose compactions make fragments of ``fragment_rows`` rows."""
    import memoryd.store.vectors as vectors_module

    monkeypatch.setattr(vectors_module, "COMPACT_FRAGMENT_ROWS", fragment_rows)
    dek = secrets.token_bytes(32)
    return VectorIndex(
        tmp_path / "vectors", SapCipher(dek, DIM, beta=0.3), ExactCopyCipher(dek, DIM), DIM,
        {"model": "test"},
    )


def test_a_deleted_vector_leaves_the_disk_from_a_fragment_compaction_keeps(
    tmp_path, monkeypatch
):
    """Compaction leaves fragments of ``COMPACT_FRAGMENT_ROWS`` rows alone, except those
    holding a deleted row: one deleted row is enough for its ciphertexts to go."""
    index = index_of_small_fragments(tmp_path, monkeypatch, 500)
    rng = np.random.default_rng(5)
    index.add([f"m{n}" for n in range(2_000)], ["ns"] * 2_000, unit_rows(rng, 2_000))
    row = index.table.search().where("id = 'm1234'").select(["exact", "vector"]).to_arrow()
    exact = row.column("exact")[0].as_py()
    sap = np.asarray(row.column("vector")[0].as_py(), dtype=np.float32).tobytes()

    def on_disk(needle: bytes) -> bool:
        return any(needle in f.read_bytes() for f in index.path.rglob("*") if f.is_file())

    assert on_disk(exact[:32]) and on_disk(sap[:64])  # the needles are findable
    index.compact()  # one fragment of 2,000 rows, above the size: left alone
    assert on_disk(exact[:32])
    index.delete(["m1234"])
    index.compact()
    assert not on_disk(exact[:32]) and not on_disk(sap[:64])
    assert index.count() == 1_999


def test_the_rows_a_fast_search_leaves_out_are_the_unindexed_rows(tmp_path, monkeypatch):
    """``unindexed_rows`` names exactly the rows a ``fast`` search cannot find, with their
    exact vectors, through writes, deletes of covered and uncovered rows, folds, merges
    and a compaction that rewrites covered fragments beside uncovered ones: every live
    row is either among them or found by a fast search, never both, never neither."""
    # Small fragments, so compactions merge and rewrite several of them.
    index = index_of_small_fragments(tmp_path, monkeypatch, 1_500)
    rng = np.random.default_rng(11)
    live: dict[str, np.ndarray] = {}
    made = 0

    def add(n: int) -> None:
        nonlocal made
        rows = unit_rows(rng, n)
        ids = [f"m{k}" for k in range(made, made + n)]
        index.add(ids, ["a" if k % 3 else "b" for k in range(made, made + n)], rows)
        live.update(zip(ids, rows, strict=True))
        made += n

    def delete(n: int) -> None:
        gone = [str(i) for i in rng.choice(sorted(live), n, replace=False)]
        index.delete(gone)
        for memory_id in gone:
            live.pop(memory_id)

    def check() -> None:
        found = index.unindexed_rows(set(), 1_000_000)
        assert found is not None
        uncovered, (ids, tags, vectors) = found
        assert uncovered == set(ids) and uncovered <= set(live)
        for memory_id, tag, vector in zip(ids, tags, vectors, strict=True):
            assert np.abs(vector - live[memory_id]).max() < 1e-3  # float16 copies
            assert tag == ("a" if int(memory_id[1:]) % 3 else "b")
        # Known ids are named but not read again.
        again = index.unindexed_rows(set(ids[:5]), 1_000_000)
        assert again is not None and again[0] == uncovered and again[1][0] == ids[5:]
        sample = [str(i) for i in rng.choice(sorted(live), 60, replace=False)]
        sample += sorted(uncovered)[:20]
        for memory_id in sample:
            hits = [i for i, _ in index.search(live[memory_id], 10, None, 4096, fast=True)]
            if memory_id in uncovered:
                assert memory_id not in hits
            else:
                assert hits[0] == memory_id

    add(4_000)
    assert index.unindexed_rows(set(), 1_000_000) is None  # no ANN index yet
    build_ann_index(index.path, PARTITION_ROWS)
    index.reload()
    check()
    add(700)
    add(300)
    delete(50)  # covered and uncovered rows alike
    check()
    assert index.unindexed_rows(set(), 900) is None  # more than the limit (950)
    index.compact()  # folds them into a segment of their own
    check()
    add(400)
    delete(300)
    index.compact()  # rewrites fragments holding deleted rows beside new ones
    check()
    add(250)
    delete(20)
    check()
    index.compact(merge_segments=True)
    check()
    found = index.unindexed_rows(set(), 1_000_000)
    assert found is not None and found[0] == set() and found[1][0] == []
