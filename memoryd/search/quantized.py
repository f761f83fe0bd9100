"""Nearest-neighbour candidates from int8 vectors held in memory (never written anywhere).

One int8 row per memory and a namespace code per row, in the order the memories
arrived; the ids are 16-byte keys (``IdTable``: ~4 MB at 100k memories, against ~14 MB
as a list and a dict of strings). Deletes leave holes, and the rows are compacted when
holes make a quarter of them. Each vector is scaled so that its largest component is
±127 before rounding: cosine similarity ignores the scale, so every vector keeps the
full int8 range.

Why int8: a query scans every row, and the scan is bound by memory bandwidth. int8 rows
are a quarter of float32 (384 bytes a memory at 384 dimensions), and SimSIMD's int8 dot
product runs several times faster than a float32 matmul over the same rows. Cosine is
the dot product times each row's inverse norm, kept beside the codes: SimSIMD's own int8
cosine recomputes both norms on every query and took 2.5x as long (100k rows, one
thread: 5 ms against 2 ms). The order and the similarities are approximate (within ~0.01
of the exact cosine, docs/search.md): callers over-fetch and rank by these similarities,
or by the exact vectors kept in DuckDB when they read the candidates' rows anyway (a
metadata filter, phrases).

Owned by the event loop thread.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from memoryd.search.columns import grow_columns
from memoryd.search.cores import CoreWatch
from memoryd.search.first_pass import MAX_SHARE, SAMPLE_ROWS, Basis, FirstPass
from memoryd.search.graph import CHECK_MIN_QUERIES, CHECK_QUERIES, NeighbourGraph, Snapshot
from memoryd.search.ids import IdTable
from memoryd.search.int8 import quantize_rows
from memoryd.search.products import row_products, scan_scores

# The scan is bound by memory bandwidth, and two threads halve it (100k rows: 0.86 against
# 1.73 ms) but only with a core to spare: a thread that waits for a core delays the whole
# scan. In-process at 100k memories on the 2-core reference machine (`/tmp` script, 200
# queries, two rounds each): quiet, two threads gave vector p50 5.19 / 4.84 ms against
# 7.98 / 7.78 and hybrid 6.76 / 6.16 against 8.49 / 8.28 (the lexical leg runs beside
# the scan); with one core kept busy by another process, vector 7.97 / 8.01 against
# 7.41 / 6.78 and hybrid 8.00 / 7.97 against 8.41 / 8.46; with both cores busy, two
# threads were worse by up to 2x. So two threads while other processes leave a core
# free (``CoreWatch``), else one. Never more: two already reach most of the bandwidth,
# and the daemon is a guest on the user's machine.
MAX_SCAN_THREADS = 2
# Below this many rows, one thread: it gains at most ~0.2 ms (standalone, 10k rows: 0.10
# against 0.05 ms; 40k: 0.44 against 0.21), and a worker that waits for a core costs
# milliseconds. With two threads at 10k memories, vector search had p95 of 2.9-5.1 x
# its p50 in 4 of 10 bench runs (`scripts/bench.py --sizes 10000 --real 0 --no-peers`);
# with one, at most 1.5 x in 8 runs, for ~0.1 ms more p50 (three paired runs: 1.53-1.67
# against 1.37-1.56 ms).
TWO_THREADS_MIN_ROWS = 32_768
_cores = CoreWatch()
# A search among a few ids scores just their rows, gathered, when they are at most this
# share of the rows; above it, the whole block is scanned and the rest masked. Gathered
# rows of 100k (`/tmp` script, p50): 1,000 0.03 ms, 5,000 0.27, 25,000 1.34; the scan
# 1.74 ms on one thread, 0.84 on two. In-process at 100k, the bench's `vector_tag` (1,000
# tagged memories) spent 2.96 ms p50 of a 7.06 ms search in the masked scan.
GATHER_MAX_SHARE = 0.1
# Holes (deleted rows) are compacted away once they are this share of the rows (and
# there are enough rows to bother): a search scans the holes too.
COMPACT_SHARE = 0.25
COMPACT_MIN_ROWS = 4096
# The first pass (``memoryd.search.first_pass``) hands this many of its best estimates
# (or 4 x the k asked for, if more) to be scored in full before the bounds are applied.
FIRST_PASS_CANDIDATES = 256
# An upsert codes at most this many new rows for the first pass itself; more (an
# import's batch) are left to its builder, which runs once writes pause: coding a
# 1,000-row batch took 1.5 ms of a ~55 ms import call (``/tmp/s27/upsertcost.py``).
FIRST_PASS_INLINE_ROWS = 64
# The first pass picks its best estimates from the threshold of every 16th
# (``_about_largest``).
SELECT_STEP = 16
# After a search found the first pass's bounds too loose and scanned in full, the next
# 2**misses - 1 searches (at most ``FIRST_PASS_SKIP_MAX``) scan in full without trying.
FIRST_PASS_SKIP_MAX = 63


def scan_threads(rows: int) -> int:
    """Threads for one scan of ``rows`` now (see above)."""
    return MAX_SCAN_THREADS if rows >= TWO_THREADS_MIN_ROWS and _cores.spare() else 1


def quantize(vectors: np.ndarray) -> np.ndarray:
    """int8 codes of float rows, each scaled so its largest component is ±127."""
    return quantize_rows(vectors)[0]


def inverse_norms(codes: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.einsum("ij,ij->i", codes, codes, dtype=np.float32))
    return np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)


def _about_largest(values: np.ndarray, count: int, least: int) -> np.ndarray:
    """The places of about the ``count`` largest ``values`` (at least ``least`` of them,
    none of them ``-inf``), in no order: those at or above the ``count``-th largest of
    every ``SELECT_STEP``-th value. Over 100k values 36 us, where ``np.argpartition``
    for the exact ``count`` took 134 us (``/tmp/s28/sel.py``); when the sample's answer
    is too few, too many or ``-inf``, that is what it falls back to."""
    n = len(values)
    if n >= SELECT_STEP * count:
        sample = values[::SELECT_STEP]
        place = len(sample) - max(count // SELECT_STEP, 1)
        threshold = np.partition(sample, place)[place]
        if threshold > -np.inf:
            chosen = np.flatnonzero(values >= threshold)
            if least <= len(chosen) <= 4 * count:
                return chosen
    return np.argpartition(values, n - count)[n - count:]


def _smallest(scores: np.ndarray, k: int, finite: int) -> np.ndarray:
    """The places of the ``k`` smallest ``scores``, smallest first (ties in place order),
    of the ``finite`` ones (the rest are masked with infinity)."""
    k = min(k, finite)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    top = np.argpartition(scores, k - 1)[:k] if len(scores) > k else np.arange(len(scores))
    return top[np.argsort(scores[top], kind="stable")][:k]


class FirstPassPace:
    """Whether a search tries the first pass: after each search it had to give up on,
    the next ``2**misses - 1`` do not (at most ``FIRST_PASS_SKIP_MAX``), so that a store
    whose vectors it cannot bound (the ``hash`` embedder's) pays for it rarely."""

    def __init__(self) -> None:
        self.misses = 0
        self._skip = 0
        self.used = 0  # searches the first pass answered
        self.fallbacks = 0  # searches it gave up on

    def due(self) -> bool:
        if self._skip:
            self._skip -= 1
            return False
        return True

    def record(self, answered: bool) -> None:
        if answered:
            self.used += 1
            self.misses = 0
        else:
            self.fallbacks += 1
            self.misses += 1
            self._skip = min(2**self.misses - 1, FIRST_PASS_SKIP_MAX)


class QuantizedVectors:
    def __init__(self, dim: int, capacity: int = 1024):
        self.dim = dim
        self._codes = np.zeros((capacity, dim), dtype=np.int8)
        self._tags = np.full(capacity, -1, dtype=np.int32)  # -1: a hole (or spare row)
        self._inv_norms = np.zeros(capacity, dtype=np.float32)
        self._ids = IdTable()  # row numbers are its ordinals
        self._tag_code: dict[str, int] = {}
        self._first: FirstPass | None = None
        self.pace = FirstPassPace()
        # The neighbour graph (``memoryd.search.graph``) and the rows changed in place
        # since its snapshot; the same for a graph being built; compactions so far.
        self._graph: NeighbourGraph | None = None
        self._graph_changed: set[int] = set()
        self._building_changed: set[int] | None = None
        self._graph_tried_rows = 0  # the store's size when a graph last failed its check
        self._layout = 0
        self.graph_searches = 0
        # The last CHECK_QUERIES queries of every row (a ring), which a graph's check uses.
        self._queries = np.zeros((CHECK_QUERIES, dim), dtype=np.float32)
        self._queries_seen = 0

    @classmethod
    def loaded(
        cls,
        dim: int,
        keys: np.ndarray,
        tag_names: Sequence[str],
        tags: np.ndarray,
        codes: np.ndarray,
        inv_norms: np.ndarray,
    ) -> QuantizedVectors:
        """A table of rows coded elsewhere (``memoryd.search.ram_load``): the ids' 16-byte
        keys (distinct), each row's tag as an index into ``tag_names``, and the codes and
        inverse norms, whose arrays (taken as they are) may have spare rows after them."""
        n = len(keys)
        ram = cls(dim, capacity=1)
        ram._codes, ram._inv_norms = codes, inv_norms
        ram._tags = np.full(len(codes), -1, dtype=np.int32)
        ram._tags[:n] = tags
        ram._tag_code = {tag: code for code, tag in enumerate(tag_names)}
        ram._ids.load_keys(keys)
        return ram

    def rows(self) -> tuple[list[str], list[str], np.ndarray]:
        """Every held row as (ids, tags, vectors), the vectors as their codes in float32:
        ``upsert`` codes them as they are, so another table takes the rows unchanged."""
        live = np.flatnonzero(self._tags[: self._used] >= 0)
        name = {code: tag for tag, code in self._tag_code.items()}
        return (
            self._ids.ids(live),
            [name[code] for code in self._tags[live].tolist()],
            self._codes[live].astype(np.float32),
        )

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, memory_id: object) -> bool:
        return isinstance(memory_id, str) and self._ids.get(memory_id) is not None

    def held(self, ids: Sequence[str]) -> np.ndarray:
        """Whether each of ``ids`` has a vector here (a mask)."""
        return self._ids.ordinals(ids) >= 0

    @property
    def _used(self) -> int:
        """Rows handed out, holes included."""
        return self._ids.used

    @property
    def nbytes(self) -> int:
        first = self._first.nbytes if self._first is not None else 0
        graph = self._graph.nbytes if self._graph is not None else 0
        return int(self._codes.nbytes + self._tags.nbytes + self._inv_norms.nbytes + first
                   + graph)

    def upsert(self, ids: Sequence[str], tags: Sequence[str], vectors: np.ndarray) -> None:
        """Store the vectors of memories (canonical ids), new or already held; an id
        given twice keeps its last vector."""
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        last = dict(zip(ids, range(len(ids)), strict=True))
        if len(last) < len(ids):
            ids, tags = list(last), [tags[n] for n in last.values()]
            vectors = vectors[list(last.values())]
        codes = quantize(vectors)
        inv_norms = inverse_norms(codes)
        rows = self._ids.ordinals(ids)
        new = np.flatnonzero(rows < 0)
        used = self._ids.used
        if len(new):
            first = self._ids.append([ids[n] for n in new.tolist()])
            grow_columns(
                self, ("_codes", "_tags", "_inv_norms"), self._ids.used, fill={"_tags": -1}
            )
            rows[new] = np.arange(first, first + len(new))
        if len(new) < len(rows):
            changed = rows[rows < used].tolist()
            self._graph_changed.update(changed)
            if self._building_changed is not None:
                self._building_changed.update(changed)
        self._codes[rows] = codes
        self._inv_norms[rows] = inv_norms
        self._tags[rows] = [self._code(tag) for tag in tags]
        if self._first is not None:
            # Rows the first pass has coded are coded again; a few new rows too once it
            # is complete. The builder reaches the others (``FIRST_PASS_INLINE_ROWS``).
            self._first.grow(len(self._codes))
            if self._first.built >= used and len(new) <= FIRST_PASS_INLINE_ROWS:
                self._first.built = self._ids.used
            done = rows < self._first.built
            self._first.code(rows[done], codes[done].astype(np.float32)
                             * inv_norms[done][:, None])

    def remove(self, ids: Sequence[str]) -> None:
        self._tags[self._ids.discard(ids)] = -1
        holes = self._ids.used - len(self._ids)
        if self._ids.used > COMPACT_MIN_ROWS and holes > COMPACT_SHARE * self._ids.used:
            self._compact()

    def search(
        self,
        query: np.ndarray,
        k: int,
        tag: str | None = None,
        among: Sequence[str] | None = None,
    ) -> list[tuple[str, float]]:
        """About the ``k`` most cosine-similar ids, best first, with their approximate
        similarity, optionally in one namespace (by its tag) or among some ids."""
        if not len(self._ids) or k <= 0:
            return []
        used = self._used
        tags = self._tags[:used]
        keep: np.ndarray | None  # the rows searched; None: every held row
        if among is not None:
            rows = self._rows_of(among)
            if len(rows) == 0:
                return []
            if len(rows) <= GATHER_MAX_SHARE * used:
                query_code, query_inv_norm = self._encode_query(query)
                scores = -self._similarities(query_code, rows)
                top = _smallest(scores, k, len(rows))
                return self._hits(rows[top], scores[top], query_inv_norm)
            keep = np.zeros(used, dtype=bool)
            keep[rows] = True
        elif tag is None:
            keep = None
        else:
            code = self._tag_code.get(tag)
            if code is None:
                return []
            keep = tags == code
        # A held row is one with a tag, so every row's count is the ids' (a search of
        # every row through the graph reads no mask of them).
        available = len(self._ids) if keep is None else int(np.count_nonzero(keep))
        if available == 0:
            return []
        query_code, query_inv_norm = self._encode_query(query)
        if keep is None:  # a search of every row: what the graph serves
            self._record_query(query)
            graph = self._graph
            if graph is not None and 4 * k <= graph.fetch:
                found = self._search_graph(graph, query_code, query_inv_norm, k, available,
                                           used)
                if found is not None:
                    self.graph_searches += 1
                    return found
            keep = tags >= 0
        first = self._first
        if first is not None and used - first.built <= MAX_SHARE * used and self.pace.due():
            found = self._search_first_pass(
                first, query_code, query_inv_norm, k, keep, available, used)
            self.pace.record(found is not None)
            if found is not None:
                return found
        # Scan the contiguous block and mask the rest: gathering many wanted rows would
        # copy them on every query.
        scores = scan_scores(query_code, self._codes[:used], self._inv_norms[:used],
                             threads=scan_threads(used))
        # Negated cosine (times the query's constant norm): smaller is nearer.
        np.negative(scores, out=scores)
        scores[~keep] = np.inf
        top = _smallest(scores, k, available)
        return self._hits(top, scores[top], query_inv_norm)

    def _search_first_pass(
        self,
        first: FirstPass,
        query_code: np.ndarray,
        query_inv_norm: float,
        k: int,
        keep: np.ndarray,
        available: int,
        used: int,
    ) -> list[tuple[str, float]] | None:
        """``search``'s answer through the first pass (``memoryd.search.first_pass``):
        the same rows and scores as the full scan, or ``None`` when the bounds leave more
        than ``MAX_SHARE`` of the coded rows to score in full. Rows the pass has not coded
        yet (an import's, until writes pause: at most ``MAX_SHARE`` of them) are scored
        in full, in one streaming scan: during a 10k import onto 110k real-model
        memories the full scan of every row had taken a vector search's p50 from ~3.5 to
        ~12 ms."""
        built = min(first.built, used)
        query_unit = query_code[0].astype(np.float32) * query_inv_norm
        reduced = first.encode(query_unit)
        dots = row_products(reduced.code, first.codes[:built], threads=scan_threads(built))[0]
        estimate, bound = first.estimates(reduced, dots, built)
        if available < used:
            estimate[~keep[:built]] = -np.inf
            bound[~keep[:built]] = -np.inf
        tail = built + np.flatnonzero(keep[built:used])
        tail_scored = self._similarities(query_code, slice(built, used))[tail - built]
        coded = available - len(tail)
        pool = min(max(4 * k, FIRST_PASS_CANDIDATES), coded)
        best = _about_largest(estimate, pool, min(k, pool)) if pool else tail[:0]
        # The k-th best full score among the rows scored so far (any rows scored in full
        # give a floor for the k-th best of all): no row whose bound is below it can be
        # among the k best.
        scored = np.concatenate([self._similarities(query_code, best), tail_scored])
        place = len(scored) - min(k, len(scored))
        kth = float(np.partition(scored, place)[place])
        rows = np.flatnonzero(bound >= kth * query_inv_norm)
        if len(rows) > MAX_SHARE * built:
            return None
        scores = -np.concatenate([self._similarities(query_code, rows), tail_scored])
        rows = np.concatenate([rows, tail])
        top = _smallest(scores, k, len(rows))
        return self._hits(rows[top], scores[top], query_inv_norm)

    def _search_graph(
        self,
        graph: NeighbourGraph,
        query_code: np.ndarray,
        query_inv_norm: float,
        k: int,
        available: int,
        used: int,
    ) -> list[tuple[str, float]] | None:
        """``search``'s answer for a search of every row through the neighbour graph: its
        ``fetch`` rows, the rows added or changed since its snapshot, each scored in
        full; ``None`` when those others are more than ``MAX_SHARE`` of the rows, or the
        graph's rows are too few (deleted since)."""
        changed = self._graph_changed
        if used - graph.rows + len(changed) > MAX_SHARE * used:
            return None
        query_unit = query_code[0].astype(np.float32) * query_inv_norm
        parts = [graph.nearest(query_unit, graph.fetch), np.arange(graph.rows, used)]
        if changed:
            parts.append(np.fromiter(changed, dtype=np.int64, count=len(changed)))
        rows = np.unique(np.concatenate(parts))
        rows = rows[self._tags[rows] >= 0]
        if len(rows) < min(k, available):
            return None
        scores = -self._similarities(query_code, rows)
        top = _smallest(scores, k, len(rows))
        return self._hits(rows[top], scores[top], query_inv_norm)

    def _record_query(self, query: np.ndarray) -> None:
        vector = np.asarray(query, dtype=np.float32).reshape(self.dim)
        norm = float(np.linalg.norm(vector))
        if norm > 0:
            self._queries[self._queries_seen % CHECK_QUERIES] = vector / norm
            self._queries_seen += 1

    # -- the neighbour graph's upkeep (``VectorCatalog.graph_upkeep``) ------------------

    def graph_due(self, min_rows: int, refresh_share: float) -> bool:
        """Whether a (new) neighbour graph should be built: the first pass is complete
        (the graph uses its axes), the rows reached ``min_rows``, and there is no graph
        yet (nor one that failed its check since the store last doubled), or the rows
        added or changed since it are more than ``refresh_share``, or the first pass has
        new axes."""
        first, used = self._first, self._used
        if first is None or first.built < used or len(self._ids) < min_rows:
            return False
        if self._queries_seen < CHECK_MIN_QUERIES:
            return False
        graph = self._graph
        if graph is None:
            return not self._graph_tried_rows or len(self._ids) >= 2 * self._graph_tried_rows
        stale = used - graph.rows + len(self._graph_changed)
        return stale > refresh_share * used or graph.axes is not first.basis.axes

    def graph_snapshot(self) -> Snapshot:
        """The rows a graph is built from, as they are now (``memoryd.search.graph``);
        rows changed in place from now on are tracked for it."""
        assert self._first is not None
        used = self._used
        self._building_changed = set()
        queries = self._queries[: min(self._queries_seen, CHECK_QUERIES)].copy()
        return Snapshot(self._codes, self._inv_norms, self._tags[:used] >= 0, queries,
                        self._first.basis.axes, used, self._layout)

    def install_graph(self, graph: NeighbourGraph, passed: bool) -> bool:
        """Search through ``graph`` from now on if it ``passed`` its check and the rows
        have not been renumbered since its snapshot; else keep the one before (or none).
        Whether it was installed."""
        changed, self._building_changed = self._building_changed, None
        if graph.layout != self._layout or changed is None:
            return False
        if not passed:
            self.give_up_graph()
            return False
        self._graph, self._graph_changed = graph, changed
        self._graph_tried_rows = 0
        return True

    def give_up_graph(self) -> None:
        """No graph (its check failed, or its build did) until the store has doubled."""
        self._graph, self._graph_changed, self._building_changed = None, set(), None
        self._graph_tried_rows = len(self._ids)

    def graph_status(self) -> dict[str, int | float | bool | None]:
        graph = self._graph
        return {
            "ready": graph is not None,
            "rows": graph.rows if graph is not None else 0,
            "recall": graph.recall if graph is not None else None,
            "fetch": graph.fetch if graph is not None else None,
            "failed_check_at_rows": self._graph_tried_rows,
            "searches": self.graph_searches,
            "queries_seen": self._queries_seen,
        }

    # -- the first pass's upkeep (``VectorCatalog.first_pass_upkeep``) -----------------

    def first_pass_due(self, min_rows: int) -> bool:
        """Whether the first pass needs a (new) basis: the vectors reached ``min_rows``
        and have doubled since the last one, or there is none."""
        held = len(self._ids)
        if held < min_rows:
            return False
        return self._first is None or held >= 2 * self._first.basis.rows

    def first_pass_sample(self, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The int8 codes and inverse norms of up to ``SAMPLE_ROWS`` held rows, drawn at
        random (copies: ``train_basis`` takes them to a worker thread)."""
        live = np.flatnonzero(self._tags[: self._used] >= 0)
        if len(live) > SAMPLE_ROWS:
            live = np.sort(np.random.default_rng(seed).choice(live, SAMPLE_ROWS, replace=False))
        return self._codes[live], self._inv_norms[live]

    def start_first_pass(self, basis: Basis) -> None:
        """Replace the first pass with one on ``basis``, to be built by
        ``build_first_pass``; searches scan in full until it is."""
        self._first = FirstPass(basis, len(self._codes))

    @property
    def first_pass_building(self) -> bool:
        return self._first is not None and self._first.built < self._used

    def build_first_pass(self, rows: int) -> None:
        """Code up to ``rows`` more rows of the first pass under way."""
        first = self._first
        if first is None:
            return
        start, end = first.built, min(self._used, first.built + rows)
        coded = np.arange(start, end)
        first.code(coded, self._unit(coded))
        first.built = end

    def first_pass_status(self) -> dict[str, int | bool]:
        first = self._first
        return {
            "ready": first is not None and first.built >= self._used,
            "trained_on_rows": first.basis.rows if first is not None else 0,
            "searches": self.pace.used,
            "fallbacks": self.pace.fallbacks,
        }

    def _unit(self, rows: np.ndarray) -> np.ndarray:
        """The unit vectors of ``rows``' codes (float32): what the full scan ranks by."""
        return self._codes[rows].astype(np.float32) * self._inv_norms[rows][:, None]

    def _hits(
        self, rows: np.ndarray, negated: np.ndarray, query_inv_norm: float
    ) -> list[tuple[str, float]]:
        """(id, similarity) of ``rows``, from their scores as the scan ranks them:
        negated, and not yet scaled by the query's inverse norm."""
        similarities = [-float(s) * query_inv_norm for s in negated]
        return list(zip(self._ids.ids(rows), similarities, strict=True))

    def similarities(self, query: np.ndarray, ids: Sequence[str]) -> dict[str, float]:
        """The approximate cosine similarity of ``query`` to each of ``ids`` held here,
        the same figure ``search`` gives."""
        rows = self._ids.ordinals(ids)
        held = np.flatnonzero(rows >= 0)
        if not len(held):
            return {}
        query_code, query_inv_norm = self._encode_query(query)
        scores = self._similarities(query_code, rows[held]) * query_inv_norm
        return {ids[n]: float(s) for n, s in zip(held.tolist(), scores, strict=True)}

    def _rows_of(self, ids: Sequence[str]) -> np.ndarray:
        """The rows of those of ``ids`` held here, each once, in row order."""
        rows = self._ids.ordinals(ids)
        return np.unique(rows[rows >= 0])

    def _similarities(self, query_code: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
        """The cosine similarity of the query's code to the codes of ``rows``, short of
        the query's own inverse norm (the figure the scan ranks by); a slice of rows is
        read in place, not gathered."""
        return scan_scores(query_code, self._codes[rows], self._inv_norms[rows])

    def _encode_query(self, query: np.ndarray) -> tuple[np.ndarray, float]:
        """The query's int8 code (one row) and that code's inverse norm."""
        code = quantize(np.asarray(query, dtype=np.float32).reshape(1, self.dim))
        return code, float(inverse_norms(code)[0])

    def _code(self, tag: str) -> int:
        code = self._tag_code.get(tag)
        if code is None:
            code = self._tag_code[tag] = len(self._tag_code)
        return code

    def _compact(self) -> None:
        """Move the held rows down over the holes, in order (which renumbers them: the
        neighbour graph is dropped, and one being built will not be installed)."""
        self._layout += 1
        self._graph, self._graph_changed = None, set()
        used = self._ids.used
        live = np.flatnonzero(self._tags[:used] >= 0)
        n = len(live)
        self._codes[:n] = self._codes[live]
        self._tags[:n] = self._tags[live]
        self._inv_norms[:n] = self._inv_norms[live]
        self._tags[n:used] = -1
        self._ids.renumber(live)
        if self._first is not None:
            if self._first.built >= used:
                self._first.move(live)
            else:  # started again on the same basis
                self._first = FirstPass(self._first.basis, len(self._codes))
