"""Migrations are named, ordered, recorded, and applied once."""

from __future__ import annotations

import os

from memoryd.search.vector_blob import blobs_matrix
from memoryd.store import migrations
from memoryd.store.database import Database

OLD_ID = "01900000-0000-7000-8000-00000000000a"


def tables(db: Database) -> set[str]:
    return {r[0] for r in db.con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'store'"
    ).fetchall()}


def test_stop_before_then_finish(tmp_path, monkeypatch):
    def m0002_add_pinned(con):
        con.execute("ALTER TABLE memories ADD COLUMN pinned BOOLEAN DEFAULT false")

    real = [name for name, _ in migrations.MIGRATIONS]
    monkeypatch.setattr(migrations, "MIGRATIONS",
                        [*migrations.MIGRATIONS, ("0099_add_pinned", m0002_add_pinned)])
    from memoryd.store import database

    monkeypatch.setattr(database, "MIGRATIONS", migrations.MIGRATIONS)
    key = os.urandom(32).hex()
    db = Database.__new__(Database)
    db.path, db.temp_dir = tmp_path / "m.duckdb", tmp_path / "tmp"
    db.con, db._spill_dir = Database._connect(db.path, key, db.temp_dir)
    assert db.migrate(stop_before="0099_add_pinned") == real
    db.con.execute(
        "INSERT INTO memories (id, content, content_hash, namespace, kind, tags, metadata, "
        "importance, created_at, updated_at, access_count, doc_len) VALUES "
        f"('{OLD_ID}', 'old row', 'h', 'default', 'note', [], '{{}}', 0.5, now(), now(), 0, 2)")
    db.close()

    reopened = Database(tmp_path / "m.duckdb", key, tmp_path / "tmp")
    assert reopened.con.execute(
        "SELECT pinned FROM memories WHERE id = ?", [OLD_ID]).fetchone() == (False,)
    # The row written before the lexical index existed was indexed on open.
    from memoryd.model import SearchFilters

    assert [i for i, _ in reopened.lexical_search(["old"], SearchFilters(), 5)] == [OLD_ID]
    names = [r[0] for r in reopened.con.execute(
        "SELECT name FROM schema_migrations ORDER BY applied_at").fetchall()]
    assert names == [*real, "0099_add_pinned"]
    assert reopened.migrate() == []  # nothing left to apply
    assert {"memories", "postings", "history", "meta"} <= tables(reopened)
    reopened.close()


def test_spill_files_are_encrypted(tmp_path):
    db = Database(tmp_path / "s.duckdb", os.urandom(32).hex(), tmp_path / "tmp")
    setting = db.con.execute("SELECT current_setting('temp_file_encryption')").fetchone()
    assert setting == (True,)
    db.close()


def test_0002_moves_namespace_and_length_into_postings(tmp_path):
    key = os.urandom(32).hex()
    db = Database.__new__(Database)
    db.path, db.temp_dir = tmp_path / "p.duckdb", tmp_path / "tmp"
    db.con, db._spill_dir = Database._connect(db.path, key, db.temp_dir)
    assert db.migrate(stop_before="0002_postings_scope") == ["0001_initial"]
    db.con.execute(
        "INSERT INTO memories (id, content, content_hash, namespace, kind, tags, metadata, "
        "importance, created_at, updated_at, access_count, doc_len) VALUES "
        f"('{OLD_ID}', 'violin lessons', 'h', 'music', 'note', [], '{{}}', 0.5, now(), "
        "now(), 0, 7)")
    db.con.execute(f"INSERT INTO postings VALUES ('violin', '{OLD_ID}', 1), "
                   f"('lesson', '{OLD_ID}', 1)")
    # The recipe is current, so opening does not rebuild the postings: what they hold
    # afterwards is the migration's work (a rebuild would count 2 terms, not 7).
    from memoryd.search.lexical import DocumentAnalyzer

    db.set_meta("lexical_recipe", DocumentAnalyzer().signature)
    db.close()

    from memoryd.model import SearchFilters

    reopened = Database(tmp_path / "p.duckdb", key, tmp_path / "tmp")
    rows = reopened.con.execute(
        "SELECT term, namespace, doc_len FROM postings ORDER BY term").fetchall()
    assert rows == [("lesson", "music", 7), ("violin", "music", 7)]
    hits = reopened.lexical_search(["violin"], SearchFilters(namespace="music"), 5)
    assert [i for i, _ in hits] == [OLD_ID]
    assert reopened.lexical_search(["violin"], SearchFilters(namespace="other"), 5) == []
    reopened.close()


def test_vectors_are_stored_uncompressed_even_when_they_would_compress(tmp_path):
    """Sparse vectors (the hash embedder's) compress, and DuckDB would store them with
    FSST, which a scan must decode whole even to read a few rows. A real model's vectors
    are stored uncompressed by DuckDB's own choice; the schema makes it so for all."""
    import hashlib

    import numpy as np

    from memoryd.model import new_id, utcnow
    from memoryd.search.vector_blob import vector_blob
    from memoryd.store.database import PreparedMemory

    rng = np.random.default_rng(7)
    items = []
    for n in range(5_000):
        vector = np.zeros(384, np.float32)
        vector[rng.choice(384, 36, replace=False)] = rng.random(36, np.float32)
        now, content = utcnow(), f"sparse memory {n}"
        items.append(PreparedMemory(
            id=new_id(), content=content,
            content_hash=hashlib.sha256(content.encode()).hexdigest(), namespace="ns",
            kind="note", tags=[], metadata={}, importance=0.5, source=None, thread=None,
            position=None, created_at=now, updated_at=now, expires_at=None,
            embedding=vector_blob(vector), embedding_model="m"))
    db = Database(tmp_path / "v.duckdb", os.urandom(32).hex(), tmp_path / "tmp")
    db.insert(items, "test")
    db.con.execute("CHECKPOINT")
    kinds = {r[0] for r in db.con.execute(
        "SELECT DISTINCT compression FROM pragma_storage_info('memories') "
        "WHERE column_name = 'embedding' AND segment_type = 'BLOB'").fetchall()}
    content = {r[0] for r in db.con.execute(
        "SELECT DISTINCT compression FROM pragma_storage_info('memories') "
        "WHERE column_name = 'content' AND segment_type = 'VARCHAR'").fetchall()}
    db.close()
    assert kinds == {"Uncompressed"}
    assert content != {"Uncompressed"}  # the other columns still compress


def test_stored_vectors_become_float16_and_the_table_keeps_its_key(tmp_path):
    """0003 rewrites each stored float32 vector as the float16 one the daemon now writes
    (``memoryd.search.vector_blob``), leaves a missing vector missing, and the rewritten
    table keeps its primary key and its uncompressed vectors."""
    import duckdb
    import numpy as np
    import pytest

    from memoryd.search.vector_blob import vector_blob

    key = os.urandom(32).hex()
    db = Database.__new__(Database)
    db.path, db.temp_dir = tmp_path / "m.duckdb", tmp_path / "tmp"
    db.con, db._spill_dir = Database._connect(db.path, key, db.temp_dir)
    assert db.migrate(stop_before="0003_float16_vectors") == ["0001_initial",
                                                             "0002_postings_scope"]
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((3, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"01900000-0000-7000-8000-00000000000{n}" for n in range(4)]
    for n, memory_id in enumerate(ids):
        blob = vectors[n].tobytes() if n < 3 else None
        db.con.execute(
            "INSERT INTO memories (id, content, content_hash, namespace, kind, tags, metadata, "
            "importance, created_at, updated_at, access_count, doc_len, embedding, "
            "embedding_model) VALUES (?, ?, ?, 'default', 'note', [], '{}', 0.5, now(), now(), "
            "0, 2, ?, ?)",
            [memory_id, f"memory {n}", f"h{n}", blob, "m" if blob else None])
    db.close()

    reopened = Database(tmp_path / "m.duckdb", key, tmp_path / "tmp")
    stored = dict(reopened.con.execute("SELECT id, embedding FROM memories").fetchall())
    assert [stored[i] for i in ids] == [*(vector_blob(v) for v in vectors), None]
    assert len(stored[ids[0]]) == 2 * 384
    # What search reads back is the vector to within float16's rounding.
    [stored] = reopened.vector_readers("m")
    [batch] = list(stored.batches)
    stored.close()
    read_ids = batch.column(0).to_pylist()
    rows = blobs_matrix(batch.column(2).to_pylist())
    assert sorted(read_ids) == ids[:3]
    for memory_id, row in zip(read_ids, rows, strict=True):
        assert row.dtype == np.float32
        assert np.abs(row - vectors[ids.index(memory_id)]).max() < 2 ** -11
    with pytest.raises(duckdb.ConstraintException):
        reopened.con.execute(
            "INSERT INTO memories (id, content, content_hash, namespace, kind, tags, metadata, "
            "importance, created_at, updated_at, access_count, doc_len) VALUES "
            f"('{ids[0]}', 'again', 'h', 'default', 'note', [], '{{}}', 0.5, now(), now(), 0, 1)")
    reopened.con.execute("CHECKPOINT")
    kinds = {r[0] for r in reopened.con.execute(
        "SELECT DISTINCT compression FROM pragma_storage_info('memories') "
        "WHERE column_name = 'embedding' AND segment_type = 'BLOB'").fetchall()}
    assert kinds == {"Uncompressed"}
    reopened.close()
