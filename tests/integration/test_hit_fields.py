"""A search's hits say what the store says, whether their fields come from the RAM copy
(memoryd/search/hit_rows.py) or from DuckDB: after adds, an edit, a touch, a delete,
once writes pause, and after a restart."""

from __future__ import annotations

import time

import pytest
from support import wait_status

from memoryd.client import Client

TEXTS = [
    ("Alice is allergic to peanuts", {"tags": ["health"], "metadata": {"speaker": "Bob"}}),
    ("The quarterly report is due on Friday", {"kind": "fact", "importance": 0.9}),
    ("Bob's favourite band is Radiohead", {"source": "/notes/music.md"}),
    ("The boiler needs servicing in March", {"thread": "house", "position": 1}),
    ("Carol's flight to Lisbon leaves at 7am", {"namespace": "travel"}),
]
QUERIES = ["peanut allergy", "report due", "favourite band", "boiler servicing", "Lisbon flight"]


def assert_hits_agree(client: Client) -> int:
    """Every hit of every query and mode carries the fields ``memory.list`` reads from
    the table; returns how many hits were checked."""
    stored = {}
    for namespace in ("default", "travel"):
        stored.update({m["id"]: m for m in client.list(namespace=namespace)["memories"]})
    checked = 0
    for query in QUERIES:
        for mode in ("hybrid", "lexical", "vector"):
            for namespace in ("default", "travel"):
                for hit in client.search(query, mode=mode, namespace=namespace)["hits"]:
                    assert {k: hit[k] for k in stored[hit["id"]]} == stored[hit["id"]]
                    checked += 1
    return checked


@pytest.mark.parametrize("budget_mb", ["64", "0"])
def test_hits_say_what_the_store_says(make_daemon, budget_mb):
    env = {"MEMORYD_SEARCH_ROWS_RAM_MAX_MB": budget_mb}
    daemon = make_daemon(env).start()
    with daemon.client() as c:
        ids = [c.add(text, **fields)["memory"]["id"] for text, fields in TEXTS]
        status = wait_status(c, lambda s: s["lexical_in_ram"])
        assert status["hit_fields_in_ram"] is (budget_mb != "0")
        assert assert_hits_agree(c) >= 3 * len(QUERIES)

        c.update(ids[0], content="Alice is allergic to peanuts and walnuts", tags=["food"])
        c.get(ids[2])  # a read counts as an access
        c.delete(ids[1])
        assert assert_hits_agree(c)
        hit = c.search("peanut allergy", mode="lexical")["hits"][0]
        assert hit["content"].endswith("walnuts") and hit["tags"] == ["food"]
        band = c.search("favourite band", mode="lexical")["hits"][0]
        assert band["id"] == ids[2] and band["access_count"] == 1
        assert all(h["id"] != ids[1] for h in c.search("report due", mode="lexical")["hits"])

        # Once writes pause (2 s) the daemon copies the stale fields again (the copying
        # itself: tests/unit/test_hit_rows.py); the hits still agree after it.
        time.sleep(3)
        assert assert_hits_agree(c)
    daemon.stop()

    daemon = make_daemon(env).start()
    with daemon.client() as c:
        status = wait_status(c, lambda s: s["lexical_in_ram"])
        assert status["hit_fields_in_ram"] is (budget_mb != "0")
        assert assert_hits_agree(c)
