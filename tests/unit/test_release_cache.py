"""Database.release_cache: DuckDB's cached blocks go, its memory limit stays."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

from memoryd.model import new_id, utcnow
from memoryd.search.vector_blob import vector_blob
from memoryd.store.database import RELEASE_CACHE_LIMIT_MB, Database, PreparedMemory


def memory(n: int) -> PreparedMemory:
    now, content = utcnow(), f"memory number {n}"
    return PreparedMemory(
        id=new_id(), content=content, content_hash=hashlib.sha256(content.encode()).hexdigest(),
        namespace="ns", kind="note", tags=[], metadata={}, importance=0.5, source=None,
        thread=None, position=None, created_at=now, expires_at=None, updated_at=now,
        embedding=vector_blob(np.full(384, n, np.float32)), embedding_model="m",
    )


def in_bytes(setting: str) -> float:
    number, unit = setting.split()
    return float(number) * 1024 ** ["B", "KiB", "MiB", "GiB", "TiB"].index(unit)


@pytest.mark.parametrize("limit_mb", [0, 512])
def test_release_cache_drops_cached_blocks_and_keeps_the_limit(tmp_path, limit_mb):
    path, key = tmp_path / "c.duckdb", os.urandom(32).hex()
    db = Database(path, key, tmp_path / "tmp", memory_limit_mb=limit_mb)
    db.insert([memory(n) for n in range(60_000)], "test")
    db.close()
    db = Database(path, key, tmp_path / "tmp", memory_limit_mb=limit_mb)
    limit = db.con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    total = db.con.execute("SELECT sum(octet_length(embedding)) FROM memories").fetchone()[0]
    assert total == 60_000 * 384 * 2  # 46 MB of float16 embeddings, read once
    before = db.cached_mb()
    assert before > 2 * RELEASE_CACHE_LIMIT_MB

    db.release_cache()

    assert db.cached_mb() <= RELEASE_CACHE_LIMIT_MB
    after = db.con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    assert abs(in_bytes(after) - in_bytes(limit)) <= 0.01 * in_bytes(limit)  # display rounding
    # The limit is back in force, not only in name (DuckDB's RESET left the pool at 16 MB):
    # a query that holds every embedding at once still runs.
    listed = db.con.execute("SELECT len(list(embedding)) FROM memories").fetchone()[0]
    assert listed == 60_000
    db.close()
