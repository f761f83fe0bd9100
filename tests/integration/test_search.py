"""Search on real data: the LoCoMo dev conversations through the daemon, with the real
model. Covers each mode, the filters, neighbours within a thread and --explain, and checks
that hybrid search beats each signal alone."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterator

import pytest
from support import (
    INDEX_TIER,
    MODEL_DIR,
    REPO,
    SQL_TIER,
    DaemonProcess,
    short_tempdir,
    stop_any_daemon,
)

from memoryd.client import Client
from memoryd.config import resolve_paths

sys.path.insert(0, str(REPO / "scripts"))
from bench_locomo import evidence_ids, turns  # noqa: E402

LOCOMO = REPO.parent / "shared" / "bench" / "locomo-dev"


def load(client: Client) -> dict[str, list[dict]]:
    questions = {}
    for path in sorted(LOCOMO.glob("*.json")):
        convo = json.loads(path.read_text())
        namespace = f"locomo-{path.stem}"
        items = [dict(item, namespace=namespace) for item in turns(convo)]
        assert client.import_items(items)["failed"] == 0
        questions[namespace] = [
            q for q in convo["qa"] if q.get("category") in (1, 2, 3, 4) and evidence_ids(q)
        ]
    return questions


@pytest.fixture(scope="module")
def locomo() -> Iterator[tuple[Client, dict[str, list[dict]]]]:
    """One daemon with both dev conversations, shared by this module's tests."""
    home = short_tempdir("mdsearch")
    paths = resolve_paths({"MEMORYD_HOME": str(home)})
    daemon = DaemonProcess(paths, {"MEMORYD_HOME": str(home), "MEMORYD_MODEL_DIR": str(MODEL_DIR)})
    daemon.start()
    client = daemon.client(client_name="pytest-search")
    questions = load(client)
    yield client, questions
    client.close()
    daemon.stop()
    stop_any_daemon(paths)
    shutil.rmtree(home, ignore_errors=True)


def recall(client: Client, questions: dict[str, list[dict]], mode: str) -> dict[int, float]:
    totals = {5: 0.0, 10: 0.0}
    n = 0
    for namespace, qas in questions.items():
        for qa in qas:
            wanted = evidence_ids(qa)
            hits = client.search(qa["question"], namespace=namespace, limit=10, mode=mode)["hits"]
            found = [h["metadata"]["dia_id"] for h in hits]
            for k in totals:
                totals[k] += len(wanted & set(found[:k])) / len(wanted)
            n += 1
    return {k: v / n for k, v in totals.items()}


@pytest.mark.skipif(not LOCOMO.exists(), reason="needs ../shared/bench/locomo-dev")
def test_hybrid_beats_each_signal_on_locomo_dev(locomo):
    client, questions = locomo
    hybrid = recall(client, questions, "hybrid")
    lexical = recall(client, questions, "lexical")
    vector = recall(client, questions, "vector")
    assert hybrid[10] >= 0.75 and hybrid[5] >= 0.65, hybrid
    for k in (5, 10):
        assert hybrid[k] >= lexical[k] and hybrid[k] >= vector[k], (k, hybrid, lexical, vector)


@pytest.mark.skipif(not LOCOMO.exists(), reason="needs ../shared/bench/locomo-dev")
def test_filters_on_real_data(locomo):
    client, _ = locomo
    ns = "locomo-26"
    by_speaker = client.search("painting", namespace=ns, metadata={"speaker": "Melanie"}, limit=20)[
        "hits"
    ]
    assert by_speaker and all(h["metadata"]["speaker"] == "Melanie" for h in by_speaker)
    in_session = client.search("adoption", namespace=ns, thread="session-13")["hits"]
    assert in_session and all(h["thread"] == "session-13" for h in in_session)
    early = client.search("support group", namespace=ns, until="2023-06-01", limit=20)["hits"]
    assert early and all(h["created_at"] < "2023-06-01" for h in early)
    late = client.search("support group", namespace=ns, since="2023-06-01", limit=20)["hits"]
    assert late and all(h["created_at"] >= "2023-06-01" for h in late)
    assert {h["id"] for h in early}.isdisjoint({h["id"] for h in late})
    assert client.search("support group", namespace="locomo-none")["hits"] == []
    kinds = client.search("pottery", namespace=ns, kind="turn")["hits"]
    assert kinds and all(h["kind"] == "turn" for h in kinds)


@pytest.mark.skipif(not LOCOMO.exists(), reason="needs ../shared/bench/locomo-dev")
def test_each_mode_and_explain_on_real_data(locomo):
    client, _ = locomo
    ns = "locomo-26"
    for mode in ("hybrid", "lexical", "vector"):
        result = client.search(
            "When did Caroline go to the LGBTQ support group?",
            namespace=ns,
            mode=mode,
            explain=True,
            limit=10,
        )
        assert result["mode"] == mode and len(result["hits"]) == 10
        scores = [h["score"] for h in result["hits"]]
        assert scores == sorted(scores, reverse=True)
        for hit in result["hits"]:
            signals = hit["signals"]
            assert set(signals) == {"lexical", "vector", "neighbour", "fused"}
            assert signals["fused"] == pytest.approx(hit["score"], abs=1e-6)
            if mode == "lexical":
                assert signals["vector"]["score"] is None and signals["lexical"]["rank"]
            if mode == "vector":
                assert signals["lexical"]["score"] is None and signals["vector"]["rank"]
        found = [h["metadata"]["dia_id"] for h in result["hits"]]
        assert "D1:3" in found, (mode, found)  # the evidence turn of that question


def test_neighbours_within_a_thread(client: Client):
    """A reply that does not repeat the question's words is found through its thread."""
    thread = [
        ("Ana", "Where did you go on holiday last summer?"),
        ("Rui", "We went to Lisbon, it was lovely and sunny."),
        ("Ana", "Did you try the custard tarts?"),
        ("Rui", "Every single morning!"),
    ]
    ids = [
        client.add(text, thread="chat-1", position=n, metadata={"speaker": who}, namespace="chats")[
            "memory"
        ]["id"]
        for n, (who, text) in enumerate(thread)
    ]
    for n in range(20):  # unrelated chatter elsewhere
        client.add(f"Reminder number {n} about the weekly groceries", namespace="chats")
    # "holiday" and "summer" are only in the question; the reply is indexed with it.
    lexical = client.search("summer holiday", namespace="chats", mode="lexical", explain=True)[
        "hits"
    ]
    assert ids[1] in [h["id"] for h in lexical[:2]]
    # Hybrid spreads a share of a match to its neighbours, and says so.
    hybrid = client.search("custard tarts", namespace="chats", explain=True)["hits"]
    by_id = {h["id"]: h for h in hybrid}
    assert ids[3] in by_id and by_id[ids[3]]["signals"]["neighbour"] > 0
    # The speaker is part of what is indexed.
    assert client.search("Rui", namespace="chats", mode="lexical")["hits"][0]["id"] in (
        ids[1],
        ids[3],
        ids[2],
    )
    # Editing a turn re-indexes the one after it.
    client.update(ids[0], content="Where did you go for the winter break?")
    after = [
        h["id"] for h in client.search("winter break", namespace="chats", mode="lexical")["hits"]
    ]
    assert ids[1] in after
    assert ids[1] not in [
        h["id"] for h in client.search("summer holiday", namespace="chats", mode="lexical")["hits"]
    ]
    # Deleting it leaves the reply without that context.
    client.delete(ids[0])
    assert ids[1] not in [
        h["id"] for h in client.search("winter break", namespace="chats", mode="lexical")["hits"]
    ]


def test_phrases_and_prefixes(client: Client):
    a = client.add("The deployment pipeline failed on Friday")["memory"]["id"]
    b = client.add("Friday pipeline review, deployment went fine")["memory"]["id"]
    hits = [h["id"] for h in client.search('"pipeline failed"', mode="lexical")["hits"]]
    assert hits == [a]
    hits = [h["id"] for h in client.search("deploym*", mode="lexical")["hits"]]
    assert set(hits) == {a, b}


def test_in_memory_vectors_and_index_only_agree(make_daemon):
    """The RAM tier and the encrypted-index tier find the same things."""
    texts = [
        "Alice is allergic to peanuts",
        "The quarterly report is due on Friday",
        "Bob's favourite band is Radiohead",
        "The boiler needs servicing in March",
    ]
    found = {}
    for label, env in (("ram", {}), ("index", INDEX_TIER), ("sql", SQL_TIER)):
        daemon = make_daemon(env).start()
        with daemon.client() as c:
            for text in texts:
                c.add(text)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                status = c.status()
                tier = "ram" if label == "ram" else "index"
                if status["search_tier"] == tier and status["vector_index"]["pending"] == 0 and (
                    tier == "index" or status["ram_vectors"]["ready"]
                ):
                    break
                time.sleep(0.05)
            status = c.status()
            assert status["search_tier"] == tier
            assert status["ram_vectors"]["rows"] == (4 if tier == "ram" else 0)
            found[label] = [
                c.search(q, mode="vector")["hits"][0]["content"]
                for q in ("nut allergy", "music taste", "heating maintenance")
            ]
        daemon.stop()
    assert found["ram"] == found["index"] == found["sql"] == [texts[0], texts[2], texts[3]]


def test_recency_and_importance_are_optional_signals(client: Client):
    old = client.add("Team lunch at the noodle bar", created_at="2020-01-01",
                     importance=0.9)["memory"]["id"]
    new = client.add("Team lunch at the taco place", importance=0.1)["memory"]["id"]
    plain = client.search("team lunch", mode="lexical", explain=True)["hits"]
    assert "recency" not in plain[0]["signals"]  # off unless asked for
    recent = client.search("team lunch", mode="lexical", recency_weight=5.0,
                           explain=True)["hits"]
    assert recent[0]["id"] == new and recent[0]["signals"]["recency"] > 0.99
    important = client.search("team lunch", mode="lexical", importance_weight=5.0,
                              explain=True)["hits"]
    assert important[0]["id"] == old and important[0]["signals"]["importance"] == 0.9


def test_dates_in_the_query_become_a_time_preference(client: Client):
    may = client.add("Team offsite planning notes", created_at="2023-05-12")["memory"]["id"]
    client.add("Team offsite planning notes, second draft", created_at="2024-02-02")
    result = client.search("team offsite notes in May 2023", explain=True)
    assert result["time_preference"] == {"since": "2023-05-01T00:00:00.000Z",
                                         "until": "2023-06-01T00:00:00.000Z",
                                         "phrase": "in May 2023"}
    assert result["hits"][0]["id"] == may
    assert result["hits"][0]["signals"]["time"] == 1.0
    assert result["hits"][1]["signals"]["time"] == 0.0
    assert "time_preference" not in client.search("team offsite notes")
