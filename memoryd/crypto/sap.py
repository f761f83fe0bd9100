"""Approximate distance-comparison-preserving encryption of vectors: scale-and-perturb.

SAP is the scheme of Fuchsbauer, Ghosal, Hauke and O'Neill, "Approximate Distance-Comparison-
Preserving Symmetric Encryption" (SCN 2022, eprint 2021/1666). With a secret scale ``s`` and
a PRF key ``K``, a vector ``m`` and a fresh nonce ``n``::

    coins = PRF(K, n)
    u  ~ N(0, I_d)          x' ~ U(0, 1)          (both drawn from the coins)
    x  = (s * beta / 4) * x' ** (1 / d)
    c  = s * m + u * x / |u|

``u * x / |u|`` is a point drawn uniformly from the ball of radius ``s * beta / 4``, so the
distance between two ciphertexts is ``s`` times the plaintext distance, give or take
``s * beta / 2``: if ``|m - q| < |m' - q| - beta``, the ciphertexts compare the same way.
A nearest-neighbour search over ciphertexts therefore finds good candidates, and the exact
vectors (in the encrypted DuckDB file, and AES-GCM-encrypted copies beside the ciphertexts:
``memoryd.crypto.exact_copy``) re-rank them. On top of the paper's scheme
every vector is turned by a secret random rotation (an orthogonal matrix drawn from the
key); a rotation is an isometry, so it changes no distance.

Why a rotation and not the permutation of dimensions DESIGN.md first suggested: sentence
embeddings are unit vectors, so ``c / |c|`` is the (permuted) plaintext up to the small
perturbation, and each embedding dimension has a statistical signature of its own (mean,
spread, correlations). With a few thousand ciphertexts and public text embedded by the same
model, matching those signatures recovered 99-100% of a secret permutation here, and with
it vectors at cosine 0.997 to the truth. A random rotation mixes every dimension into every
other one, leaving no per-coordinate signature to align; an eigenvector-alignment attempt
on it reached cosine 0.18. (That is evidence, not a proof: docs/security.md says what SAP
does and does not hide.)

Queries are never stored, so :meth:`SapCipher.encrypt_query` only scales and rotates.
Ciphertexts are never decrypted, so the nonces are not kept.

How the coins are drawn (and why it is as good as one nonce per vector): each call to
:meth:`SapCipher.encrypt` draws a fresh random 16-byte nonce per block of up to
``_BLOCK_ROWS`` rows, and ``PRF(K, n)`` is HMAC-SHA256 keying an AES-256-CTR stream: a
pseudo-random stream long enough for every row of the block, every row getting its own
distinct stretch of it. That is the paper's ``PRF(K, n)`` evaluated once per block instead
of once per row, which costs nothing in security because the nonce is fresh and the row
coins never overlap. Normals come from the stream by Box-Muller (in float32 from 24-bit
uniforms for the perturbations' directions, which only need isotropy; in float64 from
53-bit uniforms for the rotation and the radii). AES-CTR rather than
numpy's PCG64 because PCG64 is not a cryptographic generator, and the AES path is fast
enough (10,000 x 384 in about a tenth of a second).

Key material comes from :func:`memoryd.crypto.keys.derive`. The scale and the rotation are
derived with our own code (HKDF; the rotation from an AES-CTR stream of normals, then a QR
decomposition with its signs fixed), never with numpy's generators, whose streams may change
between numpy versions: a changed rotation would silently make every stored ciphertext
incomparable with new queries. LAPACK builds may differ in the last bits of the QR; that
moves distances by ~1e-15 and is harmless.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from memoryd.crypto.keys import derive, fingerprint

SCHEME_VERSION = 2  # 1: permutation of dimensions; 2: random rotation
DEFAULT_BETA = 0.3
MIN_SCALE = 16.0
MAX_SCALE = 4096.0
NONCE_BYTES = 16
# Rows per nonce. Bounds the float64 working set to a few MiB per array.
_BLOCK_ROWS = 2048


class SapCipher:
    """Encrypts vectors of one dimension under one data key.

    Two ciphers built from the same key and dimension produce comparable ciphertexts
    (the same scale and rotation), across processes and numpy versions.
    """

    def __init__(self, dek: bytes, dim: int, beta: float = DEFAULT_BETA) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        beta = float(beta)
        # beta = 0 would publish s * m: the plaintext up to one number.
        if not (math.isfinite(beta) and beta > 0):
            raise ValueError(f"beta must be a positive number, got {beta!r}")
        self.dim = dim
        self.beta = beta
        self._scale = _scale(derive(dek, "sap-scale", 8))
        self._prf_key = derive(dek, "sap-prf")
        self._rotation = _rotation(derive(dek, "sap-rotation"), dim)
        # Stored vectors are encrypted in float32 (``encrypt``); queries, one vector at a
        # time, in float64.
        self._rotation32 = self._rotation.astype(np.float32)
        self._radius = self._scale * beta / 4.0
        # Changes whenever ciphertexts made by this cipher stop being comparable with
        # (or as accurate as) ones made before: another key, dimension, beta or scheme.
        self.params_id = f"sap{SCHEME_VERSION}-d{dim}-b{beta:g}-{fingerprint(dek)}"

    def __repr__(self) -> str:
        return f"SapCipher(dim={self.dim}, beta={self.beta:g})"

    def encrypt(self, vectors: np.ndarray) -> np.ndarray:
        """Encrypt vectors for storage: ``(n, dim)`` in, ``(n, dim)`` float32 out.

        Fresh randomness every call: the same vector never encrypts the same way twice.
        A single 1-D vector is accepted and gives a 1-D result.

        In float32, in place where it can be: 1,000 x 384 took 26.0 ms with float64
        normals and arithmetic, and 8.4-9.2 ms like this, most of which is still first
        touches of fresh pages (~1,800 minor faults a call; ``/tmp`` micro-benchmarks,
        docs/performance-log.md). A ciphertext is then off by at most ~2.5e-6 of the
        perturbation's radius (float64 then cast: 2.4e-7), nothing beside the
        perturbation itself.
        """
        m = self._validated(vectors, np.float32)
        rows = m.reshape(-1, self.dim)
        out = np.empty(rows.shape, dtype=np.float32)
        scale = np.float32(self._scale)
        for start in range(0, rows.shape[0], _BLOCK_ROWS):
            block = rows[start : start + _BLOCK_ROWS]
            c = self._perturbation(block.shape[0])
            c += scale * block
            np.matmul(c, self._rotation32, out=out[start : start + block.shape[0]])
        return out.reshape(m.shape)

    def encrypt_query(self, vector: np.ndarray) -> np.ndarray:
        """Transform a query for search over ciphertexts: ``s * rotated(q)``, no noise.

        1-D in, 1-D out; a 2-D batch of queries is accepted too. Float32.
        """
        q = self._validated(vector)
        return (self._scale * (q @ self._rotation)).astype(np.float32)

    def _perturbation(self, rows: int) -> np.ndarray:
        """``rows`` points drawn uniformly from the ball of radius ``s * beta / 4``,
        float32."""
        coins = _CoinStream(self._prf_key, secrets.token_bytes(NONCE_BYTES))
        directions = coins.directions_normals(rows * self.dim).reshape(rows, self.dim)
        norms = np.linalg.norm(directions, axis=1).astype(np.float64)
        # A zero Gaussian vector has probability zero; guard the division anyway.
        norms[norms == 0.0] = 1.0
        radii = self._radius * coins.uniforms(rows) ** (1.0 / self.dim)
        directions *= (radii / norms).astype(np.float32)[:, None]
        return directions

    def _validated(self, vectors: np.ndarray, dtype: type = np.float64) -> np.ndarray:
        m: np.ndarray = np.asarray(vectors, dtype=dtype)
        if m.ndim not in (1, 2) or m.shape[-1] != self.dim:
            raise ValueError(
                f"expected vectors of dimension {self.dim} (shape (n, {self.dim}) or "
                f"({self.dim},)), got shape {m.shape}"
            )
        if not np.isfinite(m).all():
            raise ValueError("vectors must be finite (no NaN or infinity)")
        return m


class _CoinStream:
    """``PRF(K, nonce)`` as a stream of uniform and normal floats.

    HMAC-SHA256(K, label || nonce) keys AES-256-CTR; the keystream is read as 64-bit words.
    Each nonce gets its own AES key, so the counter can start at zero.
    """

    def __init__(self, prf_key: bytes, nonce: bytes) -> None:
        stream_key = hmac.new(prf_key, b"memoryd/sap-coins/v1" + nonce, hashlib.sha256).digest()
        self._encryptor = Cipher(algorithms.AES(stream_key), modes.CTR(bytes(16))).encryptor()

    def uniforms(self, count: int) -> np.ndarray:
        """``count`` floats in the open interval (0, 1), 53 random bits each."""
        words = np.frombuffer(self._encryptor.update(bytes(8 * count)), dtype="<u8")
        values = (words >> np.uint64(11)).astype(np.float64)
        values += 0.5
        values *= 2.0**-53
        return values

    def uniforms24(self, count: int) -> np.ndarray:
        """``count`` float32s in the open interval (0, 1), 24 random bits each."""
        words = np.frombuffer(self._encryptor.update(bytes(4 * count)), dtype="<u4")
        values = (words >> np.uint32(8)).astype(np.float32)
        values += np.float32(0.5)
        values *= np.float32(2.0**-24)
        return values

    def directions_normals(self, count: int) -> np.ndarray:
        """``count`` standard normal float32s (Box-Muller over 24-bit uniforms), for the
        perturbations' directions: a direction only needs isotropy, and float32's SIMD
        logarithm and cosine made these 0.7 ms for 384,000 against 12.1 ms for
        :meth:`normals` (whose float64 cosine numpy computes one value at a time), half of
        what encrypting 1,000 vectors cost. The tails stop at 5.9 standard deviations
        (a normal passes that once in 2.6e8 draws). The radii keep 53-bit uniforms, and
        the rotation's derivation :meth:`normals`, which must never change."""
        return _box_muller(self.uniforms24(2 * ((count + 1) // 2)), count)

    def normals(self, count: int) -> np.ndarray:
        """``count`` standard normal floats (Box-Muller)."""
        return _box_muller(self.uniforms(2 * ((count + 1) // 2)), count)


def _box_muller(u: np.ndarray, count: int) -> np.ndarray:
    """``count`` standard normals, in ``u``'s float type, from an even number of uniforms
    in (0, 1): the first half give the radii, the second the angles."""
    half, kind = len(u) // 2, u.dtype.type
    radius = np.sqrt(kind(-2.0) * np.log(u[:half]))
    angle = kind(2.0 * np.pi) * u[half:]
    out = np.empty(2 * half, dtype=u.dtype)
    np.multiply(radius, np.cos(angle), out=out[:half])
    np.multiply(radius, np.sin(angle), out=out[half:])
    return out[:count]


def _scale(derived: bytes) -> float:
    """A secret scale in [MIN_SCALE, MAX_SCALE) from 8 derived bytes."""
    fraction = int.from_bytes(derived, "big") / 2.0**64
    return MIN_SCALE + (MAX_SCALE - MIN_SCALE) * fraction


def _rotation(key: bytes, dim: int) -> np.ndarray:
    """A random orthogonal ``dim x dim`` matrix (Haar-distributed) determined by ``key``.

    A Gaussian matrix from the key's AES-CTR stream, orthogonalised by QR; multiplying each
    column by the sign of R's diagonal makes the result unique and uniformly distributed.
    """
    normals = _CoinStream(key, b"rotation").normals(dim * dim).reshape(dim, dim)
    q, r = np.linalg.qr(normals)
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    rotation: np.ndarray = q * signs
    return rotation
