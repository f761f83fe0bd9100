"""The ANN probe calibration's rules: when it is due, what it chooses, what it compares."""

from __future__ import annotations

import random

import numpy as np

from memoryd.search import probes
from memoryd.search.probes import ProbeTuner


def vector(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_calibration_is_due_with_a_full_sample_then_again_after_many_searches():
    tuner = ProbeTuner()
    q = vector(1, 0)
    for _ in range(probes.SAMPLE - 1):
        tuner.record(q)
    assert not tuner.due() and tuner.probes == probes.DEFAULT_PROBES
    tuner.record(q)
    assert tuner.due()
    assert len(tuner.replay().queries) == probes.SAMPLE

    tuner.settle(probes.Choice(10, 1, 0.995))
    assert (tuner.probes, tuner.fetch_factor, tuner.recall, tuner.calibrations) == (10, 1, 0.995, 1)
    assert not tuner.due()
    for _ in range(probes.RECALIBRATE_AFTER - 1):
        tuner.record(q)
    assert not tuner.due()
    tuner.record(vector(0, 1))
    assert tuner.due()
    assert len(tuner.replay().queries) == probes.SAMPLE


def test_the_sample_is_drawn_evenly_from_every_query_not_the_latest():
    # 400 queries of one kind, then a sample's worth of another: the latest are all of
    # the second kind, an even sample holds each kind by its share (~86% of the first).
    tuner = ProbeTuner(random.Random(1))
    hard, easy = vector(1, 0), vector(0, 1)
    for _ in range(400):
        tuner.record(hard)
    for _ in range(probes.SAMPLE):
        tuner.record(easy)
    sample = tuner.replay().queries
    assert len(sample) == probes.SAMPLE
    assert sum(np.array_equal(q, hard) for q in sample) >= probes.SAMPLE * 3 // 4


def test_after_a_calibration_new_queries_replace_the_old_sample():
    tuner = ProbeTuner(random.Random(2))
    old, new = vector(1, 0), vector(0, 1)
    for _ in range(probes.SAMPLE):
        tuner.record(old)
    tuner.settle(probes.Choice(10, 1, 1.0))
    for _ in range(probes.RECALIBRATE_AFTER):
        tuner.record(new)
    assert tuner.due()
    sample = tuner.replay().queries
    # Each old query is left with odds SAMPLE / (SAMPLE + 1000): ~4 of 64.
    assert sum(np.array_equal(q, old) for q in sample) <= probes.SAMPLE // 8


def test_a_paused_replay_resumes_on_its_own_sample_until_settled_or_reset():
    tuner = ProbeTuner()
    for n in range(probes.SAMPLE):
        tuner.record(vector(1, n))
    replay = tuner.replay()
    replay.done = 5
    tuner.record(vector(0, 1))  # a user's search paused it
    assert tuner.replay() is replay and replay.done == 5
    assert not any(np.array_equal(q, vector(0, 1)) for q in replay.queries)
    tuner.settle(probes.Choice(10, 1, 1.0))
    assert tuner.replay() is not replay  # the next calibration starts afresh
    replay = tuner.replay()
    tuner.reset()  # a training: the partitions it measured are gone
    assert tuner.replay() is not replay


def test_a_reset_goes_back_to_the_default_and_calibrates_at_once():
    tuner = ProbeTuner()
    for _ in range(probes.SAMPLE):
        tuner.record(vector(1, 0))
    tuner.settle(probes.Choice(5, 1, 1.0))
    tuner.reset()
    assert (tuner.probes, tuner.fetch_factor, tuner.recall) == (
        probes.DEFAULT_PROBES, probes.DEFAULT_FETCH_FACTOR, None)
    assert tuner.due()  # the recent queries are still there


def test_choose_takes_the_fewest_probes_that_find_enough():
    full = probes.mean_recalls({5: [0.9, 1.0], 10: [1.0, 0.99], 20: [1.0, 1.0], 40: [1.0]})
    assert full == {5: 0.95, 10: 0.995, 20: 1.0, 40: 1.0}
    # Half the candidates would miss some at 10 probes: the index fetches twice the pool.
    half = {5: 0.9, 10: 0.98, 20: 1.0, 40: 1.0}
    assert probes.choose(full, half) == probes.Choice(10, 2, 0.995)
    # Enough in the first half too: the pool alone.
    assert probes.choose(full, {**half, 10: 0.99}) == probes.Choice(10, 1, 0.99)


def test_choose_keeps_the_defaults_when_no_count_finds_enough():
    default = probes.DEFAULT_PROBES
    full = probes.mean_recalls({10: [0.5], 20: [0.6], 40: [0.8], default: [0.97], 640: []})
    assert 640 not in full
    half = {10: 0.5, 20: 0.6, 40: 0.8, default: 0.97}
    assert probes.choose(full, half) == probes.Choice(default, 2, 0.97)
    assert probes.choose({}, {}) == probes.Choice(probes.DEFAULT_PROBES, 2, None)


def test_exact_top_ranks_by_the_exact_similarities_and_skips_unknown_ones():
    scored = [("far", 0.1), ("near", 0.9), ("unopened", None), ("mid", 0.7), ("tie", 0.7)]
    assert probes.exact_top(scored, k=2) == {"near", "mid"}  # ties by id
    assert probes.exact_top(scored, k=10) == {"near", "mid", "tie", "far"}
    assert probes.exact_top([], k=2) == set()
