"""Per-document numpy columns that grow as documents arrive (the RAM search structures)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MIN_CAPACITY = 1024


def grow_columns(owner: object, names: Sequence[str], size: int) -> None:
    """Make ``owner``'s 1-D array attributes ``names`` (all of one length) hold at least
    ``size`` rows: at least doubled, new rows zero. Growing by doubling keeps appends
    amortised O(1)."""
    current = len(getattr(owner, names[0]))
    if size <= current:
        return
    capacity = max(size, 2 * current, MIN_CAPACITY)
    for name in names:
        old = getattr(owner, name)
        new = np.zeros(capacity, dtype=old.dtype)
        new[: len(old)] = old
        setattr(owner, name, new)
