"""Database.history: the add event's fields are derived from the memory and its updates
(the history no longer stores a copy of them), and add events that hold them, as stores
written before wrote them, are returned as they are."""

from __future__ import annotations

import json
import os
from dataclasses import replace

from test_release_cache import memory

from memoryd.store.database import Database


def open_db(tmp_path) -> Database:
    return Database(tmp_path / "h.duckdb", os.urandom(32).hex(), tmp_path / "tmp")


def test_the_add_event_reports_the_fields_the_memory_was_added_with(tmp_path):
    db = open_db(tmp_path)
    metadata = {"speaker": "Zoë \"Z\" 東京", "nested": [1, 2.5, {"none": None, "t": True}]}
    added = replace(memory(1), content="first ✓", tags=["a"], metadata=metadata, importance=0.3)
    untouched = memory(2)
    db.insert([added, untouched], "alice")
    db.update(added.id, {"content": "second"}, "bob")
    db.update(added.id, {"content": "third", "tags": ["a", "b"]}, "bob")
    db.update(added.id, {"metadata": {"x": 1}, "namespace": "other", "importance": 0.9}, "bob")
    db.update(added.id, {"kind": "fact", "content": "fourth"}, "bob")

    events = db.history(added.id)

    assert [(e["action"], e["actor"]) for e in events] == [("add", "alice")] + [
        ("update", "bob")
    ] * 4
    assert events[0]["changes"] == {
        "content": "first ✓",
        "namespace": "ns",
        "kind": "note",
        "tags": ["a"],
        "metadata": metadata,
        "importance": 0.3,
    }
    assert events[2]["changes"]["content"] == {"old": "second", "new": "third"}
    assert db.history(untouched.id)[0]["changes"] == {
        "content": "memory number 2",
        "namespace": "ns",
        "kind": "note",
        "tags": [],
        "metadata": {},
        "importance": 0.5,
    }
    # No copy of the content is kept beside the memory's row.
    stored = db.con.execute("SELECT count(changes) FROM history WHERE action = 'add'")
    assert stored.fetchone()[0] == 0

    db.delete(added.id, "carol")
    assert [e["changes"] for e in db.history(added.id)] == [None] * 6
    db.close()


def test_an_add_event_that_holds_its_fields_is_returned_as_stored(tmp_path):
    db = open_db(tmp_path)
    old = memory(3)
    db.insert([old], "alice")
    written = {"content": "as first written", "namespace": "ns", "kind": "note", "tags": [],
               "metadata": {"k": "v"}, "importance": 0.5}
    db.con.execute(
        "UPDATE history SET changes = ? WHERE memory_id = ? AND action = 'add'",
        [json.dumps(written), old.id],
    )
    db.update(old.id, {"content": "changed"}, "bob")

    assert db.history(old.id)[0]["changes"] == written
    db.close()
