"""The exact copies the vector index returns with its candidates: float16 close enough to
rank by, opened only under the right key and for the right memory."""

from __future__ import annotations

import secrets

import numpy as np

from memoryd.crypto.exact_copy import ExactCopyCipher

DIM = 384


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    rows = rng.standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_copies_open_to_the_vectors_within_float16_precision():
    rng = np.random.default_rng(7)
    copies = ExactCopyCipher(secrets.token_bytes(32), DIM)
    vectors, queries = unit_rows(rng, 500), unit_rows(rng, 20)
    ids = [f"m{n}" for n in range(500)]
    sealed = copies.encrypt(ids, vectors)
    assert {len(c) for c in sealed} == {copies.width}
    opened, matrix = copies.decrypt(ids, sealed)
    assert opened == list(range(500))
    # Cosine similarity moves by ~1e-4: far below the gaps ranking acts on.
    error = np.abs(matrix @ queries.T - vectors @ queries.T).max()
    assert 0 < error < 5e-4


def test_the_plaintext_is_not_in_the_copies_and_no_two_copies_repeat():
    rng = np.random.default_rng(8)
    copies = ExactCopyCipher(secrets.token_bytes(32), DIM)
    vector = unit_rows(rng, 1)
    first, second = copies.encrypt(["a", "a"], np.vstack([vector, vector]))
    assert first != second  # a fresh nonce for every copy
    plain = vector.astype(np.float16).tobytes()
    assert plain[:16] not in first and plain[:16] not in second


def test_a_copy_opens_only_for_its_own_memory_and_key():
    rng = np.random.default_rng(9)
    dek = secrets.token_bytes(32)
    copies = ExactCopyCipher(dek, DIM)
    vectors = unit_rows(rng, 4)
    sealed = copies.encrypt(["a", "b", "c", "d"], vectors)
    damaged = bytearray(sealed[2])
    damaged[40] ^= 1
    # b's copy under c's id, a damaged copy, a missing one, a truncated one: left out.
    opened, matrix = copies.decrypt(
        ["a", "c", "c", "d", "e"], [sealed[0], sealed[1], bytes(damaged), None, sealed[3][:-1]]
    )
    assert opened == [0]
    assert np.allclose(matrix[0], vectors[0], atol=1e-3)
    other_key = ExactCopyCipher(secrets.token_bytes(32), DIM).encrypt(["a"], vectors[:1])
    assert copies.decrypt(["a"], other_key)[0] == []
    # The same data key opens copies made by another instance (a restarted daemon).
    assert ExactCopyCipher(dek, DIM).decrypt(["d"], [sealed[3]])[0] == [0]
