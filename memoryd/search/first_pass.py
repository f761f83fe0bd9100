"""A first pass over fewer dimensions that proves which RAM vectors can be a search's
nearest, so that only those are scored in full.

The RAM scan reads every int8 row: 38 MB at 100k memories of 384 dimensions, more than
the reference machine's 32 MB L3 cache, so each search evicts everything else a request
touches. In the daemon at 100k (hash embedder, 400 vector searches, functions timed) the
rest of a search took 1.41 ms against 1.05 at 30k memories, whose rows fit the cache.

So each row also has a code over the store's ``DIMS`` principal axes (``Basis``: the
mean and top principal axes of a sample of the stored unit vectors), 64 bytes instead of
384, with what the code leaves out bounded per row. For a query ``q`` (the unit vector
of its int8 code, which is what the full scan ranks by) and a row ``x`` (its code's unit
vector), with ``P`` the axes and ``m`` the mean:

    q·x = q·m + (Pᵀq)·(Pᵀ(x−m)) + q⊥·x⊥

where ``x⊥`` is what ``P`` misses of ``x−m`` and ``q⊥`` of ``q``. The estimate uses the
int8 codes of ``Pᵀq`` and ``Pᵀ(x−m)``; by Cauchy-Schwarz it is within
``|q⊥|·|x⊥| + |Pᵀq|·e_x + f·d`` of the full score, where ``e_x`` is the rounding of the
row's code, ``f`` that of the query's and ``d`` the largest dequantized code. The
search takes the best estimates, scores them in full, and then scores in full every
row whose estimate plus its bound reaches the k-th best full score found: no other row
can be among the k best. The result is the full scan's (``tests/unit/test_first_pass``
compares them).

That works when the axes hold most of each vector. On the real model's vectors of the
100k bench texts 64 axes held 95% of the variance, and a search scored ~260 rows in full
(p50; all 200 queries gave the full scan's top 10). On the ``hash`` embedder's sparse
vectors the bounds are loose: ~14,000 rows p50, often more than ``MAX_SHARE``, and then
the search scans in full after all. ``QuantizedVectors`` stops trying for a while after
each such fallback (``FirstPassPace``).

Trained when the RAM vectors reach ``search.first_pass_min_rows`` and again whenever
they have doubled since, once writes pause; rows that arrive or change later are coded
with the basis they find (their bounds stay exact, only looser if the store drifts): a
few at once, an import's after it; meanwhile a search scores the rows not coded yet in
full, while they are at most ``MAX_SHARE`` of the rows. Held in RAM only, like the int8
rows.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from memoryd.search.columns import grow_columns
from memoryd.search.int8 import quantize_rows
from memoryd.search.products import row_products

DIMS = 64  # axes kept: 64 + 12 bytes a row beside the full row's 384 + 8
SAMPLE_ROWS = 8192  # rows a basis is trained on
CHUNK_ROWS = 1024  # rows converted to float at a time: the daemon keeps what it allocates
ITERATIONS = 12  # rounds of subspace iteration that find the axes (``train_basis``)
# A search whose bounds leave more than this share of the rows to score in full scans
# them all instead: gathering scattered rows costs more per row than the streaming scan.
MAX_SHARE = 0.1
# Added to every bound: float32 rounding of the scores (magnitudes ≤ 2) is far below it.
EPSILON = 1e-4
# Added to each computed residual norm: sqrt of a float32 difference that cancels.
RESIDUAL_MARGIN = 1e-3


class Basis(NamedTuple):
    mean: np.ndarray  # (dim,) float32
    axes: np.ndarray  # (DIMS, dim) float32: orthonormal rows, the top principal axes
    rows: int  # RAM vectors when it was trained


def _orthonormal_columns(matrix: np.ndarray) -> np.ndarray:
    """Modified Gram-Schmidt on float64 columns (in place): orthonormal columns that span
    theirs. A column with (next to) nothing left outside the earlier ones, as a scatter
    matrix of rank below the axes' number gives, is replaced by a random direction: the
    bounds need orthonormal axes, whatever they hold."""
    rng = np.random.default_rng(1)
    for j in range(matrix.shape[1]):
        column = matrix[:, j]
        size = float(np.sqrt(np.einsum("i,i->", column, column)))
        for _ in range(8):
            if j:
                earlier = matrix[:, :j]
                column -= np.einsum("ij,j->i", earlier, np.einsum("ij,i->j", earlier, column))
            norm = float(np.sqrt(np.einsum("i,i->", column, column)))
            if np.isfinite(norm) and norm > 1e-9 * max(size, 1e-300):
                break
            column[:] = rng.standard_normal(len(column))
            size = float(np.sqrt(np.einsum("i,i->", column, column)))
        column /= norm
    return matrix


def train_basis(codes: np.ndarray, inv_norms: np.ndarray, rows: int, dims: int = DIMS
                ) -> Basis:
    """The mean and top ``dims`` principal axes of a sample of unit vectors, given as
    int8 codes and their inverse norms.

    The axes come from ``ITERATIONS`` rounds of subspace iteration on the scatter matrix
    from a fixed random start. On the real model's vectors of 100k bench texts, 64 axes
    from 12 rounds held 95.42% of the sample's variance, and the exact top 64
    eigenvectors 95.42% (``/tmp/s27/subspace.py``). Any orthonormal axes keep the first
    pass's answers exact (its bounds hold for any); better ones only make it faster.
    """
    n, dim = codes.shape
    total = np.zeros(dim)
    scatter = np.zeros((dim, dim))
    for start in range(0, n, CHUNK_ROWS):
        chunk = codes[start : start + CHUNK_ROWS].astype(np.float32)
        chunk *= inv_norms[start : start + CHUNK_ROWS, None]
        total += chunk.sum(axis=0, dtype=np.float64)
        columns = np.ascontiguousarray(chunk.T)
        scatter += row_products(columns, columns, "float64")
    mean = total / max(n, 1)
    # About the mean: the sum of x xᵀ minus n m mᵀ.
    scatter -= n * np.outer(mean, mean)
    dims = min(dims, dim)
    axes = _orthonormal_columns(np.random.default_rng(0).standard_normal((dim, dims)))
    for _ in range(ITERATIONS):
        # scatter is symmetric, so its rows' products with the axes are scatter @ axes.
        axes = _orthonormal_columns(row_products(scatter, np.ascontiguousarray(axes.T), "float64"))
    return Basis(mean.astype(np.float32), np.ascontiguousarray(axes.T, dtype=np.float32), rows)


class QueryCode(NamedTuple):
    code: np.ndarray  # (1, DIMS) int8
    scale: float
    offset: float  # q·m
    residual: float  # |q⊥| (with its margin)
    norm: float  # |Pᵀq|
    rounding: float  # f


COLUMNS = ("codes", "scale", "residual", "rounding")  # one row each per RAM vector


class FirstPass:
    """Reduced codes and bounds for rows ``[0, built)`` of ``QuantizedVectors``, in its
    row order. Owned by the same thread."""

    def __init__(self, basis: Basis, capacity: int):
        self.basis = basis
        dims = basis.axes.shape[0]
        self.codes = np.zeros((capacity, dims), dtype=np.int8)
        self.scale = np.zeros(capacity, dtype=np.float32)
        self.residual = np.zeros(capacity, dtype=np.float32)  # |x⊥|
        self.rounding = np.zeros(capacity, dtype=np.float32)  # e_x
        self.dequantized_max = 0.0  # d
        self.built = 0  # rows coded so far; a search scores the others in full

    @property
    def nbytes(self) -> int:
        return sum(int(getattr(self, name).nbytes) for name in COLUMNS)

    def grow(self, capacity: int) -> None:
        grow_columns(self, COLUMNS, capacity)

    def code(self, rows: np.ndarray, unit: np.ndarray) -> None:
        """Code ``rows`` from their unit vectors (float32, one row each)."""
        centred = unit - self.basis.mean
        projected = row_products(centred, self.basis.axes)
        codes, scale = quantize_rows(projected)
        dequantized = codes * scale[:, None]
        self.codes[rows] = codes
        self.scale[rows] = scale
        left = np.einsum("ij,ij->i", centred, centred) - np.einsum(
            "ij,ij->i", projected, projected)
        self.residual[rows] = np.sqrt(np.maximum(left, 0.0)) + RESIDUAL_MARGIN
        error = dequantized - projected
        self.rounding[rows] = np.sqrt(np.einsum("ij,ij->i", error, error))
        if len(rows):
            self.dequantized_max = max(self.dequantized_max, float(
                np.sqrt(np.einsum("ij,ij->i", dequantized, dequantized).max())))

    def move(self, live: np.ndarray) -> None:
        """Rows ``live`` become rows ``0..len(live)`` (a compaction)."""
        n = len(live)
        for name in COLUMNS:
            array = getattr(self, name)
            array[:n] = array[live]
        self.built = n

    def encode(self, query_unit: np.ndarray) -> QueryCode:
        """The query's code, from the unit vector of its full int8 code."""
        projected = row_products(query_unit.reshape(1, -1), self.basis.axes)
        code, scale = quantize_rows(projected)
        error = code * scale[0] - projected
        norm = float(np.sqrt(np.einsum("ij,ij->", projected, projected)))
        left = float(np.einsum("i,i->", query_unit, query_unit)) - norm * norm
        return QueryCode(
            code=code,
            scale=float(scale[0]),
            offset=float(np.einsum("i,i->", query_unit, self.basis.mean)),
            residual=float(np.sqrt(max(left, 0.0))) + RESIDUAL_MARGIN,
            norm=norm,
            rounding=float(np.sqrt(np.einsum("ij,ij->", error, error))),
        )

    def estimates(self, query: QueryCode, dots: np.ndarray, rows: int
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Each of the first ``rows`` rows' estimated full score and its upper bound,
        from the int8 dot products of the query's code with the rows' codes."""
        estimate = dots
        estimate *= self.scale[:rows]
        estimate *= query.scale
        estimate += query.offset
        bound = self.residual[:rows] * query.residual
        bound += self.rounding[:rows] * query.norm
        bound += query.rounding * self.dequantized_max + EPSILON
        bound += estimate
        return estimate, bound
