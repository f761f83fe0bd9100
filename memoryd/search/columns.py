"""Per-document numpy columns that grow as documents arrive (the RAM search structures)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

MIN_CAPACITY = 1024


def grow_columns(
    owner: object, names: Sequence[str], size: int, fill: Mapping[str, object] | None = None
) -> int:
    """Make ``owner``'s array attributes ``names`` (all with one number of rows) hold at
    least ``size`` rows: at least doubled, new rows zero (or ``fill[name]``). Growing by
    doubling keeps appends amortised O(1). Returns the number of rows now held.

    Zero-filled columns come from ``np.zeros``, whose pages the kernel maps only once a
    row is written: ``np.full`` wrote every page of the spare capacity, which made it
    resident. At 100k memories the RAM vectors double to 131,072 rows, and the 31k
    spare int8 rows held ~12 MB for nothing."""
    current = len(getattr(owner, names[0]))
    if size <= current:
        return current
    capacity = max(size, 2 * current, MIN_CAPACITY)
    for name in names:
        old = getattr(owner, name)
        value = (fill or {}).get(name, 0)
        shape = (capacity, *old.shape[1:])
        new = np.zeros(shape, old.dtype) if value == 0 else np.full(shape, value, old.dtype)
        new[: len(old)] = old
        setattr(owner, name, new)
    return capacity
