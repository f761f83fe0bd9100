"""Through a real daemon and the real model: once the RAM vectors reach
``search.first_pass_min_rows`` the daemon trains their first pass in the background
(memoryd/search/first_pass.py), searches go through it, and they answer exactly as a
daemon without it answers on the same store."""

from __future__ import annotations

import itertools
import time

from support import wait_status

NAMES = ["Alice", "Bob", "Carol", "Dan", "Erin", "Farid", "Grace", "Hiro"]
DOINGS = ["fixed the bike", "booked a flight to Lisbon", "baked sourdough bread",
          "planted tomatoes", "read a novel about whales", "repaired the boiler",
          "ran a half marathon", "learned the cello", "painted the kitchen",
          "adopted a grey cat"]
WHEN = ["on Monday", "last spring", "after work", "in the morning", "with a friend"]
TEXTS = [f"{name} {doing} {when} (note {n})" for n, (name, doing, when) in
         enumerate(itertools.islice(itertools.cycle(itertools.product(NAMES, DOINGS, WHEN)),
                                    1600))]
QUERIES = ["who went running?", "bread baking", "travel plans to Portugal", "music lessons",
           "home repairs", "gardening", "a new pet", "a book about the sea",
           "Grace in the morning", "what did Hiro do last spring?"]


def answers(client) -> list[list[tuple[str, float]]]:
    return [[(h["id"], h["score"]) for h in client.search(q, mode=mode, limit=10)["hits"]]
            for q in QUERIES for mode in ("vector", "hybrid")]


def test_searches_through_the_first_pass_answer_as_without_it(make_daemon):
    daemon = make_daemon({"MEMORYD_SEARCH_FIRST_PASS_MIN_ROWS": "1000"}).start()
    with daemon.client() as c:
        for start in range(0, len(TEXTS), 500):
            assert not c.import_items([{"content": t} for t in TEXTS[start:start + 500]]
                                      )["failed"]
        # Both daemons rank from RAM (int8 similarities), not from rows (exact ones).
        status = wait_status(c, lambda s: s["lexical_in_ram"] and (
            s["ram_vectors"]["first_pass"] or {}).get("ready"), timeout=60)
        assert status["ram_vectors"]["first_pass"]["trained_on_rows"] >= 1000
        with_pass = answers(c)
        first = c.status()["ram_vectors"]["first_pass"]
        # The real model's vectors are bounded tightly: the pass answered.
        assert first["searches"] > 0
        assert first["searches"] + first["fallbacks"] <= 2 * len(QUERIES)

    daemon.stop()
    daemon = make_daemon({"MEMORYD_SEARCH_FIRST_PASS_MIN_ROWS": "0"}).start()
    with daemon.client() as c:
        status = wait_status(c, lambda s: s["ram_vectors"]["ready"] and s["lexical_in_ram"],
                             timeout=60)
        assert status["ram_vectors"]["first_pass"]["ready"] is False
        assert answers(c) == with_pass
        assert c.status()["ram_vectors"]["first_pass"]["searches"] == 0


def test_searches_through_the_neighbour_graph_find_what_the_scan_finds(make_daemon):
    """Once searched ``CHECK_MIN_QUERIES`` times, a daemon above
    ``search.graph_min_rows`` builds the neighbour graph in the background, checks it on
    those queries and walks it for searches of every row (memoryd/search/graph.py); they
    find nearly what a daemon without it finds, with the same scores."""
    env = {"MEMORYD_SEARCH_FIRST_PASS_MIN_ROWS": "1000", "MEMORYD_SEARCH_GRAPH_MIN_ROWS": "1000"}
    daemon = make_daemon(env).start()
    with daemon.client() as c:
        for start in range(0, len(TEXTS), 500):
            assert not c.import_items([{"content": t} for t in TEXTS[start:start + 500]]
                                      )["failed"]
        wait_status(c, lambda s: s["lexical_in_ram"] and (
            s["ram_vectors"]["first_pass"] or {}).get("ready"), timeout=60)
        assert not c.status()["ram_vectors"]["graph"]["ready"]  # not searched yet
        for text in TEXTS[:40]:
            c.search(text.split(" (")[0], mode="vector", limit=10)
        graph = wait_status(c, lambda s: s["ram_vectors"]["graph"]["ready"],
                            timeout=60)["ram_vectors"]["graph"]
        assert graph["rows"] == len(TEXTS) and graph["recall"] >= 0.97
        with_graph = answers(c)
        assert c.status()["ram_vectors"]["graph"]["searches"] >= len(QUERIES)

    daemon.stop()
    daemon = make_daemon({**env, "MEMORYD_SEARCH_GRAPH_MIN_ROWS": "0"}).start()
    with daemon.client() as c:
        wait_status(c, lambda s: s["ram_vectors"]["ready"] and s["lexical_in_ram"], timeout=60)
        without = answers(c)
        assert c.status()["ram_vectors"]["graph"]["searches"] == 0
    pairs = list(zip(with_graph, without, strict=True))
    found = sum(len({i for i, _ in a} & {i for i, _ in b}) for a, b in pairs)
    assert found >= 0.95 * sum(len(b) for _, b in pairs)
    # A vector search's scores are the similarities the scan gives (hybrid ones are
    # fused over the candidates found, which may differ).
    for mine, theirs in pairs[::2]:
        scan = dict(theirs)
        assert all(scan[i] == score for i, score in mine if i in scan)


def test_a_daemon_without_a_model_builds_no_graph(make_daemon):
    """On the `hash` embedder (no model, and vectors that fail the graph's check) the
    daemon reports no graph to build (`min_rows` 0) and builds none, however searched."""
    daemon = make_daemon({"MEMORYD_EMBEDDING_PROVIDER": "hash",
                          "MEMORYD_SEARCH_FIRST_PASS_MIN_ROWS": "1000",
                          "MEMORYD_SEARCH_GRAPH_MIN_ROWS": "1000"}).start()
    with daemon.client() as c:
        for start in range(0, len(TEXTS), 500):
            assert not c.import_items([{"content": t} for t in TEXTS[start:start + 500]]
                                      )["failed"]
        wait_status(c, lambda s: (s["ram_vectors"]["first_pass"] or {}).get("ready"),
                    timeout=60)
        for text in TEXTS[:40]:
            c.search(text.split(" (")[0], mode="vector", limit=10)
        # Three rounds of the upkeep that builds graphs (every 2 s once writes pause).
        time.sleep(6)
        graph = c.status()["ram_vectors"]["graph"]
        assert graph["min_rows"] == 0 and graph["queries_seen"] >= 40
        assert not graph["ready"] and graph["failed_check_at_rows"] == 0
