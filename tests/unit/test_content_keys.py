"""The duplicate-check prefilter never hides stored content: every hash stored (before
the load, during it, by an edit) is reported as possibly stored, and duplicates are still
found through it; unknown content is (almost always) reported as new without SQL."""

from __future__ import annotations

import hashlib
import os

import numpy as np

from memoryd.model import new_id, utcnow
from memoryd.store import content_keys
from memoryd.store.content_keys import ContentKeys, key_of
from memoryd.store.database import Database, PreparedMemory, load_content_keys


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def stored_keys(hashes: list[str]) -> np.ndarray:
    return np.array([key_of(h) for h in hashes], dtype=np.uint64)


def prepared(content: str, namespace: str = "default") -> PreparedMemory:
    now = utcnow()
    return PreparedMemory(
        id=new_id(), content=content,
        content_hash=digest(content), namespace=namespace, kind="note", tags=[], metadata={},
        importance=0.5, source=None, thread=None, position=None, created_at=now,
        expires_at=None, updated_at=now,
    )


def test_keys_report_what_was_stored_and_little_else(monkeypatch):
    monkeypatch.setattr(content_keys, "MERGE_AFTER", 100)  # exercise the merge too
    keys = ContentKeys()
    stored = [digest(f"stored {n}") for n in range(1000)]
    assert keys.may_contain(stored[:3]) == [True] * 3  # not loaded: everything may be
    keys.add(digest(f"added early {n}") for n in range(150))
    keys.load(stored_keys(stored))
    keys.add(digest(f"added late {n}") for n in range(30))
    wanted = stored + [digest(f"added early {n}") for n in range(150)] + [
        digest(f"added late {n}") for n in range(30)]
    assert all(keys.may_contain(wanted))
    assert not any(keys.may_contain([digest(f"never {n}") for n in range(1000)]))
    assert len(keys) == 1180
    # Folded when the daemon goes idle: the same answers, 8 bytes a key.
    before = keys.nbytes
    keys.fold()
    assert keys.nbytes == 8 * 1180 < before
    assert all(keys.may_contain(wanted))
    assert not any(keys.may_contain([digest(f"never {n}") for n in range(1000)]))


def test_duplicates_are_found_through_the_prefilter(tmp_path):
    db = Database(tmp_path / "k.duckdb", os.urandom(32).hex(), tmp_path / "tmp")
    first = [prepared(f"note number {n}") for n in range(200)]
    db.insert(first, "test")
    batches = db.content_key_reader()
    during = prepared("written while the keys load")
    db.insert([during], "test")
    loaded = load_content_keys(batches)
    assert sorted(loaded.tolist()) == sorted(stored_keys([m.content_hash for m in first]).tolist())
    db.content_keys.load(loaded)
    assert db.content_keys.ready
    edited = first[7]
    db.update(edited.id, {"content": "edited text"}, "test",
              {"content_hash": digest("edited text")})

    again = [prepared(f"note number {n}") for n in (3, 150)] + [
        prepared("written while the keys load"), prepared("edited text"),
        prepared("note number 3", namespace="elsewhere"), prepared("brand new")]
    results = db.insert(again, "test")
    assert results[0] == (first[3].id, True) and results[1] == (first[150].id, True)
    assert results[2] == (during.id, True) and results[3] == (edited.id, True)
    assert results[4][1] is False and results[5][1] is False  # other namespace; new
    # The edited memory's old text is no longer stored: adding it is not a duplicate.
    assert db.insert([prepared("note number 7")], "test")[0][1] is False
    merged = db.content_keys._sorted
    assert (merged[1:] > merged[:-1]).all()  # sorted, no repeats
    db.close()
