"""Nothing readable on disk; wrong keys and passphrases are refused and change nothing."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
from support import ANN_TIER, INDEX_TIER

from memoryd.client import RemoteError
from memoryd.crypto import keys

CANARY = "CANARY-7f3a9c-zebra-quokka"
CANARY_EDIT = "CANARY-EDITED-51b2-walrus"


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def assert_not_on_disk(root: Path, needles: list[bytes]) -> int:
    """How many files were read; none holds a needle. A file that a running daemon
    removes between the listing and the read (LanceDB cleans up old transaction files
    after a training) is skipped: the walk after the daemon stops reads what is left."""
    checked = 0
    for path in files_under(root):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        checked += 1
        for needle in needles:
            assert needle not in data, f"{needle[:20]!r} found in {path}"
    return checked


def canary_needles(*texts: str) -> list[bytes]:
    needles = []
    for text in texts:
        needles += [text.encode(), text.encode("utf-16-le"), text.lower().encode()]
        needles += [part.encode() for part in text.split("-") if len(part) >= 5]
    return needles


@pytest.mark.parametrize("tier", ["ram", "index", "ann"])
def test_canary_never_reaches_disk(make_daemon, memoryd_home: Path, paths, tier: str):
    env = {"ram": {}, "index": INDEX_TIER, "ann": ANN_TIER}[tier]
    daemon = make_daemon(env).start()
    client = daemon.client()
    memory = client.add(f"My secret is {CANARY}", tags=[CANARY], namespace="private",
                        metadata={"note": CANARY, "path": f"/home/me/{CANARY}.md"},
                        thread=CANARY)["memory"]
    client.search(CANARY)
    client.search(f"what is {CANARY}?", mode="vector")
    client.update(memory["id"], content=f"Now it is {CANARY_EDIT}")
    # While running: database, WAL, vector index, logs, temp files.
    time.sleep(1.0)  # let the vector index flush
    if tier == "ann":  # and its ANN index be trained
        deadline = time.monotonic() + 30
        while not client.status()["vector_index"]["ann"]["trainings"]:
            assert time.monotonic() < deadline, client.status()["vector_index"]
            time.sleep(0.1)
    needles = canary_needles(CANARY, CANARY_EDIT)
    assert assert_not_on_disk(memoryd_home, needles) >= 4
    client.delete(memory["id"])
    client.close()
    daemon.stop()
    assert_not_on_disk(memoryd_home, needles)
    index_files = list(paths.vector_dir.rglob("*.lance"))
    if tier == "ram":
        assert not index_files, "the RAM tier writes no vector files"
    else:
        assert index_files, "the vector index was written"
    if tier == "ann":
        assert any("_indices" in p.parts for p in files_under(paths.vector_dir)), \
            "the ANN index was written"


def test_vectors_on_disk_are_not_the_plain_embedding(make_daemon, paths):
    from support import INDEX_TIER, MODEL_DIR

    daemon = make_daemon(INDEX_TIER).start()
    client = daemon.client()
    from memoryd.config import EmbeddingSettings
    from memoryd.embed.base import FastEmbedder

    text = "The lighthouse keeper feeds the cats at dawn"
    client.add(text)
    deadline = time.monotonic() + 20
    while client.status()["vector_index"]["rows"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    client.close()
    daemon.stop()
    vector = FastEmbedder(EmbeddingSettings(model_dir=str(MODEL_DIR))).embed([text])[0]
    # Any run of 3 consecutive float32 components of the true vector would give it away,
    # or of 4 float16 ones (the precision of the index's exact copies, encrypted).
    windows = [vector[i:i + 3].astype(np.float32).tobytes() for i in range(0, 384, 24)]
    windows += [vector[i:i + 4].astype(np.float16).tobytes() for i in range(0, 384, 24)]
    for path in files_under(paths.vector_dir):
        data = path.read_bytes()
        for window in windows:
            assert window not in data, path


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files_under(root) if p.suffix != ".lock"}


def test_wrong_key_is_refused_and_data_unchanged(daemon, client, paths, make_daemon):
    memory = client.add("Kept safe under the right key")["memory"]
    client.close()
    daemon.stop()
    before = snapshot(paths.data_dir)
    right_key = paths.key_file.read_bytes()
    paths.key_file.unlink()
    keys.create_key_file(paths.key_file)  # a different, valid key

    other = make_daemon().start(wait=False)
    assert other.proc is not None and other.proc.wait(60) == 1
    assert "data key does not open" in other.stderr_text()
    assert snapshot(paths.data_dir) == before

    paths.key_file.unlink()
    paths.key_file.write_bytes(right_key)
    paths.key_file.chmod(0o600)
    daemon.start()
    with daemon.client() as again:
        assert again.get(memory["id"])["content"] == "Kept safe under the right key"


def test_missing_key_file_with_existing_data_is_refused(daemon, client, paths, make_daemon):
    client.add("Needs its key")
    client.close()
    daemon.stop()
    paths.key_file.rename(paths.key_file.with_suffix(".bak"))
    other = make_daemon().start(wait=False)
    assert other.proc is not None and other.proc.wait(60) == 1
    assert "key file" in other.stderr_text() and "missing" in other.stderr_text()
    assert not paths.key_file.exists()  # no new key was made over the old data


def test_passphrase_lock_unlock_and_wrong_passphrase(daemon, client, paths, make_daemon):
    memory = client.add("Behind a passphrase")["memory"]
    result = client.call("key.passwd", {"new_passphrase": "correct horse"})
    assert result["protected"] is True
    assert "key" not in json.loads(paths.key_file.read_text())  # no plain key left
    client.close()
    daemon.stop()

    daemon.start()
    with daemon.client() as locked:
        assert locked.call("rpc.hello")["locked"] is True
        with pytest.raises(RemoteError) as err:
            locked.get(memory["id"])
        assert err.value.name == "locked"
        before = snapshot(paths.data_dir)
        key_before = paths.key_file.read_bytes()
        with pytest.raises(RemoteError) as err:
            locked.unlock("wrong horse")
        assert err.value.name == "bad_passphrase"
        assert snapshot(paths.data_dir) == before
        assert paths.key_file.read_bytes() == key_before
        assert locked.unlock("correct horse") == {"unlocked": True, "protected": True}
        assert locked.get(memory["id"])["content"] == "Behind a passphrase"
        # Changing the passphrase needs the old one.
        with pytest.raises(RemoteError) as err:
            locked.call("key.passwd", {"new_passphrase": "x", "old_passphrase": "nope"})
        assert err.value.name == "bad_passphrase"
        assert paths.key_file.read_bytes() == key_before
    daemon.stop()

    # MEMORYD_PASSPHRASE unlocks at start.
    auto = make_daemon({"MEMORYD_PASSPHRASE": "correct horse"}).start()
    with auto.client() as c:
        assert c.call("rpc.hello")["locked"] is False
        assert c.get(memory["id"])["content"] == "Behind a passphrase"
        c.call("key.passwd", {"new_passphrase": None, "old_passphrase": "correct horse"})
        assert json.loads(paths.key_file.read_text())["kind"] == "plain"
