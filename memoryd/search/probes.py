"""How many IVF partitions an ANN search probes, calibrated on the store's own queries.

Each probe scans one partition of the encrypted index, so a search's cost grows with the
probes; how many a search needs to find its true neighbours depends on how clustered the
vectors are. On a real model's vectors of the 1M bench texts, in partitions of 8,192
rows, 10 probes found 0.9995 of the exact top 10 (9.4 ms); on the `hash` embedder's
sparse vectors 40 were needed for 0.98 (23 ms; docs/performance.md). Partitions are now
of 1,024 rows (``search.ann_partition_rows``), eight times as many, and on the hash
vectors 120 of them found 0.990 in 8.7 ms where 80 of 2,048 rows found 0.993 in 11.8-12.3
and 40 of 8,192 rows 0.988 in 15.1 (docs/performance-log.md). So the probes start at
the safe ``DEFAULT_PROBES`` and follow the store: the catalog replays a sample of its
queries against ``REFERENCE_PROBES`` and against each count of ``LADDER``, and keeps the
smallest count that finds ``RECALL_NEEDED`` of the reference's exact top 10.

The sample is drawn evenly from every query since the last calibration, not the latest
ones: how many probes a query needs depends on what it asks. On the 1M bench store (in
partitions of 2,048 rows), 40 queries of one kind ("what did <name> think of <thing>?")
found all of the reference's top 10 at 10 probes, while the bench's 200 mixed queries
needed 80 to find 0.989 of it; calibrated on the 32 latest queries, which were those 40,
searches probed 10 partitions and vector recall@10 fell from 0.985 to 0.759
(docs/performance-log.md, *The probe calibration's sample*).

The same replay sets how many candidates the index returns for the exact re-rank, each
with its encrypted exact copy (``memoryd.crypto.exact_copy``). The index orders them by
distance between ciphertexts, which SAP's noise blurs, so by default it returns twice a
search's pool (``DEFAULT_FETCH_FACTOR``); when the first half of the candidates already
holds ``RECALL_NEEDED`` of the reference's top 10 at the chosen probes, it returns the
pool alone. On a real model's 1M vectors the first 50 held 0.993 of the exact top 10 at
10 probes, and the first 100 held 0.995.

The queries must be real ones: stored vectors used as queries sit among their
near-duplicates in their own partition, and found their neighbours with any count tried
(5 to 40 probes of 8,192 rows, on both kinds of vector). The sampled query vectors are kept
in RAM only, never written anywhere. The choice (three numbers) is kept in the encrypted
database with the ANN index's id, so that a restart of an unchanged index starts with it
instead of the default (``VectorCatalog.restore_calibration``).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

import numpy as np

DEFAULT_PROBES = 120  # before a calibration, and whenever none of the ladder is good enough
LADDER = (10, 20, 40, 80, 120)  # never above the default: it is the recall the bench verified
REFERENCE_PROBES = 320
# Candidates the index returns, as a multiple of the search's pool: 2 unless calibrated to 1.
DEFAULT_FETCH_FACTOR = 2
# Queries a calibration replays, drawn evenly from those since the last one. How many of
# the reference's top 10 a count finds varies widely from query to query (on the 1M bench
# store in 2,048-row partitions, at 40 probes: all of them for 80% of the queries, 8 or
# fewer for 10%), so a sample of 32 of the bench's queries chose 40 probes, too few, ~3%
# of the time; one of 64, ~0.2%.
SAMPLE = 64
RECALL_NEEDED = 0.99  # of the reference's top 10, on average over the sample
TOP = 10
# Calibrate again after this many more searches (the queries, and the partitions' contents
# as compactions fold new rows in, drift); and after every training.
RECALIBRATE_AFTER = 1000

K = TypeVar("K")


@dataclass
class Replay:
    """A calibration under way: its sample of queries and, for those replayed so far, the
    share of the reference's top 10 each probe count found in all its candidates
    (``full``) and in the first half of them (``half``). It pauses whenever users search
    and resumes where it stopped, so that it never competes with them for the cores."""

    queries: list[np.ndarray]
    full: dict[int, list[float]] = field(default_factory=lambda: {p: [] for p in LADDER})
    half: dict[int, list[float]] = field(default_factory=lambda: {p: [] for p in LADDER})
    done: int = 0  # queries replayed
    seconds: float = 0.0  # spent replaying them


class ProbeTuner:
    """The probes ANN searches use, and the sample of queries that calibrates them."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.probes = DEFAULT_PROBES
        self.fetch_factor = DEFAULT_FETCH_FACTOR
        self.recall: float | None = None  # the chosen setting's, when calibrated
        self.calibrations = 0
        # An even sample of the queries since the last calibration (reservoir sampling):
        # each of the ``_seen`` queries is in it with the same chance.
        self._sample: list[np.ndarray] = []
        self._seen = 0
        self._rng = rng or random.Random()
        self._since = 0  # queries recorded since the last calibration (or reset)
        self._calibrated = False
        self._replay: Replay | None = None

    def record(self, query: np.ndarray) -> None:
        self._since += 1
        self._seen += 1
        if len(self._sample) < SAMPLE:
            self._sample.append(query)
            return
        slot = self._rng.randrange(self._seen)
        if slot < SAMPLE:
            self._sample[slot] = query

    def due(self) -> bool:
        if len(self._sample) < SAMPLE:
            return False
        return not self._calibrated or self._since >= RECALIBRATE_AFTER

    def replay(self) -> Replay:
        """The calibration under way, or a new one on the sample as it stands."""
        if self._replay is None:
            self._replay = Replay(list(self._sample))
        return self._replay

    def reset(self) -> None:
        """The partitions changed (a training): back to the defaults until calibrated."""
        self.probes, self.fetch_factor = DEFAULT_PROBES, DEFAULT_FETCH_FACTOR
        self.recall, self._calibrated, self._replay = None, False, None

    @property
    def calibrated(self) -> bool:
        return self._calibrated

    def restore(self, chosen: Choice) -> None:
        """Put a calibration in force (this run's, or one an earlier run made for the
        same index) until the next is due: ``RECALIBRATE_AFTER`` searches on, or after a
        training."""
        self.probes, self.fetch_factor, self.recall = chosen
        self._calibrated, self._since, self._replay = True, 0, None

    def settle(self, chosen: Choice) -> None:
        self.restore(chosen)
        # The next sample starts from this one, as if it were the first queries of the
        # new period: each later query replaces one of it with falling odds, so that by
        # the next calibration (``RECALIBRATE_AFTER`` queries on) ~6% of it is left, and
        # a training meanwhile still finds a full sample to calibrate on at once.
        self._seen = len(self._sample)
        self.calibrations += 1


class Choice(NamedTuple):
    probes: int
    fetch_factor: int
    recall: float | None  # mean share of the reference's top 10 found, if measured


def exact_top(scored: Iterable[tuple[str, float | None]], k: int = TOP) -> set[str]:
    """The ``k`` ids of ``scored`` (id and exact similarity to the query, as the index
    returns its candidates with their exact copies) with the highest similarity; ties
    by id, and ids without a similarity (a copy that did not open) left out."""
    known = [(memory_id, score) for memory_id, score in scored if score is not None]
    known.sort(key=lambda pair: (-pair[1], pair[0]))
    return {memory_id for memory_id, _ in known[:k]}


def mean_recalls(recalls: Mapping[K, Sequence[float]]) -> dict[K, float]:
    """Each setting's mean recall over the queries (settings without any left out)."""
    return {k: sum(found) / len(found) for k, found in recalls.items() if found}


def choose(full: Mapping[int, float], half: Mapping[int, float]) -> Choice:
    """From the mean recalls of each probe count with every candidate (``full``) and with
    the first half of them (``half``): the smallest count whose full recall reaches
    ``RECALL_NEEDED``, and the pool alone if its half does too. Else the defaults, with
    the default count's full recall if it was measured."""
    for probes in sorted(full):
        if full[probes] >= RECALL_NEEDED:
            if half.get(probes, 0.0) >= RECALL_NEEDED:
                return Choice(probes, 1, half[probes])
            return Choice(probes, DEFAULT_FETCH_FACTOR, full[probes])
    return Choice(DEFAULT_PROBES, DEFAULT_FETCH_FACTOR, full.get(DEFAULT_PROBES))
