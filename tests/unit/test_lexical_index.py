"""The incremental lexical index equals a rebuild from scratch, whatever the order in
which a thread's memories arrive, are edited or deleted."""

from __future__ import annotations

import hashlib
import os
import random

from memoryd.model import new_id, utcnow
from memoryd.store.database import Database, PreparedMemory


def prepared(content: str, thread: str | None, position: int | None) -> PreparedMemory:
    now = utcnow()
    return PreparedMemory(
        id=new_id(), content=content, content_hash=hashlib.sha256(content.encode()).hexdigest(),
        namespace="ns", kind="turn", tags=[], metadata={"speaker": f"S{(position or 0) % 2}"},
        importance=0.5, source=None, thread=thread, position=position, created_at=now,
        expires_at=None, updated_at=now,
    )


def postings(db: Database) -> set[tuple[str, str, int]]:
    rows = db.con.execute("SELECT term, memory_id, tf FROM postings").fetchall()
    return {(r[0], r[1], r[2]) for r in rows}


def lengths(db: Database) -> dict[str, int]:
    return dict(db.con.execute("SELECT id, doc_len FROM memories").fetchall())


def test_incremental_index_equals_rebuild(tmp_path):
    rng = random.Random(7)
    db = Database(tmp_path / "l.duckdb", os.urandom(32).hex(), tmp_path / "tmp")
    words = "apple river violin garden engine summer harbour lantern pepper cobalt".split()
    items = []
    for thread in ("t1", "t2", None):
        for position in range(12):
            text = " ".join(rng.sample(words, 3)) + f" {thread} {position}"
            items.append(prepared(text, thread, position if thread else None))
    rng.shuffle(items)
    for start in range(0, len(items), 7):  # out-of-order batches
        db.insert(items[start:start + 7], "test")
    # Edits and deletes in the middle of threads.
    for item in rng.sample(items, 5):
        db.update(item.id, {"content": item.content + " revised"}, "test",
                  {"content_hash": item.content_hash + "x"})
    for item in rng.sample(items, 4):
        try:
            db.delete(item.id, "test")
        except Exception:  # noqa: BLE001 - may be a deleted one already
            pass
    incremental, incremental_lengths = postings(db), lengths(db)

    db.set_meta("lexical_recipe", "force a rebuild")
    assert db.ensure_lexical_index() == len(incremental_lengths)
    assert postings(db) == incremental
    assert lengths(db) == incremental_lengths
    db.close()
