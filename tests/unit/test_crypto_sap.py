"""Scale-and-perturb vector encryption: search quality over ciphertexts, and the noise."""

from __future__ import annotations

import numpy as np
import pytest

from memoryd.crypto import keys
from memoryd.crypto.sap import SapCipher

DIM = 384
FETCH = 40  # 4x over-fetch for a top-10 answer
K = 10


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def corpus() -> tuple[np.ndarray, np.ndarray]:
    """20k clustered unit vectors and 100 queries near (not equal to) stored vectors."""
    rng = np.random.default_rng(20221666)
    centres = unit(rng.standard_normal((200, DIM)))
    members = centres[rng.integers(0, 200, 20_000)]
    stored = unit(members + rng.standard_normal((20_000, DIM)) / np.sqrt(DIM))
    near = stored[rng.choice(20_000, 100, replace=False)]
    queries = unit(near + 0.3 * rng.standard_normal((100, DIM)) / np.sqrt(DIM))
    return stored.astype(np.float32), queries.astype(np.float32)


def recall_at_10(dek: bytes, beta: float, stored: np.ndarray, queries: np.ndarray) -> float:
    """Top 40 by L2 over ciphertexts, exact cosine re-rank, compared with exact top 10."""
    cipher = SapCipher(dek, DIM, beta)
    encrypted = cipher.encrypt(stored).astype(np.float64)
    encrypted_queries = cipher.encrypt_query(queries).astype(np.float64)
    # Squared L2 up to a per-query constant: |c|^2 - 2 c.q
    distances = (encrypted**2).sum(axis=1)[None, :] - 2.0 * encrypted_queries @ encrypted.T
    candidates = np.argpartition(distances, FETCH, axis=1)[:, :FETCH]

    cosine = queries.astype(np.float64) @ stored.astype(np.float64).T
    exact = np.argsort(-cosine, axis=1)[:, :K]
    found = 0
    for row, cands in enumerate(candidates):
        reranked = cands[np.argsort(-cosine[row, cands])[:K]]
        found += len(set(reranked.tolist()) & set(exact[row].tolist()))
    return found / (K * len(queries))


def test_recall_with_over_fetch_and_exact_rerank(corpus) -> None:
    stored, queries = corpus
    recall = recall_at_10(keys.generate_data_key(), 0.3, stored, queries)
    print(f"recall@10 beta=0.3: {recall:.3f}")
    assert recall >= 0.98


def test_larger_beta_costs_recall(corpus) -> None:
    stored, queries = corpus
    dek = keys.generate_data_key()
    small = recall_at_10(dek, 0.3, stored, queries)
    large = recall_at_10(dek, 3.0, stored, queries)
    print(f"recall@10 beta=0.3: {small:.3f}, beta=3.0: {large:.3f}")
    assert large < 0.95
    assert large < small - 0.05


def test_ciphertext_is_perturbed_not_just_scaled() -> None:
    cipher = SapCipher(keys.generate_data_key(), DIM, 0.3)
    m = unit(np.random.default_rng(1).standard_normal(DIM))

    c = cipher.encrypt(m[None, :])[0].astype(np.float64)
    scaled = cipher.encrypt_query(m).astype(np.float64)  # s * permuted(m), no noise
    s = np.linalg.norm(scaled)

    # Relative to s, the noise is a point in the ball of radius beta / 4.
    noise = np.linalg.norm(c - scaled) / s
    assert 0.01 < noise <= 0.3 / 4 * (1 + 1e-5)
    # The best scalar fit of the ciphertext onto the plaintext leaves a large residual:
    # the permutation moves the coordinates and the perturbation moves the point.
    alpha = c @ m / (m @ m)
    assert np.linalg.norm(c - alpha * m) > 0.5 * np.linalg.norm(c)
    # Fresh randomness per encryption.
    again = cipher.encrypt(m[None, :])[0]
    assert not np.array_equal(again, c.astype(np.float32))
    assert np.linalg.norm(again - c) > 0.01 * s


def test_perturbation_fills_the_ball_uniformly() -> None:
    beta = 0.5
    cipher = SapCipher(keys.generate_data_key(), DIM, beta)
    m = unit(np.random.default_rng(2).standard_normal((4000, DIM)))

    scaled = cipher.encrypt_query(m).astype(np.float64)
    s = np.linalg.norm(scaled[0]) / np.linalg.norm(m[0])
    noise = (cipher.encrypt(m).astype(np.float64) - scaled) / s
    radii = np.linalg.norm(noise, axis=1)
    directions = noise / radii[:, None]

    assert radii.max() <= beta / 4 * (1 + 1e-5)
    # Uniform in a 384-dimensional ball: the radius is r * x'^(1/d), nearly always close to r.
    assert np.median(radii) > 0.99 * beta / 4
    # Isotropic directions: no coordinate is favoured, no preferred direction.
    assert np.abs(directions.mean(axis=0)).max() < 0.1
    assert np.allclose((directions**2).mean(axis=0), 1 / DIM, rtol=0.25)
    assert np.linalg.norm(directions.mean(axis=0)) < 0.05


def test_same_key_gives_comparable_ciphertexts() -> None:
    dek = keys.generate_data_key()
    q = unit(np.random.default_rng(3).standard_normal(DIM))
    first, second = SapCipher(dek, DIM), SapCipher(dek, DIM)
    assert np.array_equal(first.encrypt_query(q), second.encrypt_query(q))
    assert first.params_id == second.params_id


# First row of the rotation derived from bytes(range(32)), as computed when it was made.
PINNED_ROTATION_ROW0 = [0.087726, 0.004859, 0.075327, -0.043471]


def scale_and_rotation(cipher: SapCipher) -> tuple[float, np.ndarray]:
    """Recover s and the rotation through the public API: the queries of the basis
    vectors are the rows of s * R."""
    rows = cipher.encrypt_query(np.eye(DIM)).astype(np.float64)
    s = float(np.linalg.norm(rows[0]))
    return s, rows / s


def test_different_keys_give_different_scales_and_rotations() -> None:
    a = SapCipher(keys.generate_data_key(), DIM)
    b = SapCipher(keys.generate_data_key(), DIM)
    scale_a, rot_a = scale_and_rotation(a)
    scale_b, rot_b = scale_and_rotation(b)

    for rot in (rot_a, rot_b):
        assert np.allclose(rot @ rot.T, np.eye(DIM), atol=1e-5)  # orthogonal
        # Dense: every output dimension mixes many inputs (a permutation would put a
        # single 1 in each row, which a statistical attack can line up).
        assert np.abs(rot).max() < 0.35
    assert not np.allclose(rot_a, rot_b, atol=1e-3)
    assert scale_a != scale_b
    assert 16 <= scale_a < 4096 and 16 <= scale_b < 4096
    assert a.params_id != b.params_id


def test_scale_and_rotation_known_answer() -> None:
    # Pins the derivation: stored ciphertexts are only comparable with queries if the
    # scale and rotation never change for a given key (this is why they are derived
    # without numpy's generators, whose streams may change between releases).
    cipher = SapCipher(bytes(range(32)), DIM)
    s, rot = scale_and_rotation(cipher)
    assert s == pytest.approx(2652.953422, rel=1e-6)
    assert rot[0, :4] == pytest.approx(PINNED_ROTATION_ROW0, abs=1e-5)


def test_encrypt_shapes_and_types() -> None:
    cipher = SapCipher(keys.generate_data_key(), DIM)
    m = unit(np.random.default_rng(4).standard_normal((3, DIM)))

    assert cipher.encrypt(m).shape == (3, DIM)
    assert cipher.encrypt(m).dtype == np.float32
    assert cipher.encrypt(m[0]).shape == (DIM,)
    assert cipher.encrypt(np.empty((0, DIM))).shape == (0, DIM)
    assert cipher.encrypt_query(m[0]).shape == (DIM,)
    assert cipher.encrypt_query(m[0]).dtype == np.float32
    assert cipher.encrypt_query(m).shape == (3, DIM)
    assert np.array_equal(cipher.encrypt_query(m)[1], cipher.encrypt_query(m[1]))


@pytest.mark.parametrize("shape", [(DIM + 1,), (2, DIM - 1), (2, 2, DIM), ()])
def test_dimension_mismatch_is_refused(shape) -> None:
    cipher = SapCipher(keys.generate_data_key(), DIM)
    with pytest.raises(ValueError, match="dimension"):
        cipher.encrypt(np.zeros(shape))
    with pytest.raises(ValueError, match="dimension"):
        cipher.encrypt_query(np.zeros(shape))


def test_non_finite_vectors_are_refused() -> None:
    cipher = SapCipher(keys.generate_data_key(), 4)
    with pytest.raises(ValueError, match="finite"):
        cipher.encrypt(np.array([[0.0, np.nan, 0.0, 1.0]]))
    with pytest.raises(ValueError, match="finite"):
        cipher.encrypt_query(np.array([0.0, np.inf, 0.0, 1.0]))


@pytest.mark.parametrize(
    ("dim", "beta"),
    [(0, 0.3), (-1, 0.3), (DIM, 0.0), (DIM, -1.0), (DIM, float("nan")), (DIM, float("inf"))],
)
def test_bad_parameters_are_refused(dim: int, beta: float) -> None:
    with pytest.raises(ValueError):
        SapCipher(keys.generate_data_key(), dim, beta)


def test_repr_shows_no_secret() -> None:
    assert repr(SapCipher(bytes(range(32)), DIM)) == "SapCipher(dim=384, beta=0.3)"


def test_encrypts_ten_thousand_vectors() -> None:
    cipher = SapCipher(keys.generate_data_key(), DIM)
    vectors = unit(np.random.default_rng(5).standard_normal((10_000, DIM))).astype(np.float32)
    encrypted = cipher.encrypt(vectors)
    assert encrypted.shape == (10_000, DIM)
    assert encrypted.dtype == np.float32
    assert np.isfinite(encrypted).all()
    # Rows from different nonce blocks are all perturbed.
    scaled = cipher.encrypt_query(vectors)
    assert (np.linalg.norm(encrypted - scaled, axis=1) > 0).all()


def test_direction_normals_are_standard_normal_float32() -> None:
    from memoryd.crypto.sap import _CoinStream

    z = _CoinStream(b"k" * 32, b"n" * 16).directions_normals(400_001)
    assert z.dtype == np.float32 and z.shape == (400_001,)
    assert abs(float(z.mean())) < 0.01 and abs(float(z.var()) - 1.0) < 0.01
    assert np.abs(z).max() < 5.9  # 24-bit uniforms: the tails stop there
    assert abs(float((np.abs(z) < 1.0).mean()) - 0.6827) < 0.005  # the normal's shape
    # Each draw from its own stretch of the stream (float32 values collide now and then).
    assert len(np.unique(z)) > 390_000
