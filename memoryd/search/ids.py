"""Memory ids by document ordinal, and ordinals by id, at 16 bytes an id.

A memory id is a canonical UUID string (``validate.memory_id``). Held here as its 16
bytes (numpy ``S16``), not as a Python string in a list and a dict: at 1M memories the
RAM postings' ids took ~124 MB that way (85 MB of strings, a 30.8 MB dict, an 8 MB list),
and take ~37 MB here. The bytes sort as the strings do (lower-case hex, dashes at fixed
places), so ties broken by id come out the same.

Ordinals are handed out in order and never reused until ``renumber``. Lookups go to a
sorted copy of the keys, and to a dict for the ids given ordinals since that copy was
last merged (each merge inserts them: a few ms at 1M memories).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from memoryd.model import is_canonical_id, uuid_strings
from memoryd.search.columns import grow_columns

KEY = np.dtype("S16")
# Recent ids (in a dict) worth merging into the sorted keys: at least this many, and at
# least a sixteenth of those, so that merges cost O(1) amortised per id.
MERGE_MIN = 4096


def _shaped(memory_id: str) -> bool:
    return len(memory_id) == 36 and memory_id[8] == memory_id[13] == memory_id[18] == (
        memory_id[23]) == "-"


def keys(ids: Sequence[str]) -> np.ndarray:
    """The 16-byte keys of canonical memory ids (ValueError if one is not): the ids that
    ``model.is_canonical_id`` accepts, checked a batch at a time (its regex per id took
    0.31 s for 1M ids, against 0.12 s for the shape here). The shape keeps each id's 32
    digits in its own key; ``fromhex`` rejects what is not hex, but skips spaces and
    reads upper case, which the length and case checks refuse."""
    if not all(map(_shaped, ids)):
        raise ValueError("not a canonical memory id")
    digits = "".join(ids).replace("-", "")
    raw = bytes.fromhex(digits)
    if len(raw) != 16 * len(ids) or digits != digits.lower():
        raise ValueError("not a canonical memory id")
    return np.frombuffer(raw, dtype=KEY)


# Each byte's value as a lower-case hex digit, -1 for any other byte; and where a
# canonical id's 32 digits sit among its 36 characters (the rest are dashes).
_HEX_DIGIT = np.full(256, -1, dtype=np.int16)
_HEX_DIGIT[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16)
_DASHES = [8, 13, 18, 23]
_DIGITS = np.array([n for n in range(36) if n not in _DASHES])


def column_keys(column: pa.Array) -> np.ndarray:
    """``keys`` of an Arrow column of ids, read from its buffers as a whole: 0.09 s for
    1M ids where the strings' ``to_pylist`` and ``keys`` took ~0.2 s. The same ids are
    accepted (ValueError otherwise, or for a null)."""
    column = column.cast(pa.string())
    if column.null_count:
        raise ValueError("not a canonical memory id")
    if len(column) == 0:
        return np.zeros(0, dtype=KEY)
    ends = np.frombuffer(column.buffers()[1], dtype=np.int32)[
        column.offset : column.offset + len(column) + 1
    ]
    if not (np.diff(ends) == 36).all():
        raise ValueError("not a canonical memory id")
    chars = np.frombuffer(column.buffers()[2], dtype=np.uint8)[ends[0] : ends[-1]]
    chars = chars.reshape(-1, 36)
    digits = _HEX_DIGIT[chars[:, _DIGITS]]
    if not (chars[:, _DASHES] == ord("-")).all() or (digits < 0).any():
        raise ValueError("not a canonical memory id")
    packed = ((digits[:, 0::2] << 4) | digits[:, 1::2]).astype(np.uint8)
    return np.ascontiguousarray(packed).view(KEY)[:, 0]


def id_strings(found: np.ndarray) -> list[str]:
    """The memory ids of 16-byte keys (``tobytes`` keeps trailing zero bytes, which
    indexing an ``S16`` array would drop)."""
    return uuid_strings(np.ascontiguousarray(found, dtype=KEY).tobytes())


def smallest(found: np.ndarray, k: int) -> np.ndarray:
    """The places of the ``k`` smallest of some 16-byte keys, smallest first: each key as
    two big-endian integers, the first partitioned and only the few left sorted (sorting
    83k keys as bytes took 13.7 ms)."""
    pairs = np.ascontiguousarray(found, dtype=KEY).view(">u8").reshape(-1, 2)
    high, low = pairs[:, 0].astype(np.uint64), pairs[:, 1].astype(np.uint64)
    places = np.arange(len(found))
    if 0 < k < len(found):
        kth = np.partition(high, k - 1)[k - 1]
        places = np.flatnonzero(high <= kth)
    order = np.lexsort((low[places], high[places]))
    return places[order[:k]]


class IdTable:
    """Which memory id each document ordinal names, and the ordinal of each live id."""

    def __init__(self) -> None:
        self._keys = np.zeros(0, dtype=KEY)  # by ordinal (spare capacity at the end)
        self._live = np.zeros(0, dtype=bool)
        self.used = 0  # ordinals handed out
        self._count = 0
        self._sorted = np.zeros(0, dtype=KEY)
        self._sorted_ordinal = np.zeros(0, dtype=np.int32)
        self._recent: dict[str, int] = {}  # ordinals given since the last merge

    def __len__(self) -> int:
        return self._count

    def get(self, memory_id: str) -> int | None:
        found = int(self.ordinals([memory_id])[0])
        return None if found < 0 else found

    def ordinals(self, ids: Sequence[str]) -> np.ndarray:
        """The ordinal of each of ``ids`` (int64), -1 for those not live."""
        out = np.full(len(ids), -1, dtype=np.int64)
        if len(self._sorted) and len(ids):
            places: slice | list[int]
            try:
                places, wanted = slice(None), keys(ids)
            except ValueError:  # some are no memory ids: those are not here
                where = [n for n, memory_id in enumerate(ids) if is_canonical_id(memory_id)]
                places, wanted = where, keys([ids[n] for n in where])
            at = np.minimum(np.searchsorted(self._sorted, wanted), len(self._sorted) - 1)
            candidates = self._sorted_ordinal[at]
            hit = (self._sorted[at] == wanted) & self._live[candidates]
            out[places] = np.where(hit, candidates, -1)
        if self._recent:
            recent = self._recent
            for n, memory_id in enumerate(ids):
                ordinal = recent.get(memory_id)
                if ordinal is not None:
                    out[n] = ordinal
        return out

    def ids(self, ordinals: np.ndarray) -> list[str]:
        """The ids that ``ordinals`` name (live ones: a dead ordinal names its last id)."""
        return id_strings(self._keys[ordinals])

    def key_pairs(self, ordinals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The keys of ``ordinals`` as (high, low) big-endian integers: sorted by high,
        then low, the ids sort as their strings do."""
        pairs = np.ascontiguousarray(self._keys[ordinals], dtype=KEY).view(">u8").reshape(-1, 2)
        return pairs[:, 0].astype(np.uint64), pairs[:, 1].astype(np.uint64)

    def first_by_id(self, ordinals: np.ndarray, k: int) -> list[str]:
        """The ``k`` smallest of the ids that ``ordinals`` name, smallest first."""
        chosen = self._keys[ordinals]
        return id_strings(chosen[smallest(chosen, k)])

    def load(self, ids: Sequence[str]) -> None:
        """The ids of ordinals 0, 1, ... of an empty table."""
        self.load_keys(keys(ids))

    def load_keys(self, found: np.ndarray) -> None:
        """``load`` of the ids' keys (distinct)."""
        assert not self.used, "load into an empty table"
        self._set_live(np.asarray(found, dtype=KEY))

    def append(self, ids: Sequence[str]) -> int:
        """New ordinals for ``ids`` (none of them live), in order; returns the first."""
        first, n = self.used, len(ids)
        grow_columns(self, ("_keys", "_live"), first + n)
        self._keys[first : first + n] = keys(ids)
        self._live[first : first + n] = True
        self.used += n
        self._count += n
        self._recent.update(zip(ids, range(first, first + n), strict=True))
        if len(self._recent) >= max(MERGE_MIN, len(self._sorted) // 16):
            self._merge()
        return first

    def discard(self, ids: Sequence[str], ordinals: np.ndarray | None = None) -> np.ndarray:
        """Forget ``ids`` (whose ``ordinals`` the caller may have looked up already);
        returns the ordinals that were live (each once)."""
        found = np.unique(self.ordinals(ids) if ordinals is None else ordinals)
        found = found[found >= 0]
        self._live[found] = False
        self._count -= len(found)
        for memory_id in ids:
            self._recent.pop(memory_id, None)
        return found

    def renumber(self, alive: np.ndarray) -> None:
        """The live ordinals were renumbered: ``alive[i]`` is now ``i``."""
        kept = self._keys[alive]
        self._keys = np.zeros(len(self._keys), dtype=KEY)
        self._live = np.zeros(len(self._live), dtype=bool)
        self.used = self._count = 0
        self._set_live(kept)

    def _set_live(self, found: np.ndarray) -> None:
        n = len(found)
        grow_columns(self, ("_keys", "_live"), n)
        self._keys[:n] = found
        self._live[:n] = True
        self.used = self._count = n
        order = np.argsort(found, kind="stable")
        self._sorted, self._sorted_ordinal = found[order], order.astype(np.int32)
        self._recent = {}

    def _merge(self) -> None:
        """Insert the recent ids into the sorted keys, dropping the keys of dead
        ordinals there (an edited memory's old ordinal, a deleted one's)."""
        keep = self._live[self._sorted_ordinal]
        merged, ordinal = self._sorted[keep], self._sorted_ordinal[keep]
        new = np.fromiter(self._recent.values(), dtype=np.int32, count=len(self._recent))
        new = new[np.argsort(self._keys[new], kind="stable")]
        at = np.searchsorted(merged, self._keys[new])
        self._sorted = np.insert(merged, at, self._keys[new])
        self._sorted_ordinal = np.insert(ordinal, at, new)
        self._recent = {}
