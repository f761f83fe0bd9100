"""Where vector candidates come from: RAM up to search.ram_max, the encrypted index above.

A store below the limit keeps no vector files (an index left by a bigger store is
erased); a store that outgrows the limit while running builds the index from DuckDB and
switches to it without missing anything."""

from __future__ import annotations

import itertools

import pytest
from support import INDEX_TIER, SQL_TIER, wait_status

TEXTS = [
    "Alice is allergic to peanuts",
    "The quarterly report is due on Friday",
    "Bob's favourite band is Radiohead",
    "The boiler needs servicing in March",
    "Carol's flight to Lisbon leaves at 7am",
]
QUERIES = {"nut allergy": 0, "music taste": 2, "heating maintenance": 3, "trip to Portugal": 4}


def first_hits(client) -> dict[str, str]:
    return {q: client.search(q, mode="vector")["hits"][0]["content"] for q in QUERIES}


def test_ram_tier_erases_an_index_left_by_a_bigger_store(make_daemon, paths):
    daemon = make_daemon(SQL_TIER).start()
    with daemon.client() as c:
        for text in TEXTS:
            c.add(text)
        status = wait_status(c, lambda s: s["vector_index"]["rows"] == len(TEXTS))
        assert status["lexical_in_ram"] is False  # lexical_ram_max 0: SQL
        deleted = c.search("nut allergy", mode="vector")["hits"][0]["id"]
        c.delete(deleted)
    daemon.stop()
    assert list(paths.vector_dir.rglob("*.lance"))

    daemon = make_daemon().start()
    with daemon.client() as c:
        status = wait_status(c, lambda s: s["ram_vectors"]["ready"] and s["lexical_in_ram"])
        assert status["search_tier"] == "ram" and status["ram_vectors"]["rows"] == 4
        assert not paths.vector_dir.exists()
        hits = first_hits(c)
    assert hits["music taste"] == TEXTS[2] and hits["trip to Portugal"] == TEXTS[4]
    assert hits["nut allergy"] != TEXTS[0]


def test_a_store_that_outgrows_ram_switches_to_the_index(make_daemon, paths):
    daemon = make_daemon({"MEMORYD_SEARCH_RAM_MAX": "3"}).start()
    with daemon.client() as c:
        for text in TEXTS[:2]:
            c.add(text)
        status = wait_status(c, lambda s: s["ram_vectors"]["ready"])
        assert status["search_tier"] == "ram" and not paths.vector_dir.exists()
        c.import_items([{"content": t} for t in TEXTS[2:]])
        status = wait_status(c, lambda s: s["search_tier"] == "index"
                             and s["vector_index"]["rows"] == len(TEXTS))
        assert status["ram_vectors"]["rows"] == 0 and status["vector_index"]["pending"] == 0
        assert list(paths.vector_dir.rglob("*.lance"))
        hits = first_hits(c)
        c.add("Dave waters the ferns every Sunday")  # written to the index from now on
        wait_status(c, lambda s: s["vector_index"]["rows"] == len(TEXTS) + 1)
        assert c.search("plant care", mode="vector")["hits"][0]["content"].startswith("Dave")
    assert hits == {q: TEXTS[n] for q, n in QUERIES.items()}
    daemon.stop()
    daemon = make_daemon({"MEMORYD_SEARCH_RAM_MAX": "3"}).start()
    with daemon.client() as c:
        status = wait_status(c, lambda s: s["vector_index"]["ready"])
        assert status["search_tier"] == "index"
        assert first_hits(c) == hits


@pytest.mark.parametrize("tier", ["ram", "index"])
def test_ranking_from_ram_matches_ranking_from_rows(make_daemon, tier):
    """A search without a metadata filter ranks from the RAM index (rank facts, which
    apply the other filters, and int8 similarities, or with the vectors in the index exact
    ones from their stored vectors) and reads only the hits' rows; a metadata filter reads
    every candidate's row. Both must rank alike, follow edits, and never return what is
    gone or expired."""
    daemon = make_daemon(INDEX_TIER if tier == "index" else {}).start()
    meta = {"set": "all"}  # every memory has it: a filter that forces the row path alone
    with daemon.client() as c:
        ids = [c.add(t, metadata=meta)["memory"]["id"] for t in TEXTS]
        turns = ["Where should we eat tonight?", "The Thai place near the station",
                 "Fine, book it for eight"]
        c.import_items([{"content": t, "thread": "dinner", "position": n, "metadata": meta,
                         "tags": ["food"], "kind": "turn"} for n, t in enumerate(turns)])
        expiring = c.add("Dentist appointment moved to Thursday", metadata=meta,
                         expires_at="2000-01-01T00:00:00Z")["memory"]["id"]
        old = c.add("Old rehearsal schedule for the band, music on Mondays", metadata=meta,
                    created_at="2021-03-01T00:00:00Z", tags=["food"])["memory"]["id"]
        wait_status(c, lambda s: s["lexical_in_ram"] and s["search_tier"] == tier and (
            s["ram_vectors"]["ready"] if tier == "ram" else s["vector_index"]["ready"]))
        c.update(ids[1], importance=1.0)
        c.delete(ids[3])
        c.update(ids[2], tags=["food"], kind="turn")  # the facts follow edits of these too
        everything = {"metadata": meta}  # matches all: forces the row path
        windows = ({}, {"since": "2022-01-01T00:00:00Z"}, {"until": "2022-01-01T00:00:00Z"},
                   {"since": "1990-01-01T00:00:00Z", "until": "2999-01-01T00:00:00Z"},
                   {"kind": "turn"}, {"tags": ["food"]}, {"kind": "note", "thread": "dinner"},
                   {"tags": ["food"], "until": "2022-01-01T00:00:00Z"})
        for query, options, window in itertools.product(
            ("nut allergy", "music band", "dinner Thai food", "dentist appointment",
             "report Friday", "old rehearsal schedule Mondays"),
            ({"mode": "hybrid"}, {"mode": "vector"}, {"mode": "lexical"},
             {"mode": "hybrid", "importance_weight": 0.5}),
            windows,
        ):
            from_ram = c.search(query, limit=20, **options, **window)["hits"]
            from_rows = c.search(query, limit=20, **options, **window, **everything)["hits"]
            assert [h["id"] for h in from_ram] == [h["id"] for h in from_rows], (
                query, options, window)
            for a, b in zip(from_ram, from_rows, strict=True):
                assert abs(a["score"] - b["score"]) < 0.02
                assert a == {**b, "score": a["score"]}
            found = {h["id"] for h in from_ram}
            assert ids[3] not in found and expiring not in found
            if window in windows[:4] and ("band" in query or "rehearsal" in query):
                # the old memory: in a window or not
                assert (old in found) == ("since" not in window or window == windows[3])
            if "kind" in window:
                assert ids[2] in found or window["kind"] == "note" or "music" not in query
                assert all(h["kind"] == window["kind"] for h in from_ram)
            if "tags" in window:
                assert all("food" in h["tags"] for h in from_ram)
                if "until" in window and "rehearsal" in query:
                    assert old in found
        important = c.search("report Friday", importance_weight=0.5, explain=True)["hits"][0]
        assert important["id"] == ids[1] and important["signals"]["importance"] == 1.0
