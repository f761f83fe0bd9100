"""Combining lexical and vector evidence into one ranking. Pure functions.

Each signal is normalised over the candidate set (BM25 divided by the best BM25; cosine
min-max scaled over the candidates), then the two are mixed with a weight; a candidate
one signal did not find contributes 0 for it. In hybrid search a memory then receives a
share of the best score of its neighbours in its thread: the turn after a matching
question is often the answer. docs/search.md has the measurements behind the choices.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from memoryd.config import SearchSettings
from memoryd.search.timeexpr import TimeWindow

MIN_COSINE_SPREAD = 0.25


class Rankable(Protocol):
    """What ranking reads of a memory: a ``Memory`` row, or its rank facts in RAM."""

    @property
    def created_at(self) -> datetime | None: ...

    @property
    def importance(self) -> float: ...


@dataclass
class Ranked:
    id: str
    score: float
    lexical: float | None = None
    lexical_rank: int | None = None
    vector: float | None = None
    vector_rank: int | None = None
    neighbour: float | None = None
    recency: float | None = None
    importance: float | None = None
    in_time_window: bool | None = None

    def signals(self) -> dict[str, object]:
        out: dict[str, object] = {
            "lexical": {"score": self.lexical, "rank": self.lexical_rank},
            "vector": {"score": self.vector, "rank": self.vector_rank},
            "neighbour": self.neighbour,
        }
        # Present only when the query (or config) asked for them.
        if self.recency is not None:
            out["recency"] = round(self.recency, 6)
        if self.importance is not None:
            out["importance"] = self.importance
        if self.in_time_window is not None:
            out["time"] = 1.0 if self.in_time_window else 0.0
        out["fused"] = self.score
        return out


def _ranks(scores: Mapping[str, float]) -> dict[str, int]:
    ordered = sorted(scores, key=lambda i: (-scores[i], i))
    return {memory_id: rank for rank, memory_id in enumerate(ordered, start=1)}


def fuse(
    lexical: Mapping[str, float], vector: Mapping[str, float], mode: str, vector_weight: float = 0.5
) -> list[Ranked]:
    """Rank candidates; ``lexical`` holds BM25 scores, ``vector`` cosine similarities."""
    lex_rank, vec_rank = _ranks(lexical), _ranks(vector)
    if mode == "lexical":
        ids = list(lexical)
    elif mode == "vector":
        ids = list(vector)
    else:
        ids = list(dict.fromkeys([*lexical, *vector]))
    best_lex = max(lexical.values(), default=0.0)
    low_vec, high_vec = min(vector.values(), default=0.0), max(vector.values(), default=0.0)
    # Min-max scaling stretches whatever range the candidates span to 0..1; with a handful
    # of near-equal candidates that would turn a 0.01 cosine difference into a full point.
    spread = max(high_vec - low_vec, MIN_COSINE_SPREAD)
    weight = vector_weight if vector else 0.0
    out = []
    for memory_id in ids:
        lex, vec = lexical.get(memory_id), vector.get(memory_id)
        if mode == "lexical":
            score = lex or 0.0
        elif mode == "vector":
            score = vec or 0.0
        else:
            lex_n = lex / best_lex if lex and best_lex > 0 else 0.0
            if vec is None:
                vec_n = 0.0
            else:
                vec_n = (vec - low_vec) / spread
            score = weight * vec_n + (1.0 - weight) * lex_n
        out.append(
            Ranked(memory_id, score, lex, lex_rank.get(memory_id), vec, vec_rank.get(memory_id))
        )
    out.sort(key=lambda r: (-r.score, r.id))
    return out


def add_neighbour_evidence(
    ranked: list[Ranked], neighbours: Mapping[str, tuple[str | None, str | None]], weight: float
) -> list[Ranked]:
    """Give each memory ``weight`` times the best fused score among its thread
    neighbours (the memory before and after it). Neighbours that were not candidates
    join the ranking with that share alone."""
    by_id = {r.id: r for r in ranked}
    boost: dict[str, float] = {}
    for r in ranked:
        for other in neighbours.get(r.id, (None, None)):
            if other is not None:
                boost[other] = max(boost.get(other, 0.0), r.score)
    for memory_id, best in boost.items():
        entry = by_id.get(memory_id)
        if entry is None:
            entry = by_id[memory_id] = Ranked(memory_id, 0.0)
        entry.neighbour = best
    out = []
    for entry in by_id.values():
        if entry.neighbour:
            entry.score = entry.score + weight * entry.neighbour
        entry.score = round(entry.score, 6)
        out.append(entry)
    out.sort(key=lambda r: (-r.score, r.id))
    return out


def add_recency_and_importance(
    ranked: list[Ranked],
    ages_days: Mapping[str, float],
    importance: Mapping[str, float],
    recency_weight: float,
    importance_weight: float,
    half_life_days: float,
) -> list[Ranked]:
    """Optional signals, off by default: ``recency_weight`` times 0.5^(age/half-life)
    (age from ``created_at``, the time a memory is about) plus ``importance_weight``
    times the memory's importance (0..1), added to the fused score."""
    if recency_weight <= 0 and importance_weight <= 0:
        return ranked
    for entry in ranked:
        extra = 0.0
        if recency_weight > 0:
            age = max(0.0, ages_days.get(entry.id, 0.0))
            entry.recency = 0.5 ** (age / half_life_days) if half_life_days > 0 else 0.0
            extra += recency_weight * entry.recency
        if importance_weight > 0:
            entry.importance = importance.get(entry.id, 0.0)
            extra += importance_weight * entry.importance
        entry.score = round(entry.score + extra, 6)
    ranked.sort(key=lambda r: (-r.score, r.id))
    return ranked


def add_time_preference(
    ranked: list[Ranked], inside: Mapping[str, bool], weight: float
) -> list[Ranked]:
    """Add ``weight`` to memories whose time falls in the window the query named."""
    for entry in ranked:
        entry.in_time_window = inside.get(entry.id, False)
        if entry.in_time_window:
            entry.score = round(entry.score + weight, 6)
    ranked.sort(key=lambda r: (-r.score, r.id))
    return ranked


def rank(
    mode: str,
    lexical: Mapping[str, float],
    vector: Mapping[str, float],
    memories: Mapping[str, Rankable],
    neighbours: Mapping[str, tuple[str | None, str | None]] | None,
    window: TimeWindow | None,
    settings: SearchSettings,
    recency_weight: float,
    importance_weight: float,
    pool: int,
    now: datetime,
) -> list[Ranked]:
    """Every ranking step in order: fusion; in hybrid search a share of the thread
    neighbours' scores and the time the query names; then the optional recency and
    importance. ``memories`` holds every candidate and fetched neighbour."""
    ranked = fuse(lexical, vector, mode, settings.vector_weight)
    if neighbours is not None and ranked:
        ranked = add_neighbour_evidence(ranked[:pool], neighbours, settings.neighbour_weight)
    if window is not None and settings.time_weight > 0:
        inside = {r.id: window.contains(memories[r.id].created_at) for r in ranked}
        ranked = add_time_preference(ranked, inside, settings.time_weight)
    if recency_weight > 0 or importance_weight > 0:
        ages = {
            r.id: (now - created).total_seconds() / 86400
            for r in ranked
            if (created := memories[r.id].created_at) is not None
        }
        importance = {r.id: memories[r.id].importance for r in ranked}
        ranked = add_recency_and_importance(
            ranked,
            ages,
            importance,
            recency_weight,
            importance_weight,
            settings.recency_half_life_days,
        )
    return ranked
