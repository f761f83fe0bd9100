"""Combining lexical and vector evidence into one ranking. Pure functions.

Each signal is normalised over the candidate set (BM25 divided by the best BM25; cosine
min-max scaled), then the two are mixed with a weight. A candidate one signal did not find
contributes 0 for it. Tuning lives in the search-quality work; this is the honest baseline.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Ranked:
    id: str
    score: float
    lexical: float | None
    lexical_rank: int | None
    vector: float | None
    vector_rank: int | None

    def signals(self) -> dict[str, object]:
        return {
            "lexical": {"score": self.lexical, "rank": self.lexical_rank},
            "vector": {"score": self.vector, "rank": self.vector_rank},
            "fused": self.score,
        }


def _ranks(scores: dict[str, float]) -> dict[str, int]:
    ordered = sorted(scores, key=lambda i: (-scores[i], i))
    return {memory_id: rank for rank, memory_id in enumerate(ordered, start=1)}


def fuse(
    lexical: dict[str, float], vector: dict[str, float], mode: str, vector_weight: float = 0.5
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
    spread = high_vec - low_vec
    out = []
    for memory_id in ids:
        lex, vec = lexical.get(memory_id), vector.get(memory_id)
        if mode == "lexical":
            score = lex or 0.0
        elif mode == "vector":
            score = vec or 0.0
        else:
            lex_n = (lex / best_lex) if lex and best_lex > 0 else 0.0
            if vec is None:
                vec_n = 0.0
            elif spread > 1e-9:
                vec_n = (vec - low_vec) / spread
            else:
                vec_n = 1.0
            weight = vector_weight if vector else 0.0
            score = weight * vec_n + (1.0 - weight) * lex_n
        out.append(
            Ranked(
                memory_id,
                round(score, 6),
                lex,
                lex_rank.get(memory_id),
                vec,
                vec_rank.get(memory_id),
            )
        )
    out.sort(key=lambda r: (-r.score, r.id))
    return out
