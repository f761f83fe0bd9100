"""The RAM copy of what a search hit returns (never written anywhere).

A search ranks its candidates from RAM (the rank facts, memoryd/search/ram.py) and then
needs the rows of its best few. Read from DuckDB, the 10 rows of a search at 100k
memories took ~1.1 ms back to back in-process and 1.8-3.6 ms inside the daemon between
searches (an ``IN`` list planned as a scan of the whole table with its zone maps); from
these Arrow columns, 0.29 ms. At ~110 bytes a bench memory (10.8 MB at 100k) the copy is
kept only while it fits ``search.rows_ram_max_mb``; above that every hit is read from
DuckDB, as before.

The copy holds the fields of ``Memory`` that the postings and rank facts do not (content,
tags, metadata, source, position, update and access times, access count, whether
embedded), as Arrow columns in *slots*; each
document ordinal of the postings names its memory's slot (-1: no copy). New memories are
copied from the rows their insert wrote. An edit, a touch or a new embedding only marks
the memory's copy stale (``forget``): its hits are read from DuckDB until writes pause,
when the store copies what is missing (``missing_ids``, ``add``) and ``fold`` drops the
stale slots. Owned by the DuckDB owner thread, like the rest of the RAM index.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from memoryd.model import Memory
from memoryd.search.columns import grow_columns
from memoryd.search.inverted import InvertedIndex

log = logging.getLogger(__name__)

# The fields of Memory that neither the postings (namespace) nor the rank facts
# (creation, importance, expiry, kind, thread) hold, with the Arrow type DuckDB returns.
# Copying those too took another 4.8 MB at 100k bench memories (of 15.6).
HIT_SCHEMA = pa.schema(
    [
        ("content", pa.string()),
        ("tags", pa.list_(pa.string())),  # as stored (the facts hold the sorted set)
        ("metadata", pa.string()),  # as stored: JSON text
        ("source", pa.string()),
        ("position", pa.int64()),
        ("updated_at", pa.timestamp("us")),
        ("accessed_at", pa.timestamp("us")),
        ("access_count", pa.int64()),
        ("embedded", pa.bool_()),
    ]
)
HIT_FIELDS = tuple(HIT_SCHEMA.names)
# Lookups of up to this many rows read each field of each row as an Arrow scalar; more,
# and the chunks' rows are taken as tables. A search's 10 hits spread over the chunks an
# import leaves (three at 100k): 40 us against 113 in-process, 1 against 9 chunks' takes
# (``/tmp/s39/take.py``); the two meet at ~50 rows.
SCALAR_ROWS_MAX = 32
# The other fields of a memory's document ordinals (RankFacts.fields), as lists.
FieldsElsewhere = Callable[[np.ndarray], dict[str, list[Any]]]


class HitRows:
    """The hit fields of the documents of ``postings``, in slots that the documents'
    ordinals name (``_slot``), kept while they fit ``max_bytes``; with the namespace from
    the postings and ``elsewhere``'s fields, whole memories."""

    def __init__(
        self, postings: InvertedIndex, elsewhere: FieldsElsewhere, max_bytes: int
    ) -> None:
        self._postings = postings
        self._elsewhere = elsewhere
        self.max_bytes = max_bytes
        self.enabled = max_bytes > 0
        self._slot = np.zeros(0, dtype=np.int32)
        # Slots in chunks: chunk i holds slots _starts[i] .. _starts[i + 1] - 1. Appends
        # add chunks, which merge while the last is at least as long as the one before
        # (a binary counter: few chunks, each slot copied O(log n) times).
        self._chunks: list[pa.Table] = []
        self._arrays: list[list[pa.Array]] = []  # each chunk's columns, in HIT_FIELDS order
        self._starts = [0]
        self._stale = 0  # slots no ordinal names any more
        self._bytes = 0  # of the chunks
        postings.follow(self)

    def __len__(self) -> int:
        """How many slots are held (stale ones included)."""
        return self._starts[-1]

    @property
    def nbytes(self) -> int:
        return self._bytes + self._slot.nbytes

    # -- changes ---------------------------------------------------------------------------

    def load(self, table: pa.Table) -> None:
        """The hit fields of the documents just loaded into the postings, in ordinal
        order (``InvertedIndex.load_documents``). Copied into buffers of their own size:
        kept as DuckDB's Arrow export made them, a restarted daemon at 100k memories held
        ~10 MB more after the load (in-process, after ``heap.release``: 76 against 66 MB
        over the RAM index's load; 45 MB without the copy)."""
        rows = np.arange(table.num_rows, dtype=np.int32)
        self._append(table.take(pa.array(rows)), rows)

    def add(self, table: pa.Table, ordinals: np.ndarray) -> None:
        """Copy ``table`` (``HIT_FIELDS`` of memories, in order) for the documents
        ``ordinals`` (``InvertedIndex.ordinals`` of their ids); rows of memories without
        a document (-1) are skipped."""
        if not self.enabled or not len(ordinals):
            return
        kept = np.flatnonzero(ordinals >= 0)
        if len(kept) < len(ordinals):
            table = table.take(pa.array(kept))
        self.forget_ordinals(ordinals[kept])  # a memory copied again: the old slot is stale
        self._append(table, ordinals[kept])

    def forget(self, ids: Sequence[str]) -> None:
        """The rows of ``ids`` changed (or are gone): their copies are stale."""
        self.forget_ordinals(self._postings.ordinals(ids))

    def forget_ordinals(self, ordinals: np.ndarray) -> None:
        ordinals = ordinals[ordinals >= 0]
        held = ordinals[self._slot[ordinals] >= 0]
        self._slot[held] = -1
        self._stale += len(np.unique(held))

    def _append(self, table: pa.Table, ordinals: np.ndarray) -> None:
        if not len(ordinals):
            return
        table = table.select(list(HIT_FIELDS)).cast(HIT_SCHEMA).combine_chunks()
        first = len(self)
        self._chunks.append(table)
        self._starts.append(first + table.num_rows)
        self._bytes += table.nbytes
        self._slot[ordinals] = np.arange(first, first + len(ordinals), dtype=np.int32)
        while len(self._chunks) > 1 and self._chunks[-1].num_rows >= self._chunks[-2].num_rows:
            merged = pa.concat_tables(self._chunks[-2:]).combine_chunks()
            self._chunks[-2:] = [merged]
            del self._starts[-2]
        # The chunks before the last are as they were.
        self._arrays[len(self._chunks) - 1:] = [_arrays(self._chunks[-1])]
        if self.nbytes > self.max_bytes:
            log.info(
                "search hits read from DuckDB: their fields would take more than "
                "search.rows_ram_max_mb (%d MB) of RAM",
                self.max_bytes // 2**20,
            )
            self.clear()

    def clear(self) -> None:
        """Drop every copy and copy no more (the copy outgrew its budget)."""
        self.enabled = False
        self._slot[:] = -1
        self._chunks, self._starts, self._stale, self._bytes = [], [0], 0, 0
        self._arrays = []

    def fold(self) -> None:
        """When writes pause: one chunk of the live slots, once stale ones are a quarter
        of them or the chunks are many (a lookup reads each chunk its hits are in)."""
        if self._stale <= len(self) // 4 and len(self._chunks) <= 4:
            return
        holders = np.flatnonzero(self._slot >= 0)
        slots = self._slot[holders]
        order = np.argsort(slots, kind="stable")
        holders, slots = holders[order], slots[order]
        table = self._take(slots)
        self._chunks, self._starts, self._stale = [table], [0, table.num_rows], 0
        self._arrays = [_arrays(table)]
        self._bytes = table.nbytes
        self._slot[holders] = np.arange(len(holders), dtype=np.int32)

    def missing_ids(self) -> list[str]:
        """Live memories without a copy (new ones while the copy was off are not)."""
        if not self.enabled:
            return []
        alive = self._postings.in_scope(None)
        n = len(alive)
        return self._postings.ids(np.flatnonzero(alive & (self._slot[:n] < 0)))

    # -- reads -----------------------------------------------------------------------------

    def lookup(self, ids: Sequence[str]) -> dict[str, Memory]:
        """The memories of those ``ids`` that have a fresh copy."""
        if not self.enabled or not ids:
            return {}
        ordinals = self._postings.ordinals(ids)
        found = np.flatnonzero(ordinals >= 0)
        slots = self._slot[ordinals[found]]
        copied = slots >= 0
        found, slots = found[copied], slots[copied]
        if not len(found):
            return {}
        documents = ordinals[found]
        columns = self._fields(slots)
        columns.update(self._elsewhere(documents))
        columns["namespace"] = self._postings.namespaces(documents)
        names = list(columns)
        return {
            ids[i]: Memory.from_stored(ids[i], dict(zip(names, values, strict=True)))
            for i, values in zip(found.tolist(), zip(*columns.values(), strict=True), strict=True)
        }

    def _fields(self, slots: np.ndarray) -> dict[str, list[Any]]:
        """``HIT_FIELDS`` of ``slots``, each as a list in their order."""
        if len(slots) > SCALAR_ROWS_MAX:
            table = self._take(slots)
            return {name: table.column(name).to_pylist() for name in HIT_FIELDS}
        chunk_of = np.searchsorted(self._starts, slots, side="right") - 1
        at = (slots - np.asarray(self._starts)[chunk_of]).tolist()
        places = list(zip(chunk_of.tolist(), at, strict=True))
        arrays = self._arrays
        return {
            name: [arrays[chunk][field][row].as_py() for chunk, row in places]
            for field, name in enumerate(HIT_FIELDS)
        }

    def _take(self, slots: np.ndarray) -> pa.Table:
        """The rows of ``slots``, in their order."""
        if not len(slots):
            return HIT_SCHEMA.empty_table()
        if len(self._chunks) == 1:
            return self._chunks[0].take(pa.array(slots))
        chunk_of = np.searchsorted(self._starts, slots, side="right") - 1
        parts = []
        order = []
        for chunk in np.unique(chunk_of).tolist():
            at = np.flatnonzero(chunk_of == chunk)
            parts.append(self._chunks[chunk].take(pa.array(slots[at] - self._starts[chunk])))
            order.append(at)
        table = pa.concat_tables(parts)
        back = np.empty(len(slots), dtype=np.int32)
        back[np.concatenate(order)] = np.arange(len(slots), dtype=np.int32)
        return table.take(pa.array(back))

    # -- following the postings' ordinals (``DocumentColumns``) ----------------------------

    def grow(self, size: int) -> None:
        grow_columns(self, ("_slot",), size, fill={"_slot": -1})

    def move(self, old: np.ndarray, new: np.ndarray) -> None:
        self._slot[new] = self._slot[old]
        self._slot[old] = -1

    def renumber(self, alive: np.ndarray) -> None:
        kept = self._slot[alive]
        gone = np.count_nonzero(self._slot >= 0) - np.count_nonzero(kept >= 0)
        self._slot[:] = -1
        self._slot[: len(alive)] = kept
        self._stale += int(gone)


def _arrays(chunk: pa.Table) -> list[pa.Array]:
    """The columns of a chunk (``HIT_FIELDS``), each as one array: the chunk's own
    buffers, as ``_append`` and ``fold`` combine each column into one."""
    columns = [chunk.column(name) for name in HIT_FIELDS]
    return [c.chunk(0) if c.num_chunks == 1 else c.combine_chunks() for c in columns]
