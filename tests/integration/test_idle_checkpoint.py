"""After an import, once writes pause, the daemon folds DuckDB's log into the database
file by itself (store.checkpoint_mb keeps DuckDB from doing it every 16 MB mid-import),
and a crash after that loses nothing. What searches leave in DuckDB's cache is given
back once they pause (store.cache_idle_s)."""

from __future__ import annotations

import re

from support import wait_status

HASH_EMBEDDER = {"MEMORYD_EMBEDDING_PROVIDER": "hash", "MEMORYD_STORE_CHECKPOINT_MB": "1024"}
N = 12_000


def wal_mb(paths) -> float:
    wal = paths.database.with_name(paths.database.name + ".wal")
    return wal.stat().st_size / 1e6 if wal.exists() else 0.0


def test_the_log_an_import_leaves_is_checkpointed_when_writes_pause(make_daemon, paths):
    daemon = make_daemon(HASH_EMBEDDER).start()
    with daemon.client() as client:
        for start in range(0, N, 1000):
            items = [{"content": f"imported note {n} about the garden"}
                     for n in range(start, start + 1000)]
            assert client.import_items(items)["added"] == 1000
        assert wal_mb(paths) > 16  # more than DuckDB's own threshold, not checkpointed yet
        wait_status(client, lambda s: wal_mb(paths) < 1, timeout=60)
    log = (paths.log_dir / "memoryd.log").read_text()
    assert "checkpointed the database after writes paused" in log

    daemon.kill9()
    daemon.start()
    with daemon.client() as client:
        assert client.status()["memories"] == N
        hits = client.search("imported note 4321", mode="lexical")["hits"]
        assert hits and hits[0]["content"] == "imported note 4321 about the garden"


def log_text(paths) -> str:
    return (paths.log_dir / "memoryd.log").read_text()


def test_what_searches_cached_is_released_once_they_pause(make_daemon, paths):
    # Above the RAM tier a search with a narrow filter reads the stored vector of every
    # memory that passes, from blocks spread over the whole table.
    daemon = make_daemon({**HASH_EMBEDDER, "MEMORYD_SEARCH_RAM_MAX": "0",
                          "MEMORYD_STORE_CACHE_IDLE_S": "1"}).start()
    with daemon.client() as client:
        for start in range(0, 20_000, 1000):
            items = [{"content": f"orchard note {n} about pears",
                      **({"tags": ["rare"]} if n % 100 == 0 else {})}
                     for n in range(start, start + 1000)]
            assert client.import_items(items)["added"] == 1000
        wait_status(client, lambda s: "after writes paused" in log_text(paths), timeout=60)
        for n in range(5):
            hits = client.search(f"orchard note {n}00 pears", mode="vector", tags=["rare"])
            assert hits["hits"] and all("rare" in h["tags"] for h in hits["hits"])
        wait_status(client, lambda s: "searches paused" in log_text(paths), timeout=30)
        # Searches still work once the cache is gone: they read from the file again.
        hits = client.search("orchard note 1900 pears", mode="vector", tags=["rare"])["hits"]
        assert hits[0]["content"] == "orchard note 1900 about pears"
    cached, left = map(float, re.search(
        r"searches paused: DuckDB's cache emptied \((\d+) MB, (\d+) left\)", log_text(paths)
    ).groups())
    assert cached > 16 >= left


def spill_files(paths) -> list:
    return [p for p in paths.temp_dir.rglob("*") if p.is_file()]


def test_a_crash_after_the_cache_spilled_still_restarts(make_daemon, paths):
    # A short log is left unchecked when writes pause, and releasing DuckDB's cache then
    # spills its unwritten blocks to the temp directory. A kill -9 leaves those files
    # behind; DuckDB refused to open with them there, so the daemon could not start.
    daemon = make_daemon({"MEMORYD_EMBEDDING_PROVIDER": "hash"}).start()
    with daemon.client() as client:
        for start in range(0, 5000, 1000):
            items = [{"content": f"spilled note {n} about the Quokkacanary"}
                     for n in range(start, start + 1000)]
            assert client.import_items(items)["added"] == 1000
        wait_status(client, lambda s: bool(spill_files(paths)), timeout=60)
    left = spill_files(paths)
    assert not any(b"Quokkacanary" in p.read_bytes() for p in left)  # encrypted
    daemon.kill9()
    assert all(p.exists() for p in left)

    daemon.start()
    with daemon.client() as client:
        assert client.status()["memories"] == 5000
        hits = client.search("spilled note 4321", mode="lexical")["hits"]
        assert hits and hits[0]["content"] == "spilled note 4321 about the Quokkacanary"
    assert not any(p.exists() for p in left)  # the dead daemon's spill files are gone
