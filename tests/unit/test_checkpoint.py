"""store.checkpoint_mb and Database.checkpoint_if_logged: DuckDB's log is folded into the
database file rarely during an import (every checkpoint rewrites the whole id index) and
at once when writes pause, so a crash later replays little."""

from __future__ import annotations

import os

from test_release_cache import memory

from memoryd.store.database import IDLE_CHECKPOINT_MB, Database


def wal_mb(db: Database) -> float:
    return db.wal_path.stat().st_size / 1e6 if db.wal_path.exists() else 0.0


def threshold(db: Database) -> str:
    return str(db.con.execute("SELECT current_setting('checkpoint_threshold')").fetchone()[0])


def test_checkpoint_threshold_comes_from_the_setting(tmp_path):
    key = os.urandom(32).hex()
    default = Database(tmp_path / "a.duckdb", key, tmp_path / "tmp")
    raised = Database(tmp_path / "b.duckdb", key, tmp_path / "tmp", checkpoint_mb=128)
    try:
        assert threshold(default) == "16.0 MiB"  # 0: DuckDB's own
        assert threshold(raised) == "122.0 MiB"  # 128 MB, shown in MiB
    finally:
        default.close()
        raised.close()


def test_a_long_log_is_checkpointed_when_asked_and_a_short_one_is_left(tmp_path):
    path, key = tmp_path / "c.duckdb", os.urandom(32).hex()
    db = Database(path, key, tmp_path / "tmp", checkpoint_mb=1024)
    db.insert([memory(n) for n in range(18_000)], "test")
    logged = wal_mb(db)
    assert logged > IDLE_CHECKPOINT_MB  # DuckDB's 16 MB default would have checkpointed

    assert db.checkpoint_if_logged() is True
    assert wal_mb(db) < 1

    db.insert([memory(n) for n in range(18_000, 18_010)], "test")
    short = wal_mb(db)
    assert 0 < short < IDLE_CHECKPOINT_MB
    assert db.checkpoint_if_logged() is False
    assert wal_mb(db) == short
    db.close()

    db = Database(path, key, tmp_path / "tmp")
    assert db.count() == 18_010
    db.close()
