"""The RAM index's id table agrees with a plain dict through appends, discards, merges
and renumbering, and its 16-byte keys sort and print as the id strings do."""

from __future__ import annotations

import random

import numpy as np
import pytest

from memoryd.model import new_ids
from memoryd.search import ids as ids_module
from memoryd.search.ids import IdTable, id_strings, keys, smallest


def random_ids(rng: random.Random, n: int) -> list[str]:
    """Random canonical ids, some ending in zero bytes (which ``S16`` drops on indexing)."""
    out = []
    for _ in range(n):
        digits = f"{rng.getrandbits(128):032x}"
        if rng.random() < 0.2:
            digits = digits[:28] + "0000"
        out.append(f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}")
    return out


def test_keys_print_and_sort_as_the_ids():
    rng = random.Random(1)
    ids = random_ids(rng, 2000) + new_ids(500)
    found = keys(ids)
    assert id_strings(found) == ids
    assert id_strings(np.sort(found)) == sorted(ids)
    for k in (1, 7, 100, 2500, 3000):
        assert id_strings(found[smallest(found, k)]) == sorted(ids)[:k]
    with pytest.raises(ValueError):
        keys(["not-a-memory"])
    with pytest.raises(ValueError):  # the shape of an id, not its digits
        keys(["zzzzzzzz-0000-7000-8000-000000000000"])


def test_the_table_agrees_with_a_dict(monkeypatch):
    monkeypatch.setattr(ids_module, "MERGE_MIN", 16)  # merges happen within the test
    rng = random.Random(2)
    table = IdTable()
    start = random_ids(rng, 300)
    table.load(start)
    model = {memory_id: n for n, memory_id in enumerate(start)}
    pool = start + random_ids(rng, 300)
    for step in range(400):
        batch = list(dict.fromkeys(rng.sample(pool, rng.randint(1, 12))))
        if step % 3 == 0:  # a delete (some ids were never added, or are gone already)
            gone = sorted(model[i] for i in batch if i in model)
            assert table.discard(batch).tolist() == gone
            for memory_id in batch:
                model.pop(memory_id, None)
        else:  # an add or an edit: a new ordinal each
            table.discard(batch)
            first = table.append(batch)
            model.update((memory_id, first + n) for n, memory_id in enumerate(batch))
        if step % 97 == 96:  # a rebuild keeps the live ordinals, in their order
            alive = np.array(sorted(model.values()), dtype=np.int64)
            table.renumber(alive)
            place = {old: new for new, old in enumerate(alive.tolist())}
            model = {i: place[o] for i, o in model.items()}
        assert len(table) == len(model)
        probe = rng.sample(pool, 40) + ["not-a-memory"]
        expected = [model.get(i, -1) for i in probe]
        assert table.ordinals(probe).tolist() == expected
        assert table.get(probe[0]) == model.get(probe[0])
        live = sorted(model.values())
        assert sorted(table.ids(np.array(live, dtype=np.int64))) == sorted(model)
    # A merge keeps only live ids in the sorted keys: edits and deletes leave none behind.
    table._merge()
    assert len(table._sorted) == len(model)
    assert table.ordinals(sorted(model)).tolist() == [model[i] for i in sorted(model)]
