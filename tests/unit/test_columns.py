"""grow_columns: the per-document arrays of the RAM search structures."""

from __future__ import annotations

import numpy as np

from memoryd.search.columns import MIN_CAPACITY, grow_columns


class Holder:
    def __init__(self) -> None:
        self.codes = np.arange(6, dtype=np.int8).reshape(3, 2)
        self.tags = np.array([4, 5, 6], dtype=np.int32)


def test_growing_keeps_rows_and_fills_new_ones():
    holder = Holder()
    assert grow_columns(holder, ("codes", "tags"), 2) == 3  # big enough: unchanged
    capacity = grow_columns(holder, ("codes", "tags"), 4, fill={"tags": -1})
    assert capacity == MIN_CAPACITY
    assert holder.codes.shape == (MIN_CAPACITY, 2) and holder.codes.dtype == np.int8
    assert holder.codes[:3].tolist() == [[0, 1], [2, 3], [4, 5]]
    assert not holder.codes[3:].any()  # zero-filled
    assert holder.tags.dtype == np.int32 and holder.tags[:3].tolist() == [4, 5, 6]
    assert (holder.tags[3:] == -1).all()
    # At least doubled, or to the size asked for when that is more.
    assert grow_columns(holder, ("codes", "tags"), MIN_CAPACITY + 1) == 2 * MIN_CAPACITY
    assert grow_columns(holder, ("codes", "tags"), 5 * MIN_CAPACITY) == 5 * MIN_CAPACITY
    assert holder.codes[:3].tolist() == [[0, 1], [2, 3], [4, 5]]
    assert (holder.tags[3:MIN_CAPACITY] == -1).all()
    assert not holder.tags[MIN_CAPACITY:].any()  # no fill asked for since: zero
