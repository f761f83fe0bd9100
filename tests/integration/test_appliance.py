"""The appliance end to end: a real daemon, real socket, real DuckDB and LanceDB files."""

from __future__ import annotations

import os
import shutil
import stat
import time

import pytest
from support import INDEX_TIER, UNFLUSHED_INDEX_TIER

from memoryd.client import Client, RemoteError

PARAPHRASE_MEMORIES = [
    "Alice is allergic to peanuts",
    "The quarterly report is due on Friday",
    "Bob's favourite band is Radiohead",
]


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def test_paraphrase_finds_target_first(client: Client):
    ids = {text: client.add(text)["memory"]["id"] for text in PARAPHRASE_MEMORIES}
    hits = client.search("Which foods should I avoid when cooking for Alice?")["hits"]
    assert hits[0]["id"] == ids["Alice is allergic to peanuts"]


def test_paraphrase_with_no_shared_words_uses_meaning(client: Client):
    ids = {text: client.add(text)["memory"]["id"] for text in PARAPHRASE_MEMORIES}
    # Not one word in common with any stored memory: only the vector signal can find it.
    hits = client.search("nut allergy", mode="vector")["hits"]
    assert hits[0]["id"] == ids["Alice is allergic to peanuts"]
    result = client.search("what music does he like?", explain=True)
    assert result["hits"][0]["id"] == ids["Bob's favourite band is Radiohead"]
    assert result["hits"][0]["signals"]["lexical"]["score"] is None


def test_rare_keyword_found_first(client: Client):
    for text in PARAPHRASE_MEMORIES:
        client.add(text)
    target = client.add("Deploy failed with error ERR_7731 on the staging cluster")["memory"]
    client.add("Deploy succeeded on the production cluster after a retry")
    hits = client.search("ERR_7731")["hits"]
    assert hits[0]["id"] == target["id"]


def test_everything_survives_restart(daemon, client: Client):
    memory = client.add("The spare key is under the blue flowerpot", tags=["home"],
                        metadata={"room": "porch"}, namespace="house")["memory"]
    client.update(memory["id"], importance=0.9)
    client.close()
    daemon.restart()
    with daemon.client() as again:
        stored = again.get(memory["id"])
        assert stored["content"] == memory["content"]
        assert stored["tags"] == ["home"] and stored["metadata"] == {"room": "porch"}
        assert stored["importance"] == 0.9
        hits = again.search("where is the spare key hidden?", namespace="house")["hits"]
        assert hits[0]["id"] == memory["id"]
        assert [e["action"] for e in again.history(memory["id"])] == ["add", "update"]


@pytest.mark.parametrize("tier", ["ram", "index"])
def test_kill_9_after_acknowledged_add_loses_nothing(make_daemon, tier: str):
    daemon = make_daemon(INDEX_TIER if tier == "index" else {}).start()
    with daemon.client() as client:
        memory = client.add("Acknowledged memories survive a crash")["memory"]
    daemon.kill9()  # no chance to flush the vector index or checkpoint
    daemon.start()
    with daemon.client() as again:
        assert again.get(memory["id"])["content"] == memory["content"]
        hits = again.search("what survives a crash?", mode="vector")["hits"]
        assert hits and hits[0]["id"] == memory["id"]
        rows = "vector_index" if tier == "index" else "ram_vectors"
        status = wait_for(lambda: (s := again.status())[rows]["rows"] == 1 and s)
        assert status["search_tier"] == tier and status["waiting_for_embedding"] == 0


def test_restart_reconciles_unflushed_adds_and_deletes(make_daemon, paths):
    """A crash between DuckDB commits and the index flush leaves the index with a vector
    of a deleted memory and without one of an added memory: the start-up reconcile
    removes the first and adds the second before any search is answered."""
    daemon = make_daemon(UNFLUSHED_INDEX_TIER).start()
    with daemon.client() as client:
        kept = client.add("The lighthouse lamp is cleaned on Mondays")["memory"]
        doomed = client.add("The ferry timetable changes in October")["memory"]
        # "ready": the start-up reconcile is over; its last flush would write the delete.
        wait_for(lambda: (s := client.status()["vector_index"])["rows"] == 2 and s["ready"])
        client.delete(doomed["id"])
        late = client.add("The harbour master retires next spring")["memory"]
    daemon.kill9()  # within the flush delay
    daemon.start()
    with daemon.client() as again:
        ferry = again.search("when does the ferry timetable change?", mode="vector")["hits"]
        assert doomed["id"] not in [h["id"] for h in ferry]
        harbour = again.search("who is retiring from the harbour?", mode="vector")["hits"]
        assert harbour and harbour[0]["id"] == late["id"]
        status = wait_for(lambda: (s := again.status())["vector_index"]["rows"] == 2 and s)
        assert status["vector_index"]["pending"] == 0
        ids = {h["id"] for h in again.search("lighthouse ferry harbour", mode="vector")["hits"]}
        assert ids == {kept["id"], late["id"]}
    # The row count alone would match without a reconcile (one in, one out).
    log = (paths.log_dir / "memoryd.log").read_text()
    assert "vector index reconciled: 1 added, 1 removed" in log


def test_clean_stop_seals_the_index_and_the_seal_is_checked(make_daemon, paths):
    """A clean stop seals the index: the next start trusts it and skips reading every id
    back. A seal never outlives a start (a crash later must reconcile), and one that no
    longer describes the index (changed while the daemon was stopped) is not trusted."""
    import lancedb

    log_file = paths.log_dir / "memoryd.log"
    daemon = make_daemon(UNFLUSHED_INDEX_TIER).start()
    with daemon.client() as client:
        kept = client.add("The lighthouse lamp is cleaned on Mondays")["memory"]
        doomed = client.add("The ferry timetable changes in October")["memory"]
        # Stopped before its start-up reconcile ends, the daemon must not seal (and does
        # not): "ready" says the reconcile is over.
        wait_for(lambda: (s := client.status()["vector_index"])["rows"] == 2 and s["ready"])
    daemon.stop()
    daemon.start()
    with daemon.client() as again:
        hits = again.search("when is the lamp cleaned?", mode="vector")["hits"]
        assert hits[0]["id"] == kept["id"]
        assert log_file.read_text().count("reconcile skipped") == 1
        again.delete(doomed["id"])
        late = again.add("The harbour master retires next spring")["memory"]
    daemon.kill9()  # within the flush delay: the index still has doomed, lacks late
    daemon.start()
    with daemon.client() as third:
        ids = {h["id"] for h in third.search("lighthouse ferry harbour", mode="vector")["hits"]}
        assert ids == {kept["id"], late["id"]}
    log = log_file.read_text()
    assert log.count("reconcile skipped") == 1
    assert "vector index reconciled: 1 added, 1 removed" in log
    daemon.stop()  # sealed again

    # Changed behind the daemon's back: the index loses a vector while it is stopped.
    table = lancedb.connect(str(paths.vector_dir)).open_table("vectors")
    table.delete(f"id = '{late['id']}'")
    daemon.start()
    with daemon.client() as fourth:
        hits = fourth.search("who is retiring from the harbour?", mode="vector")["hits"]
        assert hits and hits[0]["id"] == late["id"]
    log = log_file.read_text()
    assert log.count("reconcile skipped") == 1
    assert "vector index reconciled: 1 added, 0 removed" in log


def test_deleted_vector_folder_is_rebuilt(make_daemon, paths):
    daemon = make_daemon(INDEX_TIER).start()
    client = daemon.client()
    ids = [client.add(text)["memory"]["id"] for text in PARAPHRASE_MEMORIES]
    wait_for(lambda: client.status()["vector_index"]["rows"] == 3)
    client.close()
    daemon.stop()
    shutil.rmtree(paths.vector_dir)
    daemon.start()
    with daemon.client() as again:
        wait_for(lambda: again.status()["vector_index"]["rows"] == 3)
        hits = again.search("peanut allergy", mode="vector")["hits"]
        assert hits[0]["id"] == ids[0]


def test_searches_answer_from_words_while_the_index_is_rebuilt(make_daemon, paths):
    """A rebuild at start (a lost index, or one of an older layout) takes minutes at 1M
    memories: hybrid searches answer from words meanwhile and say so, vector searches
    say why they cannot, and both are complete once the index is ready."""
    hashed = {**INDEX_TIER, "MEMORYD_EMBEDDING_PROVIDER": "hash"}
    daemon = make_daemon(hashed).start()
    client = daemon.client()
    target = client.add("The lighthouse keeper feeds the cats at dawn")["memory"]["id"]
    for start in range(0, 30_000, 1_000):  # enough that the rebuild takes seconds
        client.import_items([{"content": f"filler note {n} about nothing much"}
                             for n in range(start, start + 1_000)])
    wait_for(lambda: client.status()["vector_index"]["rows"] == 30_001, timeout=120)
    client.close()
    daemon.stop()
    shutil.rmtree(paths.vector_dir)
    daemon = make_daemon(hashed).start()
    with daemon.client() as again:
        wait_for(lambda: again.status()["vector_index"]["rebuilding"], interval=0.01)
        during = again.search("lighthouse keeper cats")
        with pytest.raises(RemoteError) as err:
            again.search("lighthouse keeper cats", mode="vector")
        assert again.status()["vector_index"]["rebuilding"]  # all of it during the rebuild
        assert during["degraded"] == "vector index rebuilding"
        assert during["hits"][0]["id"] == target
        assert err.value.name == "unavailable" and "rebuilding" in str(err.value)
        wait_for(lambda: again.status()["vector_index"]["ready"], timeout=120)
        assert not again.status()["vector_index"]["rebuilding"]
        after = again.search("lighthouse keeper cats")
        assert "degraded" not in after and after["hits"][0]["id"] == target
        assert again.search("lighthouse keeper cats", mode="vector")["hits"][0]["id"] == target


def test_corrupt_vector_index_is_rebuilt(make_daemon, paths):
    daemon = make_daemon(INDEX_TIER).start()
    client = daemon.client()
    target = client.add("Alice is allergic to peanuts")["memory"]["id"]
    wait_for(lambda: client.status()["vector_index"]["rows"] == 1)
    client.close()
    daemon.stop()
    for manifest in paths.vector_dir.rglob("*.manifest"):
        manifest.write_bytes(b"garbage")
    daemon.start()
    with daemon.client() as again:
        wait_for(lambda: again.status()["vector_index"]["rows"] == 1)
        assert again.search("nut allergy", mode="vector")["hits"][0]["id"] == target


def test_socket_and_directory_modes(daemon, paths):
    assert stat.S_IMODE(os.stat(paths.runtime_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(paths.socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(paths.key_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(paths.config_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(paths.data_dir).st_mode) == 0o700
    for path in paths.data_dir.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_second_daemon_on_same_data_dir_refused(daemon, make_daemon):
    second = make_daemon().start(wait=False)
    assert second.proc is not None
    assert second.proc.wait(60) == 1
    assert "already running" in second.stderr_text()
    # The first one is untouched.
    with daemon.client() as c:
        assert c.call("rpc.hello")["name"] == "memoryd"


def test_stale_socket_is_replaced(paths, make_daemon):
    first = make_daemon().start()
    first.kill9()
    assert paths.socket.exists()  # left behind by the crash
    second = make_daemon().start()
    with second.client() as c:
        assert c.call("rpc.hello")["locked"] is False


def test_sigterm_finishes_inflight_writes(daemon):
    import threading

    ids: list[str] = []

    def writer():
        with daemon.client() as c:
            items = [{"content": f"bulk memory number {n}"} for n in range(400)]
            ids.extend(r["id"] for r in c.import_items(items)["results"])

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.3)  # the import is under way
    assert daemon.stop() == 0
    thread.join(30)
    daemon.start()
    with daemon.client() as c:
        stored = c.stats()["memories"]
        # Whatever was acknowledged is there; the import either finished or never started.
        assert stored == len(ids)


def test_history_records_every_change(client: Client):
    metadata = {"speaker": "Zoë \"Z\" 東京", "nested": [1, 2.5, {"none": None, "t": True}]}
    memory = client.add("first\tversion ✓", tags=["a"], metadata=metadata, importance=0.3)[
        "memory"
    ]
    client.update(memory["id"], content="second version", tags=["a", "b"])
    events = client.history(memory["id"])
    assert [e["action"] for e in events] == ["add", "update"]
    assert events[0]["actor"] == "pytest"
    # The add event holds the fields as they were stored, JSON values intact.
    assert events[0]["changes"] == {
        "content": "first\tversion ✓",
        "namespace": "default",
        "kind": "note",
        "tags": ["a"],
        "metadata": metadata,
        "importance": 0.3,
    }
    assert events[1]["changes"]["content"] == {
        "old": "first\tversion ✓",
        "new": "second version",
    }
    assert events[1]["changes"]["tags"] == {"old": ["a"], "new": ["a", "b"]}
    client.delete(memory["id"])
    events = client.history(memory["id"])
    assert [e["action"] for e in events] == ["add", "update", "delete"]
    # Deleting erases the content the history held.
    assert all(e["changes"] is None for e in events)
    with pytest.raises(RemoteError) as err:
        client.get(memory["id"])
    assert err.value.name == "not_found"


def test_edit_reindexes_words_and_meaning(client: Client):
    memory = client.add("The meeting is in room 101")["memory"]
    client.update(memory["id"], content="The dentist appointment moved to Tuesday")
    assert client.search("room 101", mode="lexical")["hits"] == []
    assert client.search("dentist", mode="lexical")["hits"][0]["id"] == memory["id"]
    hits = client.search("when do I see the dentist?", mode="vector")["hits"]
    assert hits[0]["id"] == memory["id"]


def test_duplicate_in_same_namespace_returns_existing(client: Client):
    first = client.add("Remember the milk")
    again = client.add("Remember the milk")
    elsewhere = client.add("Remember the milk", namespace="other")
    assert again["duplicate"] is True and again["memory"]["id"] == first["memory"]["id"]
    assert elsewhere["duplicate"] is False and elsewhere["memory"]["id"] != first["memory"]["id"]
    assert client.stats()["memories"] == 2


def test_created_at_settable_and_filters(client: Client):
    old = client.add("Trip to Lisbon", created_at="2023-05-07T10:00:00Z", kind="event",
                     tags=["travel"], metadata={"speaker": "Ana", "n": 3}, namespace="trips",
                     thread="s1", position=4)["memory"]
    new = client.add("Trip to Porto", created_at="2024-02-01", kind="event",
                     tags=["travel", "family"], metadata={"speaker": "Rui"},
                     namespace="trips")["memory"]
    assert old["created_at"] == "2023-05-07T10:00:00.000Z"
    assert old["thread"] == "s1" and old["position"] == 4

    def found(**filters):
        return [h["id"] for h in client.search("trip", mode="lexical", **filters)["hits"]]

    assert set(found(namespace="trips")) == {old["id"], new["id"]}
    assert found(since="2024-01-01") == [new["id"]]
    assert found(until="2024-01-01") == [old["id"]]
    assert found(tags=["family"]) == [new["id"]]
    assert found(metadata={"speaker": "Ana"}) == [old["id"]]
    assert found(metadata={"n": 3}) == [old["id"]]
    assert found(thread="s1") == [old["id"]]
    assert found(kind="note") == []
    assert found(namespace="elsewhere") == []


def test_list_and_export_page_through_everything(client: Client):
    ids = [r["id"] for r in client.import_items(
        [{"content": f"memory {n}", "namespace": "pages"} for n in range(23)])["results"]]
    seen, after = [], None
    while True:
        page = client.list(namespace="pages", limit=10, after=after)
        seen += [m["id"] for m in page["memories"]]
        after = page["next"]
        if not after:
            break
    assert seen == list(reversed(ids))  # newest first
    assert [m["id"] for m in client.export(namespace="pages", page_size=7)] == ids


def test_import_keeps_good_items_and_reports_bad_ones(client: Client):
    result = client.import_items([
        {"content": "good one"},
        {"content": ""},
        {"content": "good two", "created_at": "not a date"},
        {"content": "good three", "tags": ["x"], "importance": 0.2},
        "not an object",
        {"text": "wrong field"},
    ])
    assert (result["added"], result["duplicates"], result["failed"]) == (2, 0, 4)
    errors = {r["index"]: r["error"]["data"]["name"] for r in result["results"] if "error" in r}
    assert errors == {1: "invalid_params", 2: "invalid_params", 4: "invalid_params",
                      5: "invalid_params"}
    assert client.stats()["memories"] == 2


def test_expired_memories_are_not_found(client: Client):
    client.add("This offer expires", expires_at="2000-01-01T00:00:00Z")
    keep = client.add("This offer stays")["memory"]
    hits = client.search("offer", mode="lexical")["hits"]
    assert [h["id"] for h in hits] == [keep["id"]]


def test_search_modes_and_explain(client: Client):
    ids = {text: client.add(text)["memory"]["id"] for text in PARAPHRASE_MEMORIES}
    lexical = client.search("report due", mode="lexical", explain=True)
    assert lexical["mode"] == "lexical"
    hit = lexical["hits"][0]
    assert hit["id"] == ids["The quarterly report is due on Friday"]
    assert hit["signals"]["lexical"]["rank"] == 1 and hit["signals"]["vector"]["score"] is None
    vector = client.search("peanut allergy", mode="vector", explain=True, limit=1)
    assert len(vector["hits"]) == 1 and vector["hits"][0]["signals"]["vector"]["rank"] == 1
    hybrid = client.search("report due", explain=True)["hits"][0]
    assert hybrid["signals"]["lexical"]["score"] > 0 and hybrid["signals"]["vector"]["score"] > 0
    assert 0 < hybrid["signals"]["fused"] <= 1
