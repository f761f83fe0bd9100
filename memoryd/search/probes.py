"""How many IVF partitions an ANN search probes, calibrated on the store's own queries.

Each probe scans one partition of the encrypted index, so a search's cost grows with the
probes; how many a search needs to find its true neighbours depends on how clustered the
vectors are. On a real model's vectors of the 1M bench texts, 10 probes found 0.9995 of
the exact top 10 (9.4 ms); on the `hash` embedder's sparse vectors 40 were needed for
0.98 (23 ms; docs/performance.md). So the probes start at the safe ``DEFAULT_PROBES`` and
follow the store: the catalog replays recent queries against ``REFERENCE_PROBES`` and
against each count of ``LADDER``, and keeps the smallest count that finds
``RECALL_NEEDED`` of the reference's exact top 10.

The queries must be real ones: stored vectors used as queries sit among their
near-duplicates in their own partition, and found their neighbours with any count tried
(5 to 40 probes, on both kinds of vector). Recent query vectors are kept in RAM only,
never written anywhere; a restart starts again from the default.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence

import numpy as np

from memoryd.search.exact import exact_similarities

DEFAULT_PROBES = 40  # before a calibration, and whenever none of the ladder is good enough
LADDER = (5, 10, 20, 40)  # never above the default: it is the recall the bench verified
REFERENCE_PROBES = 80
SAMPLE = 32  # queries a calibration replays
RECALL_NEEDED = 0.99  # of the reference's top 10, on average over the sample
TOP = 10
# Calibrate again after this many more searches (the queries, and the partitions' contents
# as compactions fold new rows in, drift); and after every training.
RECALIBRATE_AFTER = 1000


class ProbeTuner:
    """The probes ANN searches use, and the recent queries that calibrate them."""

    def __init__(self) -> None:
        self.probes = DEFAULT_PROBES
        self.recall: float | None = None  # the chosen count's, when calibrated
        self.calibrations = 0
        self._recent: deque[np.ndarray] = deque(maxlen=SAMPLE)
        self._since = 0  # queries recorded since the last calibration (or reset)
        self._calibrated = False

    def record(self, query: np.ndarray) -> None:
        self._recent.append(query)
        self._since += 1

    def due(self) -> bool:
        if len(self._recent) < SAMPLE:
            return False
        return not self._calibrated or self._since >= RECALIBRATE_AFTER

    def sample(self) -> list[np.ndarray]:
        return list(self._recent)

    def reset(self) -> None:
        """The partitions changed (a training): back to the default until calibrated."""
        self.probes, self.recall, self._calibrated = DEFAULT_PROBES, None, False

    def settle(self, probes: int, recall: float | None) -> None:
        self.probes, self.recall = probes, recall
        self._calibrated, self._since = True, 0
        self.calibrations += 1


def exact_top(query: np.ndarray, stored: Mapping[str, bytes | None], k: int = TOP) -> set[str]:
    """The ``k`` ids of ``stored`` (id → stored vector) most similar to ``query``."""
    scores = exact_similarities(query, stored.items())
    return set(sorted(scores, key=scores.__getitem__, reverse=True)[:k])


def mean_recalls(recalls: Mapping[int, Sequence[float]]) -> dict[int, float]:
    """Each probe count's mean recall over the queries (counts without any left out)."""
    return {p: sum(found) / len(found) for p, found in sorted(recalls.items()) if found}


def choose(means: Mapping[int, float]) -> tuple[int, float | None]:
    """The smallest probe count whose mean recall reaches ``RECALL_NEEDED``, with that
    mean; else ``DEFAULT_PROBES``, with its mean if it was measured."""
    for probes in sorted(means):
        if means[probes] >= RECALL_NEEDED:
            return probes, means[probes]
    return DEFAULT_PROBES, means.get(DEFAULT_PROBES)
