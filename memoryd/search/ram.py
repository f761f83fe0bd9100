"""The RAM copy of what search reads from the memories table (never written anywhere).

Three parts, changed together by one stream of operations that Database applies after each
commit (and replays after a load):

- the BM25 postings (``InvertedIndex``), for lexical search without SQL;
- the *rank facts* of every memory: creation time, importance, expiry, kind, tags,
  thread and position in it. With them a search ranks its candidates without reading
  their rows, and reads from DuckDB only the rows it returns: fetching 100 candidate rows
  by id cost ~5 ms at 100k memories, 10 rows ~1.4 ms. They also apply every filter but
  metadata, as a mask over the documents (``RankFacts.mask``): lexical search ranks
  within it, and a filtered vector search counts and lists what passes from it; and they
  give a threaded candidate its neighbours (``RamIndex.neighbours``), which SQL found in
  ~7 ms a hybrid search. Kept in the postings' document ordinals; kind, tag set and
  thread as codes (4 bytes each a memory), the position in 8;
- the fields a hit returns (``HitRows``, memoryd/search/hit_rows.py), while they fit a
  budget, so that the rows a search returns need no read from DuckDB either.

Owned by the DuckDB owner thread, like the database itself.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np

from memoryd.model import SearchFilters
from memoryd.search.columns import grow_columns
from memoryd.search.hit_rows import HitRows
from memoryd.search.inverted import InvertedIndex

V = TypeVar("V", bound=Hashable)

EPOCH = datetime(1970, 1, 1)
NEVER = np.iinfo(np.int64).max
# A memory's position in its thread when it has none: after every position
# (``validate`` keeps them within 2**62), as SQL's ``NULLS LAST`` orders them.
NO_POSITION = NEVER


class RankFact(NamedTuple):
    """What ranking reads of a memory (the fields ``Memory`` has under the same names)."""

    created_at: datetime
    importance: float
    threaded: bool


# (id, created_at, importance, expires_at or None, kind, tags, thread or None,
# position or None)
FactRow = tuple[
    str, datetime, float, datetime | None, str, Sequence[str], str | None, int | None
]
Pairs = tuple[str | None, str | None]  # a memory's (previous, next) in its thread


class ThreadsTooLong(Exception):
    """The threads asked about hold more memories than the caller would sort."""


def micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def moment(us: int) -> datetime | None:
    """The moment of ``micros`` (``None`` for ``NEVER``)."""
    return None if us == NEVER else EPOCH + timedelta(microseconds=us)


def _micros_column(moments: Sequence[datetime | None]) -> np.ndarray:
    """``micros`` of each moment (``NEVER`` for ``None``), each distinct moment computed
    once: a batch of new memories shares one."""
    known: dict[datetime | None, int] = {None: NEVER}
    for moment in moments:
        if moment not in known:
            known[moment] = micros(moment)  # type: ignore[arg-type]
    return np.fromiter(map(known.__getitem__, moments), np.int64, len(moments))


def tag_set(tags: Sequence[str]) -> tuple[str, ...]:
    """A memory's tags as one value: sorted, without repeats."""
    return tuple(sorted(set(tags)))


class Coded(NamedTuple):
    """A column given as a code per row (-1 for none) and the values the codes stand for."""

    codes: np.ndarray
    values: list[Any]


class Codes(Generic[V]):
    """Small ints for the distinct values of a column (kinds, tag sets, threads)."""

    def __init__(self) -> None:
        self.values: list[V] = []
        self._code: dict[V, int] = {}

    def __len__(self) -> int:
        return len(self.values)

    def code(self, value: V) -> int:
        """The value's code, given one if new."""
        code = self._code.get(value)
        if code is None:
            code = self._code[value] = len(self.values)
            self.values.append(value)
        return code

    def find(self, value: V) -> int | None:
        return self._code.get(value)


class RankFacts:
    """The rank facts of the documents of ``postings``, in rows that are its document
    ordinals: the facts follow each document as it gets a new ordinal (an edit) or the
    ordinals are renumbered (a rebuild), so they need no id map of their own (a dict of
    every id with an int for each: ~7 MB at 100k memories, ~70 MB at 1M).

    A memory has facts only while it has a document: ``upsert`` after the ``add`` of its
    document, as every commit does."""

    def __init__(self, postings: InvertedIndex) -> None:
        self._ordinals = postings.ordinals
        self._created = np.zeros(0, dtype=np.int64)  # microseconds since the epoch
        self._expires = np.zeros(0, dtype=np.int64)
        self._importance = np.zeros(0, dtype=np.float64)  # as stored: DOUBLE
        self._kind = np.zeros(0, dtype=np.int32)
        self._tags = np.zeros(0, dtype=np.int32)  # the code of the memory's tag set
        self._thread = np.zeros(0, dtype=np.int32)  # -1: in no thread
        self._position = np.zeros(0, dtype=np.int64)  # NO_POSITION: none
        self._kinds: Codes[str] = Codes()
        self._tag_sets: Codes[tuple[str, ...]] = Codes()
        self._threads: Codes[str] = Codes()
        self._sets_with_tag: dict[str, list[int]] = {}  # tag -> codes of the sets holding it
        postings.follow(self)

    def load(
        self,
        created: np.ndarray,
        importance: np.ndarray,
        expires: np.ndarray,
        kinds: Coded,
        tags: Coded,
        threads: Coded,
        positions: np.ndarray,
    ) -> None:
        """The facts of every document just loaded into the postings (``load_documents``),
        in the same order: times in microseconds, ``NEVER`` for no expiry; kinds, tag sets
        (tuples, ``tag_set``) and threads coded, so that no Python object is made per
        document; positions with ``NO_POSITION`` for none."""
        n = len(created)
        self._created[:n], self._importance[:n], self._expires[:n] = created, importance, expires
        self._position[:n] = positions
        for column, coded, code in (
            (self._kind, kinds, self._kinds.code),
            (self._tags, tags, self._tag_set_code),
            (self._thread, threads, self._threads.code),
        ):
            mine = np.array([code(v) for v in coded.values] + [-1], dtype=np.int32)
            column[:n] = mine[coded.codes]  # a code of -1 (no value) picks the -1 at the end

    def upsert(self, rows: Sequence[FactRow], ordinals: np.ndarray | None = None) -> None:
        """Write the facts of ``rows`` (a batch of new memories, or one edit), a column at
        a time: a row at a time took 1.6 ms for a batch of 1,000 memories. ``ordinals``:
        the rows' document ordinals, if known."""
        if ordinals is None:
            ordinals = self._ordinals([r[0] for r in rows])
        # Rows without a document have nothing to rank (see the class docstring); of a
        # memory given twice, the last row wins.
        last_of = dict(zip(ordinals.tolist(), range(len(rows)), strict=True))
        last_of.pop(-1, None)
        if len(last_of) < len(rows):
            places = sorted(last_of.values())
            rows, ordinals = [rows[n] for n in places], ordinals[places]
        if not rows:
            return
        n = len(rows)
        _, created, importance, expires, kinds, tags, threads, positions = zip(*rows, strict=True)
        self._created[ordinals] = _micros_column(created)
        self._importance[ordinals] = np.fromiter(importance, np.float64, n)
        self._expires[ordinals] = _micros_column(expires)
        self._kind[ordinals] = np.fromiter(map(self._kinds.code, kinds), np.int32, n)
        set_codes: dict[tuple[str, ...], int] = {}  # a batch's memories share few tag lists

        def set_code(tags: Sequence[str]) -> int:
            listed = tuple(tags)
            code = set_codes.get(listed)
            if code is None:
                code = set_codes[listed] = self._tag_set_code(listed)
            return code

        self._tags[ordinals] = np.fromiter(map(set_code, tags), np.int32, n)
        self._thread[ordinals] = np.fromiter(
            (-1 if t is None else self._threads.code(t) for t in threads), np.int32, n
        )
        self._position[ordinals] = np.fromiter(
            (NO_POSITION if p is None else p for p in positions), np.int64, n
        )

    def _tag_set_code(self, tags: Sequence[str]) -> int:
        values = tag_set(tags)
        known = len(self._tag_sets)
        code = self._tag_sets.code(values)
        if code == known:  # a new set: index it by each of its tags
            for tag in values:
                self._sets_with_tag.setdefault(tag, []).append(code)
        return code

    def mask(self, filters: SearchFilters, now: datetime) -> np.ndarray:
        """A mask over the ordinals: what the filters other than the namespace and
        metadata keep, and expiry (what SQL's filters keep)."""
        return self._kept(slice(None), now, filters)

    def _kept(self, rows: slice | np.ndarray, now: datetime, filters: SearchFilters) -> np.ndarray:
        """Which of ``rows`` are unexpired at ``now`` and pass ``filters`` (all but the
        namespace and metadata)."""
        kept = self._expires[rows] > micros(now)
        if filters.since is not None:
            kept &= self._created[rows] >= micros(filters.since)
        if filters.until is not None:
            kept &= self._created[rows] < micros(filters.until)
        for column, codes, value in (
            (self._kind, self._kinds, filters.kind),
            (self._thread, self._threads, filters.thread),
        ):
            if value is not None:
                code = codes.find(value)
                kept &= column[rows] == (-2 if code is None else code)
        if filters.tags:
            holding = [set(self._sets_with_tag.get(tag, ())) for tag in set(filters.tags)]
            sets = set.intersection(*holding)
            kept &= np.isin(self._tags[rows], np.fromiter(sets, dtype=np.int32, count=len(sets)))
        return kept

    def lookup(
        self, ids: Sequence[str], now: datetime, filters: SearchFilters | None = None
    ) -> dict[str, RankFact]:
        """The facts of those ``ids`` that exist, have not expired at ``now`` and pass
        ``filters`` (all but the namespace and metadata)."""
        ordinals = self._ordinals(ids)
        found = np.flatnonzero(ordinals >= 0)
        if not len(found):
            return {}
        rows = ordinals[found]
        live = self._kept(rows, now, filters or SearchFilters())
        created = self._created[rows].tolist()
        importance = self._importance[rows].tolist()
        threaded = (self._thread[rows] >= 0).tolist()
        return {
            memory_id: RankFact(
                EPOCH + timedelta(microseconds=created[n]), importance[n], threaded[n]
            )
            for n, memory_id in enumerate(ids[i] for i in found.tolist())
            if live[n]
        }

    def fields(self, ordinals: np.ndarray) -> dict[str, list[Any]]:
        """The ``Memory`` fields the facts hold (creation, importance, expiry, kind,
        thread), each as a list over ``ordinals``: what the hits' RAM copy leaves out."""
        kinds, threads = self._kinds.values, self._threads.values
        return {
            "created_at": [moment(us) for us in self._created[ordinals].tolist()],
            "importance": self._importance[ordinals].tolist(),
            "expires_at": [moment(us) for us in self._expires[ordinals].tolist()],
            "kind": [kinds[code] for code in self._kind[ordinals].tolist()],
            "thread": [threads[c] if c >= 0 else None for c in self._thread[ordinals].tolist()],
        }

    def threads(self, ordinals: np.ndarray) -> np.ndarray:
        """The thread code of each of ``ordinals`` (-1: in no thread)."""
        return self._thread[ordinals]

    def thread_members(self, codes: np.ndarray, scope: np.ndarray) -> np.ndarray:
        """The documents of ``scope`` (a mask over the ordinals) in any of the threads
        ``codes``, in ordinal order: one pass, a table lookup per document."""
        table = np.zeros(len(self._threads) + 1, dtype=bool)
        table[np.asarray(codes) + 1] = True  # code -1 (no thread) looks up place 0
        n = min(len(scope), len(self._thread))
        return np.flatnonzero(scope[:n] & table[self._thread[:n] + 1])

    def positions(self, ordinals: np.ndarray) -> np.ndarray:
        """The position of each of ``ordinals`` in its thread (``NO_POSITION``: none)."""
        return self._position[ordinals]

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


_FACT_COLUMNS = (
    "_created", "_expires", "_importance", "_kind", "_tags", "_thread", "_position"
)


class RamIndex:
    """The postings, rank facts and hits' fields, kept in step by ``apply``."""

    def __init__(self, postings: InvertedIndex, facts: RankFacts, rows: HitRows) -> None:
        self.postings = postings
        self.facts = facts
        self.rows = rows

    def __len__(self) -> int:
        return len(self.postings)

    @property
    def nbytes(self) -> int:
        return self.postings.nbytes + self.facts.nbytes + self.rows.nbytes

    def fold(self) -> None:
        self.postings.fold()
        self.rows.fold()

    def neighbours(self, ids: Sequence[str], members_max: int | None = None) -> dict[str, Pairs]:
        """(previous, next) memory in the thread of each of ``ids`` that is in one: its
        thread's memories in its namespace, ordered by position (none last), then id,
        exactly as ``Database.neighbours`` orders them in SQL (at ~800 LoCoMo memories
        the SQL took 6.7 ms p50 of a 12 ms hybrid search). One pass over the thread
        column finds the members of every thread asked about; only those are sorted, and
        ``ThreadsTooLong`` is raised instead when they are more than ``members_max``."""
        ordinals = self.postings.ordinals(ids)
        held = np.flatnonzero(ordinals >= 0)
        asked = held[self.facts.threads(ordinals[held]) >= 0]
        if not len(asked):
            return {}
        wanted = ordinals[asked]
        groups = self._thread_groups(wanted)
        members = self.facts.thread_members(
            self.facts.threads(wanted), self.postings.in_scope(None)
        )
        group = self._thread_groups(members)
        asked_about = np.isin(group, groups)  # a thread of the same name elsewhere: not
        members, group = members[asked_about], group[asked_about]
        if members_max is not None and len(members) > members_max:
            raise ThreadsTooLong(len(members))
        high, low = self.postings.key_pairs(members)
        # By thread, then position (none last), then id: as the SQL's window orders them.
        order = np.lexsort((low, high, self.facts.positions(members), group))
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        at = rank[np.searchsorted(members, wanted)]  # each asked memory's place in order
        sorted_group = group[order]

        def beside(step: int) -> np.ndarray:
            """The ordinal ``step`` places away in the same thread, -1 for none."""
            place = at + step
            inside = (place >= 0) & (place < len(order))
            place = np.clip(place, 0, len(order) - 1)
            same = inside & (sorted_group[place] == sorted_group[at])
            return np.where(same, members[order[place]], -1)

        before, after = beside(-1), beside(1)
        known = np.unique(np.concatenate([before, after]))
        known = known[known >= 0]
        named = dict(zip(known.tolist(), self.postings.ids(known), strict=True))
        return {
            ids[n]: (named.get(prev), named.get(nxt))
            for n, prev, nxt in zip(asked.tolist(), before.tolist(), after.tolist(), strict=True)
        }

    def _thread_groups(self, ordinals: np.ndarray) -> np.ndarray:
        """One number for each of ``ordinals``' (namespace, thread)."""
        return (self.postings.namespace_codes(ordinals).astype(np.int64) << 32) | (
            self.facts.threads(ordinals).astype(np.int64)
        )

    def passing(self, filters: SearchFilters, now: datetime) -> np.ndarray:
        """A mask over the ordinals: the live documents in the filters' namespace (all,
        without one) that pass every other filter but metadata and have not expired."""
        scope = self.postings.in_scope(filters.namespace)
        kept = self.facts.mask(filters, now)
        n = min(len(scope), len(kept))
        return scope[:n] & kept[:n]

    def apply(self, op: str, args: tuple[Any, ...]) -> None:
        """One committed change: "add" (documents, namespaces) writes postings, "new"
        (fact rows, hit fields) the rank facts and hit fields of new memories (after
        their "add"), "facts" (rows) rank facts, "stale" (ids) marks changed memories'
        hit fields stale, "remove" (ids) erases memories from all three."""
        if op == "add":
            self.postings.add(*args)
        elif op == "new":
            fact_rows, hit_fields = args
            # One lookup of the new ids' ordinals for both (~0.5 ms for 1,000 ids).
            ordinals = self.postings.ordinals([r[0] for r in fact_rows])
            self.facts.upsert(fact_rows, ordinals)
            self.rows.add(hit_fields, ordinals)
        elif op == "facts":
            self.facts.upsert(*args)
        elif op == "stale":
            self.rows.forget(*args)
        elif op == "remove":
            self.rows.forget(*args)
            self.postings.remove(*args)  # and with their documents, their facts
        else:
            raise ValueError(f"unknown RAM index change {op!r}")
