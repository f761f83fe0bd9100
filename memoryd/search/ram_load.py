"""The RAM vectors (``QuantizedVectors``) filled from the stored ones as a daemon starts.

Searches wait for this load (``VectorCatalog.ready``), so at large sizes it is most of a
start. The stored rows are read as disjoint ranges of one snapshot
(``Database.vector_readers``), each on a thread of its own that reads DuckDB's batches
(decrypted and decompressed by DuckDB) and codes them into its share of arrays sized for
the store. Nothing per row goes through Python: ids are parsed from the Arrow column's
bytes (``column_keys``), namespaces map to tags once per distinct value, stored float16
vectors are coded without being widened first (``quantize_halves``), and the table
takes the arrays as they are, sorting its id keys once.

On the bench's 1M store, in-process (`/tmp` scripts): reading and coding on one thread
took 1.75-1.86 s, on two 1.12 s (a reader handing batches to a coder, 1.74-2.14 s).
Through ``upsert``, batch by batch, the daemon had taken 4.5 s.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from memoryd.search.columns import MIN_CAPACITY
from memoryd.search.ids import KEY, column_keys
from memoryd.search.int8 import quantize_halves
from memoryd.search.quantized import QuantizedVectors, inverse_norms
from memoryd.search.vector_blob import STORED, blob_width

# Threads that read and code: the daemon never takes more than the two cores of the
# machines it is measured on (see ``memoryd.search.quantized.MAX_SCAN_THREADS``), and a
# small store is not worth a second.
MAX_THREADS = 2
TWO_THREADS_MIN_ROWS = 65_536
# Room left after the loaded rows (zero pages: nothing until written), so that the
# first writes after a start do not copy the whole table into a bigger one (~0.5 s at
# 1M rows, on the event loop).
SPARE_SHARE = 0.125
# Rows coded at a time: their intermediate arrays (12 bytes a component) stay in the
# caches. Two threads coding 500k rows each in slices of 8,192 took 0.32 s, twice one
# thread's time, and 0.16-0.17 s in slices of 1,024 or 2,048 (`/tmp` script).
CODE_ROWS = 2048


class StoredPart(Protocol):
    """A reader of a share of the stored rows (``memoryd.store.database.StoredVectors``)."""

    rows: int
    batches: Any  # iterable of Arrow record batches: id, namespace, stored vector


def threads_for(rows: int) -> int:
    """How many readers a load of ``rows`` stored vectors uses."""
    return MAX_THREADS if rows >= TWO_THREADS_MIN_ROWS else 1


def load_quantized(
    parts: Sequence[StoredPart], dim: int, tag_of: Callable[[str], str]
) -> QuantizedVectors:
    """A table of the vectors ``parts`` read (each id once), each namespace tagged by
    ``tag_of``: the first part read on the calling thread, the others on threads of
    their own."""
    offsets = np.cumsum([0, *(part.rows for part in parts)]).tolist()
    columns = _Columns(dim, offsets[-1], _Tags(tag_of))
    if len(parts) == 1:
        columns.fill(parts[0], 0, offsets[1])
    else:
        with ThreadPoolExecutor(len(parts) - 1, thread_name_prefix="memoryd-ram-load") as pool:
            others = [
                pool.submit(columns.fill, part, offsets[n], offsets[n + 1])
                for n, part in enumerate(parts) if n
            ]
            columns.fill(parts[0], 0, offsets[1])
            for other in others:
                other.result()
    return QuantizedVectors.loaded(
        dim, columns.keys, columns.tags.names, columns.tag_rows, columns.codes,
        columns.inv_norms,
    )


class _Tags:
    """Namespaces' tags by number, shared by a load's threads."""

    def __init__(self, tag_of: Callable[[str], str]) -> None:
        self._tag_of = tag_of
        self._number: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self._number)

    def numbers(self, namespaces: pa.Array) -> np.ndarray:
        """Each row's tag number."""
        encoded = pc.dictionary_encode(namespaces)
        with self._lock:
            per_name = np.array(
                [self._number.setdefault(self._tag_of(name), len(self._number))
                 for name in encoded.dictionary.to_pylist()],
                dtype=np.int32,
            )
        return per_name[encoded.indices.to_numpy(zero_copy_only=False)]


class _Columns:
    """The arrays a load fills, a row per stored vector; each part fills its own rows."""

    def __init__(self, dim: int, rows: int, tags: _Tags) -> None:
        self.dim = dim
        self.tags = tags
        room = rows + max(MIN_CAPACITY, int(rows * SPARE_SHARE))
        self.codes = np.zeros((room, dim), dtype=np.int8)
        self.inv_norms = np.zeros(room, dtype=np.float32)
        self.keys = np.zeros(rows, dtype=KEY)
        self.tag_rows = np.zeros(rows, dtype=np.int32)

    def fill(self, part: StoredPart, start: int, end: int) -> None:
        """Code ``part``'s rows into rows ``start`` to ``end``."""
        at = start
        for batch in part.batches:
            n = batch.num_rows
            if at + n > end:
                raise ValueError("more stored vectors were read than counted")
            self._code(batch, at)
            at += n
        if at != end:
            raise ValueError("fewer stored vectors were read than counted")

    def _code(self, batch: pa.RecordBatch, at: int) -> None:
        n = batch.num_rows
        blobs = batch.column(2)
        if blobs.null_count:
            raise ValueError("a stored vector is missing")
        ends = np.frombuffer(blobs.buffers()[1], dtype=np.int32)[
            blobs.offset : blobs.offset + n + 1
        ]
        if not (np.diff(ends) == blob_width(self.dim)).all():
            raise ValueError("the stored vectors of one model differ in size")
        stored = np.frombuffer(
            blobs.buffers()[2], dtype=STORED, count=n * self.dim, offset=int(ends[0])
        )
        stored = stored.reshape(n, self.dim)
        for start in range(0, n, CODE_ROWS):
            end = min(start + CODE_ROWS, n)
            codes = self.codes[at + start : at + end]
            codes[:] = quantize_halves(stored[start:end])
            self.inv_norms[at + start : at + end] = inverse_norms(codes)
        self.keys[at : at + n] = column_keys(batch.column(0))
        self.tag_rows[at : at + n] = self.tags.numbers(batch.column(1))
