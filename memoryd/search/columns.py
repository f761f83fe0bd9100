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
    doubling keeps appends amortised O(1). Returns the number of rows now held."""
    current = len(getattr(owner, names[0]))
    if size <= current:
        return current
    capacity = max(size, 2 * current, MIN_CAPACITY)
    for name in names:
        old = getattr(owner, name)
        new = np.full((capacity, *old.shape[1:]), (fill or {}).get(name, 0), dtype=old.dtype)
        new[: len(old)] = old
        setattr(owner, name, new)
    return capacity
