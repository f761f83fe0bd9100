"""The RAM index agrees with the tables, through loads, adds, edits, deletes and failed
transactions: BM25 from the RAM postings equals BM25 in SQL over the postings table (with
prefixes, in one namespace and across all), and the rank facts equal the rows."""

from __future__ import annotations

import hashlib
import os
import random
from datetime import datetime, timedelta

import numpy as np
import pytest
from support import uid

from memoryd.model import SearchFilters, new_id, utcnow
from memoryd.search import inverted
from memoryd.store import database
from memoryd.store.database import Database, PreparedMemory, build_ram_index, filter_sql

WORDS = ("apple river violin garden engine summer harbour lantern pepper cobalt "
         "deploy deployment deployed pipeline friday review").split()


def prepared(content: str, namespace: str, kind: str = "note",
             tags: list[str] | None = None) -> PreparedMemory:
    now = utcnow()
    return PreparedMemory(
        id=new_id(), content=content, content_hash=hashlib.sha256(content.encode()).hexdigest(),
        namespace=namespace, kind=kind, tags=tags or [], metadata={}, importance=0.5, source=None,
        thread=None, position=None, created_at=now, expires_at=None, updated_at=now,
    )


def batch(rng: random.Random, n: int) -> list[PreparedMemory]:
    return [prepared(" ".join(rng.choices(WORDS, k=rng.randint(1, 9))) + f" n{rng.random()}",
                     rng.choice(["work", "home"]), rng.choice(["note", "note", "fact"]),
                     sorted(rng.sample(["red", "blue", "green"], rng.randint(0, 2))))
            for _ in range(n)]


def live_ids(index) -> list[str]:
    return index.ids(np.flatnonzero(index._alive[: index._ids.used]))


QUERIES = [(["appl", "river"], []), (["violin"], []), (["pepper", "cobalt", "harbour"], []),
           ([], ["deploy"]), ([], ["deployme"]), (["summer"], ["lant"]), (["nosuchword"], [])]


def windows() -> list[tuple[datetime | None, datetime | None]]:
    """Time filters: none, recent only, old only, and a window around the old ones."""
    now = utcnow()
    return [(None, None), (now - timedelta(days=30), None), (None, now - timedelta(days=100)),
            (now - timedelta(days=500), now - timedelta(days=300))]


# The other filters the rank facts apply, alone and with a time filter.
OTHER_FILTERS = [{"kind": "fact"}, {"tags": ["red"]}, {"tags": ["red", "blue"]},
                 {"thread": "t1"}, {"kind": "nosuch"}, {"tags": ["nosuch"]},
                 {"kind": "note", "tags": ["blue"], "since": utcnow() - timedelta(days=30)}]


def all_filters() -> list[tuple[int | None, SearchFilters]]:
    """(the window's place in ``windows()``, or None) and filters, in every namespace."""
    found: list[tuple[int | None, SearchFilters]] = []
    for namespace in (None, "work", "home", "nowhere"):
        for window, (since, until) in enumerate(windows()):
            found.append((window, SearchFilters(namespace=namespace, since=since, until=until)))
        for other in OTHER_FILTERS:
            found.append((None, SearchFilters(namespace=namespace, **other)))
    return found


def assert_same(db: Database) -> dict[int, int]:
    """Every document with the same score, and the same top 20 up to ties (sums of the
    same terms in another order may differ in the last bit, which reorders exact ties);
    with time filters too, which RAM applies from the rank facts (and with them expiry,
    as SQL does once a filter narrows the ranking). Returns the documents each window
    (by its place in ``windows()``) kept, over all namespaces and queries."""
    kept = dict.fromkeys(range(len(windows())), 0)
    for window, filters in all_filters():
        namespace = filters.namespace
        for terms, prefixes in QUERIES:
            sql = dict(db.lexical_search_sql(terms, filters, 10_000, prefixes))
            ram = dict(db.lexical_search(terms, filters, 10_000, prefixes))
            assert ram.keys() == sql.keys(), (namespace, terms, prefixes)
            for memory_id, score in sql.items():
                assert ram[memory_id] == pytest.approx(score, rel=1e-6)
            top_sql = db.lexical_search_sql(terms, filters, 20, prefixes)
            top_ram = db.lexical_search(terms, filters, 20, prefixes)
            assert [s for _, s in top_ram] == pytest.approx([s for _, s in top_sql], rel=1e-6)
            if window is not None:
                kept[window] += len(sql)
    return kept


def assert_same_facts(db: Database) -> None:
    """Each stored, unexpired memory's rank facts are its row's; the expired have none."""
    now = utcnow()
    rows = db.con.execute(
        "SELECT id, created_at, importance, thread IS NOT NULL, expires_at FROM memories"
    ).fetchall()
    found = db.candidate_facts([r[0] for r in rows] + ["not-a-memory"], False)
    assert found is not None
    facts, _ = found
    live = {r[0]: r for r in rows if r[4] is None or r[4] > now}
    assert facts.keys() == live.keys()
    for memory_id, (_, created_at, importance, threaded, _) in live.items():
        fact = facts[memory_id]
        assert (fact.created_at, fact.importance, fact.threaded) == (
            created_at, importance, threaded)
    # The filters from the facts keep what SQL's keep: in ranking, counts and listings.
    for _, filters in all_filters():
        where, params = filter_sql(filters)
        passing = {r[0] for r in db.con.execute(
            f"SELECT id FROM memories WHERE {' AND '.join(where)}", params).fetchall()}
        found = db.candidate_facts(list(live) + ["not-a-memory"], False, filters)
        assert found is not None
        in_namespace = {i for i in found[0] if filters.namespace is None
                        or db.get(i).namespace == filters.namespace}
        assert in_namespace == passing, filters
        assert {i for i, _ in db.matching_vectors(filters, vectors=False)} == passing, filters
        assert db.filter_counts(filters)[0] == len(passing), filters
        # A search's hits: read by id alone, kept by their facts (and namespace).
        hits = db.get_many([r[0] for r in rows], filters, vectors=False)
        assert hits.keys() == passing, filters
        assert all(memory == db.get(i) for i, (memory, _) in list(hits.items())[:20])


def loaded(tmp_path, items: list[PreparedMemory], during: list[PreparedMemory],
           doomed: PreparedMemory | None = None) -> Database:
    """A store of ``items`` whose RAM index is built while ``during`` are added (and
    ``doomed`` deleted): those changes reach it by the replay after the build."""
    db = Database(tmp_path / "r.duckdb", os.urandom(32).hex(), tmp_path / "tmp",
                  lexical_ram_max=10_000)
    db.insert(items, "test")
    snapshot = db.begin_ram_index()
    db.insert(during, "test")
    if doomed is not None:
        db.delete(doomed.id, "test")
    db.finish_ram_index(build_ram_index(snapshot))
    assert db.ram_ready
    return db


def test_ram_postings_rank_like_sql(tmp_path, monkeypatch):
    monkeypatch.setattr(inverted, "FOLD_MIN_POSTINGS", 100)  # so the few below are folded
    rng = random.Random(3)
    items = batch(rng, 300)
    db = loaded(tmp_path, items, batch(rng, 40), items[5])
    assert_same(db)
    assert_same_facts(db)
    # Changes after the load: adds, edits, deletes, and a transaction that fails.
    more = batch(rng, 120)
    db.insert(more, "test")
    for item in rng.sample(more + items[10:], 30):
        db.update(item.id, {"content": item.content + " violin revised"}, "test",
                  {"content_hash": item.content_hash + "x"})
    for item in rng.sample(items[50:], 20):
        db.delete(item.id, "test")
    # Edits of what ranking reads, without touching the postings.
    past = utcnow() - timedelta(days=400)
    for n, item in enumerate(rng.sample(items[10:50], 12)):
        change = [{"importance": 0.9}, {"created_at": past}, {"thread": "t1", "position": n},
                  {"expires_at": utcnow() - timedelta(seconds=1)}, {"kind": "fact"},
                  {"tags": ["red", "green"]}][n % 6]
        db.update(item.id, change, "test")
    with pytest.raises(RuntimeError):
        with db.transaction() as con:
            db._write_postings(con, {"ghost": __import__("collections").Counter(violin=9)},
                               {"ghost": "work"}, replace=False)
            raise RuntimeError("rolled back")
    assert "ghost" not in [i for i, _ in db.lexical_search(["violin"], SearchFilters(), 500)]
    kept = assert_same(db)
    # The time filters narrowed: some documents are old now, most are recent.
    assert 0 < kept[2] < kept[1] < kept[0] and kept[3] == kept[2]
    assert_same_facts(db)
    # Folded when writes pause: the recent lists leave, the ranking stays.
    assert db._ram is not None and db._ram.postings._recent_count >= 100
    db.compact_ram()
    assert not db._ram.postings._recent
    assert_same(db)
    assert_same_facts(db)
    db.close()


def test_ram_postings_step_aside_above_the_limit(tmp_path):
    rng = random.Random(4)
    db = Database(tmp_path / "r.duckdb", os.urandom(32).hex(), tmp_path / "tmp", lexical_ram_max=50)
    db.insert(batch(rng, 40), "test")
    db.finish_ram_index(build_ram_index(db.begin_ram_index()))
    assert db.ram_ready
    db.insert(batch(rng, 20), "test")  # 60 > 50: SQL from now on
    assert not db.ram_ready
    assert db.lexical_search(["violin"], SearchFilters(), 5) == db.lexical_search_sql(
        ["violin"], SearchFilters(), 5)
    db.close()


def test_rebuilds_renumber_documents_and_rank_the_same():
    """Edits give a document a new ordinal; a rebuild drops the dead ones (memory does not
    grow with edits) and ranks exactly as before."""
    from collections import Counter

    from memoryd.search.inverted import InvertedIndex

    rng = random.Random(5)
    index = InvertedIndex()
    docs = {uid(n): Counter(rng.choices(WORDS, k=rng.randint(1, 6))) for n in range(400)}
    index.add(docs, {i: rng.choice(["work", "home"]) for i in docs})
    for _ in range(3):  # edit many, delete a few
        edited = {i: Counter(rng.choices(WORDS, k=3)) for i in rng.sample(live_ids(index), 150)}
        index.add(edited, {i: "work" for i in edited})
        index.remove(rng.sample(live_ids(index), 10))
    queries = [(["violin"], [], None), (["apple", "river"], [], "work"), ([], ["deploy"], None)]
    before = [index.search(t, p, ns, 50) for t, p, ns in queries]
    assert index._ids.used > len(index) + 400  # dead ordinals piled up
    kept = sorted(live_ids(index))
    index._rebuild()
    assert index._ids.used == len(index) == 370
    assert sorted(index.ordinals(kept).tolist()) == list(range(370))
    assert sorted(live_ids(index)) == kept
    assert [index.search(t, p, ns, 50) for t, p, ns in queries] == before
    late = uid(10**6)
    index.add({late: Counter(violin=5)}, {late: "home"})  # ordinals go on after it
    assert index.search(["violin"], [], "home", 1)[0][0] == late
    index.fold()  # one posting: not worth a rebuild
    assert index._recent_count == 1


def test_a_top_k_among_many_ties_breaks_them_by_id():
    """Templated texts tie by the thousand: the places left after the documents that
    score above the last place go to the tied ones with the smallest ids, the same as
    sorting every match by (score descending, id)."""
    from collections import Counter

    from memoryd.search.inverted import InvertedIndex

    rng = random.Random(6)
    index = InvertedIndex()
    ids = [uid(n * 7919 % 3001) for n in range(3000)]
    rng.shuffle(ids)  # ordinals in another order than ids
    docs = {i: Counter(["harbour", "lantern"] if n % 7 else ["harbour", "harbour", "cobalt"])
            for n, i in enumerate(ids)}
    index.add(docs, {i: "work" for i in docs})
    index.remove(ids[:40])  # dead documents are skipped
    for terms in (["harbour"], ["harbour", "cobalt"], ["lantern", "cobalt"]):
        everything = index.search(terms, [], None, 10_000)  # no cut: every match, sorted
        assert len(everything) > 2000
        expected = sorted(everything, key=lambda hit: (-hit[1], hit[0]))
        for limit in (1, 10, 50, 500):
            assert index.search(terms, [], None, limit) == expected[:limit], (terms, limit)


def test_rank_facts_follow_their_documents_through_edits_and_rebuilds():
    """The rank facts live in the postings' document ordinals: an edit moves a memory's
    facts to its new ordinal, also when enough dead ordinals make that very edit rebuild
    (and renumber) the index, and a delete takes them away."""
    from collections import Counter
    from datetime import datetime

    from memoryd.search.inverted import InvertedIndex
    from memoryd.search.ram import RankFact, RankFacts

    index = InvertedIndex()
    facts = RankFacts(index)
    ids = [uid(n) for n in range(20)]
    index.add({i: Counter(harbour=1) for i in ids}, {i: "work" for i in ids})
    start = datetime(2024, 1, 1)
    expected = {i: RankFact(start + timedelta(days=n), n / 20, n % 2 == 0)
                for n, i in enumerate(ids)}
    facts.upsert([(i, f.created_at, f.importance, None, "fact" if n % 3 == 0 else "note",
                   ["b", "a"] if n % 4 == 0 else [], "t" if f.threaded else None, n)
                  for n, (i, f) in enumerate(expected.items())])
    for n in range(10_000):  # each edit leaves a dead ordinal
        edited = ids[n % 5]
        index.add({edited: Counter(harbour=2, lantern=n % 3)}, {edited: "work"})
    assert index._dead == 10_000
    # The next edit's dead ordinal is one too many: it rebuilds. A low ordinal, which
    # the renumbering hands to another document.
    index.add({ids[15]: Counter(lantern=1)}, {ids[15]: "work"})
    assert index._dead == 0
    index.remove([ids[7]])
    del expected[ids[7]]
    assert facts.lookup([*ids, "not-a-memory"], start) == expected
    # What the facts filter on moved with them too.
    assert set(facts.lookup(ids, start, SearchFilters(kind="fact", tags=["a"]))) == {
        ids[0], ids[12]}
    assert set(facts.lookup(ids, start, SearchFilters(thread="t"))) == set(ids[::2])
    assert facts.lookup(ids, start, SearchFilters(tags=["a", "zzz"])) == {}


def test_rank_facts_of_a_batch_keep_each_memorys_last_row_and_skip_the_undocumented():
    """``upsert`` writes a batch a column at a time: a memory given twice keeps its last
    row, a memory without a document gets no facts, each expiry counts, and tag lists
    that differ only in order or repeats are one tag set."""
    from collections import Counter
    from datetime import datetime

    from memoryd.search.inverted import InvertedIndex
    from memoryd.search.ram import RankFact, RankFacts

    index = InvertedIndex()
    facts = RankFacts(index)
    a, b, c, d, undocumented = (uid(n) for n in range(5))
    index.add({i: Counter(harbour=1) for i in (a, b, c, d)}, {i: "work" for i in (a, b, c, d)})
    start = datetime(2024, 1, 1)
    day = timedelta(days=1)
    facts.upsert([
        (a, start, 0.1, start - day, "note", [], None, None),  # replaced by a's row below
        (b, start + day, 0.2, start + day, "fact", ["x"], "t1", 3),
        (undocumented, start, 0.3, None, "note", [], None, None),
        (c, start, 0.4, None, "note", ["b", "a"], None, None),
        (a, start + 2 * day, 0.9, None, "fact", ["x"], "t2", None),
        (d, start, 0.5, None, "note", ["a", "b", "a"], "t1", 1),
    ])
    assert facts.lookup([a, b, c, d, undocumented], start) == {
        a: RankFact(start + 2 * day, 0.9, True),
        b: RankFact(start + day, 0.2, True),
        c: RankFact(start, 0.4, False),
        d: RankFact(start, 0.5, True),
    }
    assert set(facts.lookup([a, b, c, d], start + 2 * day)) == {a, c, d}  # b expired
    assert set(facts.lookup([a, b, c, d], start, SearchFilters(tags=["a", "b"]))) == {c, d}
    assert set(facts.lookup([a, b, c, d], start, SearchFilters(kind="fact"))) == {a, b}
    assert set(facts.lookup([a, b, c, d], start, SearchFilters(thread="t1"))) == {b, d}
    assert facts._tag_sets.values == [("x",), ("a", "b")]  # none for the rows left out


def threaded_batch(rng: random.Random, n: int) -> list[PreparedMemory]:
    """Memories in a few threads (the same thread names in two namespaces), positions
    drawn from a small range (ties, broken by id) or none (last), some with no words
    the lexical index keeps."""
    items = batch(rng, n)
    for item in items:
        item.thread = rng.choice(["t1", "t2", "t3", None])
        item.position = rng.choice([None, *range(8)]) if item.thread else None
        if rng.random() < 0.1:
            item.content = rng.choice(["the", "!!!", "a an the"]) + f" {rng.random()}"
            item.content_hash = hashlib.sha256(item.content.encode()).hexdigest()
    return items


def assert_same_neighbours(db: Database) -> int:
    """The RAM index's thread neighbours of every memory are SQL's; returns how many
    memories are threaded."""
    ids = [r[0] for r in db.con.execute("SELECT id FROM memories").fetchall()]
    expected = db.neighbours(ids)
    assert db._ram is not None and db._ram.neighbours(ids) == expected
    return len(expected)


def test_thread_neighbours_in_ram_are_sqls(tmp_path, monkeypatch):
    """A threaded candidate's (previous, next) from the RAM rank facts equals SQL's
    window over its thread (by position, none last, then id; per namespace), after a
    load, adds, edits of position, thread, namespace and content, and deletes."""
    monkeypatch.setattr(inverted, "FOLD_MIN_POSTINGS", 100)
    rng = random.Random(11)
    items = threaded_batch(rng, 200)
    db = loaded(tmp_path, items, threaded_batch(rng, 20))
    assert assert_same_neighbours(db) > 100
    more = threaded_batch(rng, 60)
    db.insert(more, "test")
    for n, item in enumerate(rng.sample(items + more, 60)):
        change = [{"position": rng.choice([None, *range(8)])}, {"thread": "t2"},
                  {"thread": None}, {"namespace": "home"}, {"position": 3, "thread": "t9"},
                  {"content": item.content + " violin"}][n % 6]
        db.update(item.id, change, "test")
    for item in rng.sample(items, 30):
        db.delete(item.id, "test")
    assert assert_same_neighbours(db) > 100
    db.compact_ram()
    assert assert_same_neighbours(db) > 100
    # What a search asks for: found in RAM, with the neighbours' own facts.
    ids = [m.id for m in more]
    facts, pairs = db.candidate_facts_now(ids, True)
    assert (facts, pairs) == db.candidate_facts(ids, True)
    assert pairs == db.neighbours([i for i in ids if facts.get(i) and facts[i].threaded])
    assert {n for pair in pairs.values() for n in pair if n} <= set(facts)
    # A search that reads every candidate's row (a metadata filter, a phrase) too.
    rows, row_pairs = db.candidates(ids, SearchFilters(), True)
    assert row_pairs == pairs and set(rows) == set(facts)
    # Threads too long to sort on the event loop: it declines, the owner thread answers.
    monkeypatch.setattr(database, "LOOP_THREAD_MEMBERS_MAX", 10)
    assert db.candidate_facts_now(ids, True) is None
    assert db.candidate_facts_now(ids, False) == db.candidate_facts(ids, False)
    assert db.candidate_facts(ids, True) == (facts, pairs)
    db.close()
