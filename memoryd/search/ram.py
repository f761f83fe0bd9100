"""The RAM copy of what search reads from the memories table (never written anywhere).

Two parts, changed together by one stream of operations that Database applies after each
commit (and replays after a load):

- the BM25 postings (``InvertedIndex``), for lexical search without SQL;
- the *rank facts* of every memory: creation time, importance, expiry and whether it
  sits in a thread. With them a search ranks its candidates without reading their rows,
  and reads from DuckDB only the rows it returns: fetching 100 candidate rows by id cost
  ~5 ms at 100k memories, 10 rows ~1.4 ms. Kept in the postings' document ordinals.

Owned by the DuckDB owner thread, like the database itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import numpy as np

from memoryd.search.columns import grow_columns
from memoryd.search.inverted import InvertedIndex

EPOCH = datetime(1970, 1, 1)
NEVER = np.iinfo(np.int64).max


class RankFact(NamedTuple):
    """What ranking reads of a memory (the fields ``Memory`` has under the same names)."""

    created_at: datetime
    importance: float
    threaded: bool


# (id, created_at, importance, expires_at or None, threaded)
FactRow = tuple[str, datetime, float, datetime | None, bool]


def micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


class RankFacts:
    """The rank facts of the documents of ``postings``, in rows that are its document
    ordinals: the facts follow each document as it gets a new ordinal (an edit) or the
    ordinals are renumbered (a rebuild), so they need no id map of their own (a dict of
    every id with an int for each: ~7 MB at 100k memories, ~70 MB at 1M).

    A memory has facts only while it has a document: ``upsert`` after the ``add`` of its
    document, as every commit does."""

    def __init__(self, postings: InvertedIndex) -> None:
        self._ordinal = postings.ordinal
        self._created = np.zeros(0, dtype=np.int64)  # microseconds since the epoch
        self._expires = np.zeros(0, dtype=np.int64)
        self._importance = np.zeros(0, dtype=np.float64)  # as stored: DOUBLE
        self._threaded = np.zeros(0, dtype=bool)
        postings.follow(self)

    def load(
        self,
        created: np.ndarray,
        importance: np.ndarray,
        expires: np.ndarray,
        threaded: np.ndarray,
    ) -> None:
        """The facts of every document just loaded into the postings (``load_documents``),
        in the same order: times in microseconds, ``NEVER`` for no expiry."""
        n = len(created)
        self._created[:n], self._importance[:n] = created, importance
        self._expires[:n], self._threaded[:n] = expires, threaded

    def upsert(self, rows: Sequence[FactRow]) -> None:
        for memory_id, created_at, importance, expires_at, threaded in rows:
            row = self._ordinal(memory_id)
            if row is None:  # no document: nothing to rank (see the class docstring)
                continue
            self._created[row] = micros(created_at)
            self._importance[row] = importance
            self._expires[row] = NEVER if expires_at is None else micros(expires_at)
            self._threaded[row] = threaded

    def window(self, since: datetime | None, until: datetime | None, now: datetime) -> np.ndarray:
        """A mask over the ordinals: created in [since, until) and not expired at ``now``
        (what SQL's time filters and expiry keep)."""
        return self._kept(slice(None), now, since, until)

    def _kept(
        self,
        rows: slice | np.ndarray,
        now: datetime,
        since: datetime | None,
        until: datetime | None,
    ) -> np.ndarray:
        """Which of ``rows`` are unexpired at ``now`` and were created in [since, until)."""
        kept = self._expires[rows] > micros(now)
        if since is not None:
            kept &= self._created[rows] >= micros(since)
        if until is not None:
            kept &= self._created[rows] < micros(until)
        return kept

    def lookup(
        self,
        ids: Sequence[str],
        now: datetime,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> dict[str, RankFact]:
        """The facts of those ``ids`` that exist, have not expired at ``now`` and were
        created in [since, until)."""
        ordinal = self._ordinal
        known = [(i, r) for i in ids if (r := ordinal(i)) is not None]
        if not known:
            return {}
        rows = np.fromiter((r for _, r in known), dtype=np.int64, count=len(known))
        live = self._kept(rows, now, since, until)
        created = self._created[rows].tolist()
        importance = self._importance[rows].tolist()
        threaded = self._threaded[rows].tolist()
        return {
            memory_id: RankFact(
                EPOCH + timedelta(microseconds=created[n]), importance[n], threaded[n]
            )
            for n, (memory_id, _) in enumerate(known)
            if live[n]
        }

    # -- following the postings' ordinals (``DocumentColumns``) ----------------------------

    def grow(self, size: int) -> None:
        grow_columns(self, _FACT_COLUMNS, size, fill={"_expires": NEVER})

    def move(self, old: np.ndarray, new: np.ndarray) -> None:
        for name in _FACT_COLUMNS:
            column = getattr(self, name)
            column[new] = column[old]

    def renumber(self, alive: np.ndarray) -> None:
        for name in _FACT_COLUMNS:
            column = getattr(self, name)
            column[: len(alive)] = column[alive]

    @property
    def nbytes(self) -> int:
        return int(sum(getattr(self, name).nbytes for name in _FACT_COLUMNS))


_FACT_COLUMNS = ("_created", "_expires", "_importance", "_threaded")


class RamIndex:
    """The postings and rank facts, kept in step by ``apply``."""

    def __init__(self, postings: InvertedIndex, facts: RankFacts) -> None:
        self.postings = postings
        self.facts = facts

    def __len__(self) -> int:
        return len(self.postings)

    @property
    def nbytes(self) -> int:
        return self.postings.nbytes + self.facts.nbytes

    def fold(self) -> None:
        self.postings.fold()

    def apply(self, op: str, args: tuple[Any, ...]) -> None:
        """One committed change: "add" (documents, namespaces) writes postings, "facts"
        (rows) writes rank facts, "remove" (ids) erases memories from both."""
        if op == "add":
            self.postings.add(*args)
        elif op == "facts":
            self.facts.upsert(*args)
        elif op == "remove":
            self.postings.remove(*args)  # and with their documents, their facts
        else:
            raise ValueError(f"unknown RAM index change {op!r}")
