"""Database.diff_embedded_ids: what the start-up reconcile adds to and removes from the
vector index."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pyarrow as pa

from memoryd.model import new_id, utcnow
from memoryd.search.vector_blob import vector_blob
from memoryd.store.database import Database, IndexDiff, PreparedMemory


def memory(content: str, model: str | None) -> PreparedMemory:
    now = utcnow()
    return PreparedMemory(
        id=new_id(), content=content, content_hash=hashlib.sha256(content.encode()).hexdigest(),
        namespace="ns", kind="note", tags=[], metadata={}, importance=0.5, source=None,
        thread=None, position=None, created_at=now, expires_at=None, updated_at=now,
        embedding=vector_blob(np.ones(4, np.float32)) if model else None, embedding_model=model,
    )


def ids(*values: str) -> pa.Table:
    return pa.table({"id": pa.array(list(values), pa.string())})


def test_diff_lists_missing_extra_and_repeated_ids(tmp_path):
    db = Database(tmp_path / "d.duckdb", os.urandom(32).hex(), tmp_path / "tmp")
    rows = [memory(f"memory {n}", "m1") for n in range(4)]
    other = memory("embedded by another model", "m0")
    waiting = memory("not embedded yet", None)
    db.insert([*rows, other, waiting], "test")
    a, b, c, d = (r.id for r in rows)

    none = db.diff_embedded_ids("m1", ids(a, b, c, d))  # the checksum path
    assert none == IndexDiff([], [], []) and not none
    # DuckDB's side of the checksum comes along, for a seal to reuse.
    assert none.checksum == db.embedded_checksum("m1") and none.checksum[0] == 4
    assert db.diff_embedded_ids("m1", ids()) == IndexDiff(sorted([a, b, c, d]), [], [])
    # One add and one delete lost together: same count, different ids.
    assert db.diff_embedded_ids("m1", ids(a, b, c, other.id)) == IndexDiff([d], [other.id], [])
    diff = db.diff_embedded_ids("m1", ids(a, b, "gone", waiting.id))
    assert diff.missing == sorted([c, d]) and sorted(diff.extra) == sorted(["gone", waiting.id])
    # Vectors held twice: the same set of ids, a different count. An id held twice that
    # is no longer embedded is extra (all its copies go), not repeated.
    diff = db.diff_embedded_ids("m1", ids(a, b, c, d, b, d, d, "gone", "gone"))
    assert diff == IndexDiff([], ["gone"], sorted([b, d]))
    db.close()

