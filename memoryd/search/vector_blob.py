"""How a memory's vector is stored in DuckDB (``memories.embedding``): its components as
little-endian float16, 2 bytes each.

float32 took twice the bytes for no ranking it changes. A component rounds by at most
2**-11 of itself; the exact copies in the vector index are float16 for the same reason,
and over 20,000 random unit vectors of 384 dimensions cosine similarity moved by 4.9e-5
at most (``memoryd.crypto.exact_copy``, ``tests/unit/test_exact_copy.py``). Half the
bytes: 768 less a memory (at 384 dimensions) on disk, through DuckDB's log at each
write, and in each read of stored vectors. Search works in float32: vectors are
widened as they are read. Migration 0003 converted stores written before.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

STORED = np.dtype("<f2")


def vector_blob(vector: np.ndarray) -> bytes:
    """The stored form of one vector."""
    return np.asarray(vector).astype(STORED).tobytes()


def vector_blobs(vectors: np.ndarray) -> list[bytes]:
    """The stored form of each row of ``vectors``."""
    rows = np.ascontiguousarray(np.asarray(vectors).astype(STORED))
    return [row.tobytes() for row in rows]


def blob_width(dim: int) -> int:
    """The bytes of a stored vector of ``dim`` components."""
    return dim * STORED.itemsize


def blobs_matrix(blobs: Sequence[bytes]) -> np.ndarray:
    """Stored vectors of one size (one model's) as one float32 matrix, a row each."""
    if not blobs:
        return np.zeros((0, 0), dtype=np.float32)
    return buffer_matrix(np.frombuffer(b"".join(blobs), dtype=np.uint8), len(blobs))


def buffer_matrix(buffer: np.ndarray, rows: int) -> np.ndarray:
    """Equal-width stored vectors laid end to end in a byte array (an Arrow binary
    column's data, or joined blobs), as one float32 matrix."""
    return widen(buffer.view(STORED).reshape(rows, -1))


def widen(halves: np.ndarray) -> np.ndarray:
    """float16 values as float32, exactly as ``astype`` gives them, in a third of its
    time (1M vectors of 384: 0.17 s against 0.5 s, which was most of filling the RAM
    vectors at start). numpy converts each half on its own; here the bits move as
    integers (``half_bits``, ``half_magnitudes``), then the sign is put back.
    Infinities and NaNs, which have no place in a vector, go through ``astype``."""
    words, signs = half_bits(halves)
    special = words >= 0x7C00  # all exponent bits set
    floats = half_magnitudes(words)
    words |= signs
    if special.any():
        floats[special] = np.asarray(halves, dtype=STORED)[special].astype(np.float32)
    return floats


def half_bits(halves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float16 values as (their magnitudes' bits, their sign bits), each in a uint32
    word: the magnitudes' bits are in order as the magnitudes are."""
    words = np.asarray(halves, dtype=STORED).view(np.int16).astype(np.int32).view(np.uint32)
    signs = words & np.uint32(0x8000_0000)  # sign-extended: the top bit is the sign
    words &= np.uint32(0x7FFF)
    return words, signs


def half_magnitudes(words: np.ndarray) -> np.ndarray:
    """``half_bits``' magnitudes (finite ones) as float32, in their own words: the
    exponent and mantissa shifted into a float's places, then multiplied by 2**112 to
    re-bias the exponent from 15 to 127 (which makes subnormal halves normal floats)."""
    words <<= 13
    floats = words.view(np.float32)
    floats *= np.float32(2.0**112)
    return floats
