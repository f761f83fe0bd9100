"""BM25 over postings held in memory (never written anywhere): the fast lexical path.

The same ranking as the SQL over the ``postings`` table (memoryd/store/database.py):
BM25 with k1 and b, collection statistics (document count, average length, document
frequencies) from the searched namespace when there is one, and ``prefix*`` terms that
expand to every indexed term they start, or to a stem they start with that lacks at most
three letters. One SQL statement costs 10-15 ms at 100k memories, mostly planning; the
arrays here answer in about a millisecond.

Layout: documents get ordinals in arrival order (a changed document gets a new one and
its old ordinal dies). Postings live in a compressed block (term -> documents, term
frequencies) built at load, plus a few sorted runs of what arrived since (term, document,
frequency arrays; each add is one run, and runs of like size merge, so a term's recent
postings are in a handful of binary searches, and an add costs numpy work per batch
rather than Python work per posting); the block is rebuilt once those grow. Other
per-document arrays (the rank facts) can ``follow`` the ordinals instead of keeping an id
map of their own. The documents' ids are 16-byte keys in an ``IdTable``
(memoryd/search/ids.py), not strings. Owned by one thread (the DuckDB owner thread).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import numpy as np

from memoryd.search.columns import grow_columns
from memoryd.search.ids import IdTable

MIN_STEM_CHARS = 3
STEM_SLACK = 3  # a prefix also matches a stem it starts with, lacking at most this many
FOLD_MIN_POSTINGS = 10_000  # recent postings worth a rebuild when writes pause


class DocumentColumns(Protocol):
    """Arrays of something else kept per document ordinal (``InvertedIndex.follow``)."""

    def grow(self, size: int) -> None:
        """Hold at least ``size`` rows."""

    def move(self, old: np.ndarray, new: np.ndarray) -> None:
        """Documents got new ordinals: row ``old[i]`` is now row ``new[i]``."""

    def renumber(self, alive: np.ndarray) -> None:
        """The live documents were renumbered: row ``alive[i]`` is now row ``i``."""


class InvertedIndex:
    def __init__(self) -> None:
        self._ids = IdTable()
        self._alive = np.zeros(0, dtype=bool)
        self._len = np.zeros(0, dtype=np.float32)
        self._ns = np.zeros(0, dtype=np.int32)
        self._ns_code: dict[str, int] = {}
        self._ns_docs: dict[int, int] = {}
        self._ns_length: dict[int, float] = {}
        self._term: dict[str, int] = {}
        self._sorted_terms: list[str] | None = None  # for prefixes; rebuilt lazily
        # The block: postings of term t are _doc[_ptr[t]:_ptr[t + 1]] (and _tf).
        self._ptr = np.zeros(1, dtype=np.int64)
        self._doc = np.zeros(0, dtype=np.int32)
        self._tf = np.zeros(0, dtype=np.float32)
        # What arrived since the block: runs of (terms, documents, frequencies), each
        # sorted by term (stable: a term's documents in arrival order), oldest first.
        self._recent: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._recent_count = 0
        self._dead = 0  # documents that died since the block was built
        self._loading: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._followers: list[DocumentColumns] = []

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, memory_id: str) -> bool:
        return self._ids.get(memory_id) is not None

    def ordinals(self, ids: Sequence[str]) -> np.ndarray:
        """The document ordinal of each of ``ids`` (-1 for those not indexed)."""
        return self._ids.ordinals(ids)

    def in_scope(self, namespace: str | None) -> np.ndarray:
        """A mask over the ordinals: the live documents, of ``namespace`` if given."""
        if namespace is None:
            return self._alive.copy()
        code = self._ns_code.get(namespace)
        if code is None:
            return np.zeros(len(self._alive), dtype=bool)
        return self._alive & (self._ns == code)

    def share(self, namespace: str) -> float:
        """The share of the live documents in ``namespace`` (1.0 when there are none)."""
        code = self._ns_code.get(namespace)
        held = 0 if code is None else self._ns_docs.get(code, 0)
        return held / len(self._ids) if len(self._ids) else 1.0

    def ids(self, ordinals: np.ndarray) -> list[str]:
        """The ids of live documents' ordinals."""
        return self._ids.ids(ordinals)

    def key_pairs(self, ordinals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ids of ``ordinals`` as two integers each that sort as the ids do."""
        return self._ids.key_pairs(ordinals)

    def namespace_codes(self, ordinals: np.ndarray) -> np.ndarray:
        """The namespace of each of ``ordinals`` as a small int (one per namespace)."""
        return self._ns[ordinals]

    def namespaces(self, ordinals: np.ndarray) -> list[str]:
        """The namespace of each of ``ordinals`` (live documents')."""
        names = list(self._ns_code)  # in code order: codes are given in turn
        return [names[code] for code in self._ns[ordinals].tolist()]

    def follow(self, columns: DocumentColumns) -> None:
        """Keep ``columns`` in step with the document ordinals from now on."""
        columns.grow(len(self._alive))
        self._followers.append(columns)

    @property
    def nbytes(self) -> int:
        arrays = (self._alive, self._len, self._ns, self._ptr, self._doc, self._tf)
        return int(sum(a.nbytes for a in arrays))

    # -- changes ---------------------------------------------------------------------------------

    def add(
        self, documents: Mapping[str, Mapping[str, int]], namespaces: Mapping[str, str]
    ) -> None:
        """Index (or re-index) documents: memory id -> term counts, with its namespace."""
        if not documents:
            return
        # Re-indexed documents: their old ordinals die now, and the rebuild that may be
        # due waits until their followers' rows have moved to the new ones.
        ids = list(documents)
        before = self._ids.ordinals(ids)
        old = before[before >= 0]
        self._kill(ids, before)
        n = len(ids)
        first = self._ids.append(ids)
        self._grow(first + n)
        counts = list(documents.values())
        sizes = np.fromiter(map(len, counts), dtype=np.intp, count=n)
        total = int(sizes.sum())
        owner = np.repeat(np.arange(n), sizes)
        tfs = np.fromiter(
            itertools.chain.from_iterable(c.values() for c in counts), np.float32, total
        )
        terms = self._term_ids(itertools.chain.from_iterable(counts), total)
        lengths = np.bincount(owner, weights=tfs, minlength=n)
        spaces = [namespaces[i] for i in ids]
        code_of = {ns: self._namespace(ns) for ns in set(spaces)}
        codes = np.fromiter(map(code_of.__getitem__, spaces), np.int32, n)
        docs = slice(first, first + n)
        self._alive[docs], self._len[docs], self._ns[docs] = True, lengths, codes
        docs_of, length_of = np.bincount(codes), np.bincount(codes, weights=lengths)
        for code in np.flatnonzero(docs_of).tolist():
            self._ns_docs[code] = self._ns_docs.get(code, 0) + int(docs_of[code])
            self._ns_length[code] = self._ns_length.get(code, 0.0) + float(length_of[code])
        if total:
            order = np.argsort(terms, kind="stable")
            self._push_run(terms[order], (first + owner[order]).astype(np.int32), tfs[order])
            self._recent_count += total
        if len(old) and self._followers:
            new = first + np.flatnonzero(before >= 0)
            for follower in self._followers:
                follower.move(old, new)
        if self._recent_count > max(50_000, len(self._doc) // 4) or self._too_many_dead:
            self._rebuild()

    def remove(self, ids: Iterable[str]) -> None:
        self._kill(list(ids))
        if self._too_many_dead:
            self._rebuild()

    @property
    def _too_many_dead(self) -> bool:
        return self._dead > max(10_000, len(self._ids))

    def _kill(self, ids: Sequence[str], ordinals: np.ndarray | None = None) -> None:
        for doc in self._ids.discard(ids, ordinals).tolist():
            code = int(self._ns[doc])
            self._alive[doc] = False
            self._ns_docs[code] -= 1
            self._ns_length[code] -= float(self._len[doc])
            self._dead += 1

    # -- search ----------------------------------------------------------------------------------

    def search(
        self,
        terms: Sequence[str],
        prefixes: Sequence[str],
        namespace: str | None,
        limit: int,
        k1: float = 1.2,
        b: float = 0.75,
        allowed: np.ndarray | None = None,
    ) -> list[tuple[str, float]]:
        """(id, BM25 score), best first, ties by id. With ``allowed`` (a mask over the
        documents' ordinals), only those documents are ranked; the statistics stay the
        namespace's, as in SQL's filtered ranking."""
        wanted = {t for t in terms if t in self._term}
        for prefix in prefixes:
            wanted.update(self._expand(prefix))
        if not wanted or limit <= 0:
            return []
        code: int | None = None
        if namespace is None:
            n_docs = len(self._ids)
            total_length = sum(self._ns_length.values())
        else:
            code = self._ns_code.get(namespace)
            if code is None:
                return []
            n_docs, total_length = self._ns_docs.get(code, 0), self._ns_length.get(code, 0.0)
        if n_docs <= 0:
            return []
        avgdl = max(total_length / n_docs, 1.0)
        found_docs: list[np.ndarray] = []
        found_scores: list[np.ndarray] = []
        for term in wanted:
            docs, tfs = self._postings(self._term[term])
            keep = self._alive[docs]
            if code is not None:
                keep &= self._ns[docs] == code
            docs, tfs = docs[keep], tfs[keep]
            df = len(docs)
            if df == 0:
                continue
            idf = math.log(1 + (n_docs - df + 0.5) / (df + 0.5))
            if allowed is not None:
                inside = allowed[docs]
                docs, tfs = docs[inside], tfs[inside]
                if not len(docs):
                    continue
            norm = k1 * (1 - b + b * self._len[docs].astype(np.float64) / avgdl)
            found_docs.append(docs)
            tf64 = tfs.astype(np.float64)
            found_scores.append(idf * tf64 * (k1 + 1) / (tf64 + norm))
        if not found_docs:
            return []
        docs = np.concatenate(found_docs)
        unique, where = np.unique(docs, return_inverse=True)
        scores = np.bincount(where, weights=np.concatenate(found_scores))
        # The documents scoring above the limit's last place are in; those tied with it
        # compete for the places left, by id. Templated texts tie by the ten thousand
        # (83k documents at 1M memories): sorting them all with their scores took ~70 ms.
        cut = 0.0
        tied = unique[:0]
        above = np.arange(len(unique))
        if len(unique) > limit:
            cut = float(np.partition(scores, len(scores) - limit)[len(scores) - limit])
            above = np.flatnonzero(scores > cut)
            tied = unique[scores == cut]
        ids = self._ids.ids(unique[above])  # the found documents are alive
        ranked = sorted(zip((-scores[above]).tolist(), ids, strict=True))
        if len(tied):
            places = limit - len(ranked)
            ranked += [(-cut, i) for i in self._ids.first_by_id(tied, places)]
        return [(memory_id, -neg) for neg, memory_id in ranked]

    def _expand(self, prefix: str) -> set[str]:
        """Indexed terms a ``prefix*`` matches (see the module docstring)."""
        if self._sorted_terms is None:
            self._sorted_terms = sorted(self._term)
        terms = self._sorted_terms
        out: set[str] = set()
        at = bisect.bisect_left(terms, prefix)
        while at < len(terms) and terms[at].startswith(prefix):
            out.add(terms[at])
            at += 1
        shortest = max(MIN_STEM_CHARS, len(prefix) - STEM_SLACK)
        for end in range(shortest, len(prefix)):
            if prefix[:end] in self._term:
                out.add(prefix[:end])
        return out

    def _postings(self, term: int) -> tuple[np.ndarray, np.ndarray]:
        if term + 1 < len(self._ptr):
            docs = [self._doc[self._ptr[term] : self._ptr[term + 1]]]
            tfs = [self._tf[self._ptr[term] : self._ptr[term + 1]]]
        else:
            docs, tfs = [self._doc[:0]], [self._tf[:0]]
        for run_terms, run_docs, run_tfs in self._recent:
            start, end = run_terms.searchsorted((term, term + 1)).tolist()
            if end > start:
                docs.append(run_docs[start:end])
                tfs.append(run_tfs[start:end])
        if len(docs) == 1:
            return docs[0], tfs[0]
        return np.concatenate(docs), np.concatenate(tfs)

    def _push_run(self, terms: np.ndarray, docs: np.ndarray, tfs: np.ndarray) -> None:
        """Keep a new sorted run; merge runs while the one before is no larger than the
        last (like a binary counter: ~log2 of the recent postings' batches remain, and a
        posting is merged that many times at most)."""
        runs = self._recent
        runs.append((terms, docs, tfs))
        while len(runs) > 1 and len(runs[-2][0]) <= len(runs[-1][0]):
            (t1, d1, f1), (t2, d2, f2) = runs[-2], runs.pop()
            merged = np.concatenate([t1, t2])
            order = np.argsort(merged, kind="stable")  # two sorted runs: a linear merge
            runs[-1] = (
                merged[order],
                np.concatenate([d1, d2])[order],
                np.concatenate([f1, f2])[order],
            )

    def _term_ids(self, terms: Iterable[str], count: int) -> np.ndarray:
        """The ids of ``terms`` (``count`` of them), new terms given new ids."""
        words = list(terms)
        ids = np.fromiter(map(self._term.get, words, itertools.repeat(-1)), np.int32, count)
        for at in np.flatnonzero(ids < 0).tolist():
            ids[at] = self._term_id(words[at])
        return ids

    # -- bulk load -------------------------------------------------------------------------------

    def load_documents(
        self, ids: Sequence[str], namespaces: Sequence[str], lengths: np.ndarray
    ) -> None:
        """Every document of a fresh index, before ``load_postings``."""
        assert not len(self._ids), "load into an empty index"
        self._grow(len(ids))
        self._ids.load(ids)
        codes = np.array([self._namespace(ns) for ns in namespaces], dtype=np.int32)
        self._alive[: len(ids)] = True
        self._len[: len(ids)] = lengths
        self._ns[: len(ids)] = codes
        for code in np.unique(codes):
            mask = codes == code
            self._ns_docs[int(code)] = int(mask.sum())
            self._ns_length[int(code)] = float(np.asarray(lengths, dtype=np.float64)[mask].sum())

    def load_postings(
        self, terms: Sequence[str], term_index: np.ndarray, docs: np.ndarray, tfs: np.ndarray
    ) -> None:
        """One batch of postings of documents already loaded: ``terms[term_index[i]]``
        occurs ``tfs[i]`` times in document ordinal ``docs[i]`` (negative: skip)."""
        mapping = np.array([self._term_id(t) for t in terms], dtype=np.int32)
        keep = docs >= 0
        self._loading.append(
            (
                mapping[np.asarray(term_index)[keep]],
                np.asarray(docs, dtype=np.int32)[keep],
                np.asarray(tfs, dtype=np.float32)[keep],
            )
        )

    def finish_load(self) -> None:
        self._rebuild()

    def fold(self) -> None:
        """Fold the recent arrays into the block now (when writes pause) if they hold
        enough to matter: spread over one small array pair per term they cost more than
        the block's 8 bytes a posting. The rebuild reads the whole block (~90 ms at
        100k), too much to pay after every single add."""
        if self._recent_count >= FOLD_MIN_POSTINGS:
            self._rebuild()

    # -- upkeep ----------------------------------------------------------------------------------

    def _rebuild(self) -> None:
        """Fold the recent arrays (and loaded batches) into the block and drop dead
        documents' postings."""
        n_terms = len(self._term)
        old = np.diff(self._ptr)
        term_col = [np.repeat(np.arange(len(old), dtype=np.int32), old)]
        doc_col, tf_col = [self._doc], [self._tf]
        for run_terms, run_docs, run_tfs in self._recent:
            term_col.append(run_terms)
            doc_col.append(run_docs)
            tf_col.append(run_tfs)
        for loaded in self._loading:
            term_col.append(loaded[0])
            doc_col.append(loaded[1])
            tf_col.append(loaded[2])
        all_terms = np.concatenate(term_col)
        all_docs = np.concatenate(doc_col)
        all_tfs = np.concatenate(tf_col)
        live = self._alive[all_docs]
        all_terms, all_docs, all_tfs = all_terms[live], all_docs[live], all_tfs[live]
        if self._dead:
            all_docs = self._renumber()[all_docs]
        order = np.argsort(all_terms, kind="stable")
        self._doc, self._tf = all_docs[order], all_tfs[order]
        self._ptr = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(np.bincount(all_terms, minlength=n_terms), out=self._ptr[1:])
        self._recent, self._recent_count, self._dead, self._loading = [], 0, 0, []

    def _renumber(self) -> np.ndarray:
        """Give the live documents consecutive ordinals (an edit gives a document a new
        one, so dead ordinals would otherwise pile up until a restart). Returns the new
        ordinal of each old one (-1: dead)."""
        used = self._ids.used
        alive = np.flatnonzero(self._alive[:used])
        new_of_old = np.full(used, -1, dtype=np.int32)
        new_of_old[alive] = np.arange(len(alive), dtype=np.int32)
        self._ids.renumber(alive)
        for name in ("_alive", "_len", "_ns"):
            old = getattr(self, name)
            fresh = np.zeros_like(old)
            fresh[: len(alive)] = old[alive]
            setattr(self, name, fresh)
        for follower in self._followers:
            follower.renumber(alive)
        return new_of_old

    def _term_id(self, term: str) -> int:
        term_id = self._term.get(term)
        if term_id is None:
            term_id = self._term[term] = len(self._term)
            self._sorted_terms = None
        return term_id

    def _namespace(self, namespace: str) -> int:
        code = self._ns_code.get(namespace)
        if code is None:
            code = self._ns_code[namespace] = len(self._ns_code)
        return code

    def _grow(self, size: int) -> None:
        capacity = grow_columns(self, ("_alive", "_len", "_ns"), size)
        for follower in self._followers:
            follower.grow(capacity)
