"""The RAM copy of the hits' fields (memoryd/search/hit_rows.py) always says what the
memories table says: after inserts, edits, touches, new embeddings, deletes, a refresh
once writes pause, and a load from a snapshot; and a copy over its budget is dropped
without losing a hit."""

from __future__ import annotations

import hashlib
import os
import threading
from datetime import timedelta

import numpy as np

from memoryd.model import Memory, SearchFilters, new_id, utcnow
from memoryd.search.hit_rows import SCALAR_ROWS_MAX
from memoryd.search.vector_blob import vector_blob
from memoryd.store.database import (
    MEMORY_COLUMNS,
    Database,
    PreparedMemory,
    _id_list,
    _memory,
    build_ram_index,
)

BUDGET = 64 << 20


def prepared(n: int, content: str | None = None, embedded: bool = True) -> PreparedMemory:
    """A memory whose fields vary with ``n``: namespaces, kinds, tags, metadata, source,
    thread and position, expiry, and an embedding or none."""
    text = content or f"memory {n} about the harbour lantern {n % 7}"
    now = utcnow()
    return PreparedMemory(
        id=new_id(), content=text, content_hash=hashlib.sha256(text.encode()).hexdigest(),
        namespace=("work", "home")[n % 2], kind=("note", "turn", "fact")[n % 3],
        tags=[f"t{n % 4}", "shared"][: 1 + n % 2], metadata={"speaker": f"S{n}"} if n % 3 else {},
        importance=round(0.1 * (n % 10), 1), source=f"/notes/{n}.md" if n % 4 == 0 else None,
        thread="chat" if n % 5 == 0 else None, position=n if n % 5 == 0 else None,
        created_at=now - timedelta(minutes=n), updated_at=now,
        expires_at=now + timedelta(days=30) if n % 6 == 0 else None,
        embedding=vector_blob(np.full(8, 0.25, dtype=np.float32)) if embedded else None,
        embedding_model="test-model" if embedded else None,
    )


def opened(tmp_path, name: str = "h.duckdb", budget: int = BUDGET) -> Database:
    db = Database(tmp_path / name, KEY, tmp_path / "tmp", lexical_ram_max=1_000_000)
    load_ram(db, budget)
    return db


def load_ram(db: Database, budget: int) -> None:
    db.finish_ram_index(build_ram_index(db.begin_ram_index(), budget))


def table_rows(db: Database, ids: list[str]) -> dict[str, Memory]:
    rows = db.con.execute(
        f"SELECT {MEMORY_COLUMNS} FROM memories WHERE id IN ({_id_list(ids)})"
    ).fetchall()
    return {r[0]: _memory(r) for r in rows}


def copies(db: Database, ids: list[str]) -> dict[str, Memory]:
    """The copies of ``ids``, looked up at once (taken as tables when more than
    ``SCALAR_ROWS_MAX``) and a few at a time (read as scalars), which must agree."""
    assert db._ram is not None
    at_once = db._ram.rows.lookup(ids)
    few = {}
    for start in range(0, len(ids), 7):
        few.update(db._ram.rows.lookup(ids[::-1][start:start + 7]))
    assert few == at_once
    return at_once


KEY = os.urandom(32).hex()


def test_copies_say_what_the_table_says_through_every_change(tmp_path):
    db = opened(tmp_path)
    items = [prepared(n, embedded=n % 7 != 0) for n in range(60)]
    db.insert(items[:35], "test")
    db.insert(items[35:], "test")
    ids = [m.id for m in items]
    assert db.hit_fields_in_ram and len(ids) > SCALAR_ROWS_MAX  # both ways of reading
    assert copies(db, ids) == table_rows(db, ids)

    edited, retagged, touched, embedded, deleted = ids[3], ids[4], ids[10], ids[7], ids[12]
    db.update(edited, {"content": "an edited memory", "source": "/elsewhere.md"}, "test",
              {"content_hash": "e" * 64})
    db.update(retagged, {"tags": ["moved"], "importance": 0.9}, "test")
    db.touch(touched)
    db.set_embeddings([(embedded, vector_blob(np.ones(8, dtype=np.float32)))], "test-model")
    db.delete(deleted, "test")
    changed = {edited, retagged, touched, embedded}
    live = [i for i in ids if i != deleted]

    held = copies(db, ids)
    assert changed.isdisjoint(held) and deleted not in held  # stale copies are not used
    assert held == {i: m for i, m in table_rows(db, live).items() if i not in changed}
    # A search's hits: fresh copies and the table's rows for the rest, as the table says.
    hits = db.get_many(ids, SearchFilters(), vectors=False)
    assert {i: m for i, (m, _) in hits.items()} == table_rows(db, live)
    assert hits[edited][0].content == "an edited memory"
    assert hits[touched][0].access_count == 1 and hits[embedded][0].embedded
    in_work = db.get_many(ids, SearchFilters(namespace="work", tags=["shared"]), vectors=False)
    assert set(in_work) == {
        i for i, m in table_rows(db, live).items() if m.namespace == "work" and "shared" in m.tags
    }

    db.compact_ram()  # writes paused: what went stale is copied again
    assert copies(db, ids) == table_rows(db, live)
    assert db._ram is not None and len(db._ram.rows) == len(ids) + len(changed)  # 5 stale
    for memory_id in live[20:40]:  # more than a quarter of the slots go stale
        db.update(memory_id, {"importance": 0.05}, "test")
    db.compact_ram()  # and now the stale slots are dropped too
    assert copies(db, ids) == table_rows(db, live)
    assert len(db._ram.rows) == len(live)

    load_ram(db, BUDGET)  # a restart's load, from a snapshot
    assert copies(db, ids) == table_rows(db, live)
    db.close()


def test_a_copy_over_its_budget_is_dropped_and_hits_come_from_the_table(tmp_path):
    budget = 1 << 20
    db = opened(tmp_path, budget=budget)
    small = [prepared(n) for n in range(20)]
    db.insert(small, "test")
    assert db.hit_fields_in_ram
    # ~1.6 MB of text: more than the budget.
    big = [prepared(n, content=f"{n} " + "lantern harbour " * 250) for n in range(400)]
    for start in range(0, len(big), 100):
        db.insert(big[start:start + 100], "test")
    ids = [m.id for m in small + big]
    assert not db.hit_fields_in_ram and copies(db, ids) == {}
    hits = db.get_many(ids, SearchFilters(), vectors=False)
    assert {i: m for i, (m, _) in hits.items()} == table_rows(db, ids)

    load_ram(db, budget)  # the load sees the store is too big before copying anything
    assert not db.hit_fields_in_ram
    load_ram(db, 8 << 20)
    assert db.hit_fields_in_ram and copies(db, ids) == table_rows(db, ids)
    db.close()


def test_forgetting_every_copy_leaves_an_empty_copy_that_still_works(tmp_path):
    db = opened(tmp_path)
    first, second = [prepared(n) for n in range(30)], [prepared(n) for n in range(30, 50)]
    db.insert(first, "test")
    db.insert(second, "test")  # two chunks: 30 and 20 slots
    for item in first + second:
        db.delete(item.id, "test")
    db.compact_ram()  # every slot stale: folded to none
    assert db._ram is not None and len(db._ram.rows) == 0 and db.hit_fields_in_ram
    again = [prepared(n) for n in range(50, 55)]
    db.insert(again, "test")
    ids = [m.id for m in again]
    assert copies(db, ids) == table_rows(db, ids)
    db.close()


def test_reads_off_the_owner_thread_agree_with_the_owner_or_decline(tmp_path):
    """``rows_now``, ``candidate_facts_now`` (a search's reads on the event loop) and
    ``lexical_search_now`` (on the RAM search thread) give what ``get_many``,
    ``candidate_facts`` and ``lexical_search`` give, or ``None`` when only the owner
    thread can answer: before the RAM index loads, and for a stale copy or a metadata
    filter (SQL reads the rows)."""
    db = Database(tmp_path / "h.duckdb", KEY, tmp_path / "tmp", lexical_ram_max=1_000_000)
    items = [prepared(n) for n in range(40)]
    db.insert(items, "test")
    ids = [m.id for m in items]
    assert db.rows_now(ids, SearchFilters()) is None  # not loaded yet
    assert db.candidate_facts_now(ids, False) is None
    assert db.lexical_search_now(["harbour"], SearchFilters(), 50) is None
    load_ram(db, BUDGET)

    for filters in (SearchFilters(), SearchFilters(namespace="home", tags=["shared"]),
                    SearchFilters(kind="fact"), SearchFilters(thread="chat")):
        rows = db.rows_now(ids, filters)
        assert rows == db.get_many(ids, filters, vectors=False) and rows
        # A search's hits, ranked on facts that passed: their facts are not read again.
        assert db.rows_now(list(rows), filters, ranked=True) == rows
        assert db.candidate_facts_now(ids, False, filters) == db.candidate_facts(
            ids, False, filters)
        found = db.lexical_search_now(["lantern"], filters, 50, ["harb"])
        assert found == db.lexical_search(["lantern"], filters, 50, ["harb"]) and found
    unthreaded = [m.id for m in items if m.thread is None]
    assert db.candidate_facts_now(unthreaded, True) == db.candidate_facts(unthreaded, True)
    # Threaded candidates' neighbours come from RAM too, the ones SQL finds.
    facts, pairs = db.candidate_facts_now(ids, True)
    assert (facts, pairs) == db.candidate_facts(ids, True)
    threaded = [m.id for m in items if m.thread is not None]
    assert pairs == db.neighbours(threaded) and len(pairs) == len(threaded) > 2
    assert db.rows_now(ids, SearchFilters(metadata={"speaker": "S1"})) is None
    assert db.lexical_search_now(["lantern"], SearchFilters(metadata={"speaker": "S1"}), 5) is None

    db.update(ids[5], {"content": "an edited memory"}, "test", {"content_hash": "e" * 64})
    assert db.rows_now(ids, SearchFilters()) is None  # its copy is stale: SQL reads it
    # Changed or deleted after a search ranked it: read (filtered) from DuckDB too.
    db.update(ids[8], {"kind": "moved"}, "test")
    db.delete(ids[9], "test")
    for changed in (ids[5], ids[8], ids[9]):
        assert db.rows_now([ids[0], changed], SearchFilters(), ranked=True) is None
    assert db.get_many([ids[8]], SearchFilters(kind="fact"), False) == {}  # was a fact
    assert db.get_many([ids[9]], SearchFilters(), False) == {}
    rest = ids[:5] + ids[6:8] + ids[10:]
    assert db.rows_now(rest, SearchFilters()) == db.get_many(rest, SearchFilters(), False)
    db.close()


def test_a_reader_off_the_owner_thread_declines_while_the_ram_index_changes(
    tmp_path, monkeypatch
):
    """While an insert's change is being applied to the RAM index (on the owner thread),
    a reader on the event loop gets ``None`` at once (it asks the owner thread, queued
    behind the change) and a lexical search on the RAM search thread waits for the change,
    instead of either reading a half-applied index; after it, the new rows."""
    db = opened(tmp_path)
    before = [prepared(n) for n in range(20)]
    db.insert(before, "test")
    ram = db._ram
    assert ram is not None
    applying, release = threading.Event(), threading.Event()
    apply = ram.apply

    def held_apply(op, args):
        applying.set()
        assert release.wait(30)
        apply(op, args)

    monkeypatch.setattr(ram, "apply", held_apply)
    after = [prepared(n) for n in range(20, 30)]
    owner = threading.Thread(target=db.insert, args=(after, "test"))
    owner.start()
    try:
        assert applying.wait(30)
        old = [m.id for m in before]
        assert db.rows_now(old, SearchFilters()) is None
        assert db.candidate_facts_now(old, False) is None
        lexical: list[list[tuple[str, float]] | None] = []
        searcher = threading.Thread(
            target=lambda: lexical.append(db.lexical_search_now(["lantern"], SearchFilters(), 100)))
        searcher.start()
        searcher.join(0.3)
        assert searcher.is_alive() and not lexical  # waits for the change
    finally:
        release.set()
        owner.join(30)
    searcher.join(30)
    assert lexical and {i for i, _ in lexical[0]} >= {m.id for m in after}
    new = [m.id for m in after]
    rows = db.rows_now(new, SearchFilters())
    assert rows is not None and {i: m for i, (m, _) in rows.items()} == table_rows(db, new)
    facts = db.candidate_facts_now(new, False)
    assert facts is not None and set(facts[0]) == set(new)
    db.close()
