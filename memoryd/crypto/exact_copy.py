"""Exact copies of vectors, encrypted row by row, for the vector index to return with its
candidates.

The index's ``vector`` column holds SAP ciphertexts (``memoryd.crypto.sap``): close enough
to find candidates, too noisy to rank them. Ranking scores each candidate with its exact
vector. Read from DuckDB after the ANN search, the exact vectors of ~100 candidates took
~9 ms of a 33 ms hybrid search at 1M memories (each 1.5 KB value sits in a DuckDB block of
its own, read and decrypted whole); Lance returned a column of that size with the ANN
results for ~2 ms more (docs/performance-log.md). So each row of the index carries an
encrypted copy of its vector::

    copy = nonce || AES-256-GCM(key, nonce, float16(vector), associated data = memory id)

- **float16**: half the bytes of float32 on disk and in each read. A component rounds by at
  most 2**-11 of itself: over 20,000 random unit vectors of 384 dimensions and 50 queries,
  cosine similarity moved by 4.9e-5 at most (``tests/unit/test_exact_copy.py`` bounds it),
  far below the gaps ranking acts on.
- **A fresh random 96-bit nonce per row**, as AES-GCM wants. The key is the data key's
  ``exact-copy`` subkey; rebuilding an index encrypts every row again under it, and NIST's
  bound for random nonces (2**32 encryptions a key) is ~4,000 rebuilds of a 1M store.
- **The memory id as associated data**: a copy moved to another row fails to open instead
  of scoring the wrong memory. A copy that fails to open is left out (the caller reads that
  memory's vector from DuckDB) and logged.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from memoryd.crypto.keys import derive

log = logging.getLogger(__name__)

# Bumped whenever copies made before stop opening, or stop meaning the same: the index
# keeps it in its identity and is rebuilt when it changes.
FORMAT_VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16


class ExactCopyCipher:
    """Encrypts and opens the exact copies of vectors of one dimension under one data key."""

    def __init__(self, dek: bytes, dim: int) -> None:
        self.dim = dim
        self._aead = AESGCM(derive(dek, "exact-copy"))
        self.width = NONCE_BYTES + 2 * dim + TAG_BYTES  # bytes of one copy
        self.params_id = f"f16-gcm{FORMAT_VERSION}"

    def __repr__(self) -> str:
        return f"ExactCopyCipher(dim={self.dim})"

    def encrypt(self, ids: Sequence[str], vectors: np.ndarray) -> list[bytes]:
        """One copy of each row of ``vectors`` (``(n, dim)``), bound to its id."""
        halves = np.asarray(vectors, dtype=np.float16).reshape(len(ids), self.dim)
        nonces = secrets.token_bytes(NONCE_BYTES * len(ids))
        seal = self._aead.encrypt
        copies = []
        for n, memory_id in enumerate(ids):
            nonce = nonces[n * NONCE_BYTES : (n + 1) * NONCE_BYTES]
            copies.append(nonce + seal(nonce, halves[n].tobytes(), memory_id.encode()))
        return copies

    def decrypt(
        self, ids: Sequence[str], copies: Sequence[bytes | None]
    ) -> tuple[list[int], np.ndarray]:
        """The places in ``ids`` whose copy opened, and those vectors (float32, one row
        each). A missing copy, or one that fails to open (damaged, or another row's),
        is left out."""
        opened, plain = [], []
        failed = 0
        open_ = self._aead.decrypt
        for n, (memory_id, copy) in enumerate(zip(ids, copies, strict=True)):
            if copy is None or len(copy) != self.width:
                failed += 1
                continue
            try:
                plain.append(open_(copy[:NONCE_BYTES], copy[NONCE_BYTES:], memory_id.encode()))
            except InvalidTag:
                failed += 1
                continue
            opened.append(n)
        if failed:
            log.warning("%d exact copies in the vector index did not open", failed)
        if not opened:
            return [], np.zeros((0, self.dim), dtype=np.float32)
        matrix = np.frombuffer(b"".join(plain), dtype=np.float16).reshape(len(opened), self.dim)
        return opened, matrix.astype(np.float32)
