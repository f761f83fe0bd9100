"""The LanceDB vector index: derived from DuckDB, holding nothing readable.

Each row is a memory id, a keyed pseudonym of its namespace (so searches can prefilter by
namespace without the name on disk), its SAP-encrypted vector, which the ANN search
compares, and an AES-GCM-encrypted exact copy of the vector, which a search returns with
its candidates to rank them by (``memoryd.crypto.exact_copy``). The index can always be
rebuilt from the exact vectors in DuckDB, and is whenever it is missing, unreadable, or was
built with another key, model, dimension or format of the exact copies. Methods are
synchronous; one owner thread calls them, except ``search``, which reads through a handle
of its own on a search thread.

Large tables get an ANN index over the ``vector`` column (IVF_SQ: k-means partitions of
the ciphertexts and 8-bit scalar-quantised copies of them, so it holds nothing the table
does not). :func:`build_ann_index` builds it on a connection of its own, so that the owner
thread goes on serving reads and writes during a build that takes tens of seconds at a
million rows; Lance's optimistic commits let the two write the table at once. Rows that
arrive after a build sit in fragments the ANN index does not cover until a compaction
folds them in. Lance scans those exhaustively at every search (~2 us a row, ~70 ms a
search while an import piles up 20,000 of them at 1M), unless the search is ``fast``:
then it searches the ANN index alone, and the caller scores the uncovered rows itself
(``unindexed_rows`` reads them; ``memoryd.vector_catalog`` keeps them in RAM).

With the ANN index comes a bitmap index of the ``ns`` column. A search in one namespace
prefilters by it, and without that index Lance read the whole column for every search:
at 1M rows a search took 50 ms with a namespace and 8-9 ms without; with the bitmap index
10 ms (a `/tmp` script, 200 queries, real-model vectors). It holds the pseudonyms the
column holds, and a compaction folds new rows into it as into the ANN index.

Compaction goes through ``lance`` (pylance, the same Lance as lancedb's; pinned together)
rather than lancedb's ``optimize``, which merges every fragment smaller than 1,048,576 rows:
below that size each compaction rewrote the whole table and remapped the ANN index, so
its cost grew with the store, not with what had changed (``VectorIndex.compact``).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Collection, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from memoryd.crypto.exact_copy import ExactCopyCipher
from memoryd.crypto.sap import SapCipher
from memoryd.store.deferred import LANCE_REST_CLIENT, defer_package

defer_package(LANCE_REST_CLIENT)
import lance  # noqa: E402
import lancedb  # noqa: E402 - after its unused REST client is deferred
from lancedb.index import Bitmap, IvfSq  # noqa: E402

log = logging.getLogger(__name__)

TABLE = "vectors"
ANN_INDEX = "vector_idx"  # the name Lance gives an index on the ``vector`` column
NS_INDEX = "ns_idx"  # a bitmap index of the namespace pseudonyms, beside the ANN index
ID_BATCH_ROWS = 65_536  # rows per batch when every id is read (_id_table)
# Compaction merges fragments smaller than this into fragments of about this size, and
# leaves bigger ones alone unless they hold deleted rows (``VectorIndex.compact``).
COMPACT_FRAGMENT_ROWS = 131_072
MERGE_ALL = 1_000_000  # segments to merge when merging: Lance merges as many as there are


class VectorIndex:
    def __init__(
        self,
        path: Path,
        cipher: SapCipher,
        copies: ExactCopyCipher,
        dim: int,
        identity: dict[str, str],
    ):
        """``identity`` (key fingerprint, model, scheme) is kept in the table's schema
        metadata, with the format of the exact copies; an index built under another
        identity is dropped and rebuilt."""
        self.path = path
        self.cipher = cipher
        self.copies = copies
        self.dim = dim
        self.identity = {k: str(v) for k, v in identity.items()}
        self.identity["exact_copy"] = copies.params_id
        self.rebuilt = False
        self.table = self._open()
        # Searches read through a handle of their own that sees every commit (of any
        # connection) at once, so that they can run on a thread of their own: on the
        # owner thread they waited behind compactions, which rewrite the table's main
        # fragment (~1.5 GB, 5-14 s at 1M rows) every 10-20 s during a big import. The
        # searches go through Lance's own dataset (``_open_dataset``), the status's
        # counts through lancedb's table.
        self._reader = _open_table(path, read_consistency_interval=timedelta(0))
        self._searcher = _open_dataset(path)
        # The ANN index the search handle has seen, and a count of new handles
        # (``_renew_reader_if_rewritten``): what a warmed cache belongs to.
        self._reader_ann = self.ann_index_id()
        self.reader_generation = 0

    def _schema(self) -> pa.Schema:
        return pa.schema(
            [
                pa.field("id", pa.string()),
                pa.field("ns", pa.string()),
                pa.field("vector", pa.list_(pa.float32(), self.dim)),
                pa.field("exact", pa.binary(self.copies.width)),
            ],
            metadata={f"memoryd.{k}": v for k, v in self.identity.items()},
        )

    def _open(self) -> lancedb.table.Table:
        db = lancedb.connect(str(self.path))
        try:
            if TABLE in db.list_tables().tables:
                table = db.open_table(TABLE)
                meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
                wanted = {f"memoryd.{k}": v for k, v in self.identity.items()}
                if all(meta.get(k) == v for k, v in wanted.items()):
                    table.count_rows()  # reads the manifest: fails on a damaged index
                    return table
                log.warning("vector index was built with another key or model; rebuilding")
            elif self.path.exists() and any(self.path.iterdir()):
                log.warning("vector index folder has no table; rebuilding")
        except Exception as exc:  # noqa: BLE001 - any failure to read means rebuild
            log.warning("vector index unreadable (%s); rebuilding", type(exc).__name__)
        return self._recreate()

    def _recreate(self) -> lancedb.table.Table:
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.rebuilt = True
        db = lancedb.connect(str(self.path))
        return db.create_table(TABLE, schema=self._schema())

    def count(self) -> int:
        return int(self.table.count_rows())

    def id_table(self) -> pa.Table:
        return _id_table(self.table)

    def ann_stats(self) -> dict[str, int] | None:
        """Rows the ANN index covers and rows it does not yet, its segments (each
        compaction that folds rows in writes one more, until one merges them:
        ``VectorCatalog._compact``),
        the partition size it was trained for (0 if Lance does not say), and whether the
        namespace index exists (1 or 0); None without an ANN index."""
        return _ann_stats(self.table)

    def committed_stats(self) -> tuple[int, dict[str, int] | None]:
        """``count`` and ``ann_stats`` of the latest committed version, read through the
        search handle: on the search thread, so that a status never waits behind the
        owner thread's work (a compaction after a training took 74 s at 1M rows on a
        busy machine, and ``store.status`` timed out behind it)."""
        reader = self._reader
        return int(reader.count_rows()), _ann_stats(reader)

    def index_namespaces(self) -> None:
        """Write the namespace index (of an index whose ANN index came before it)."""
        _index_namespaces(self.table)

    def version(self) -> int:
        """The latest committed version of the table (any connection's commits)."""
        self.reload()
        return int(self.table.version)

    def reload(self) -> None:
        """See what another connection committed (an ANN index built off this thread)."""
        self.table.checkout_latest()
        self._renew_reader_if_rewritten()

    def _renew_reader_if_rewritten(self) -> None:
        """Give searches a new handle, with an empty cache, when the ANN index is not the
        one they saw: a training or a compaction wrote a new one. Lance caches the
        partitions of the ANN index that a handle's searches read, and keeps those of a
        replaced index for as long as the handle lives: on a copy of the 1M bench index,
        a rewrite and a search of every partition took RSS from 572 to 1,607 MB on the
        old handle, and a new handle held 416 MB. A search under way keeps the old
        handle until it ends."""
        ann = self.ann_index_id()
        if ann == self._reader_ann:
            return
        self._reader = _open_table(self.path, read_consistency_interval=timedelta(0))
        self._searcher = _open_dataset(self.path)
        self._reader_ann = ann
        self.reader_generation += 1

    def ann_index_id(self) -> str | None:
        """The ANN index's id (its first segment's): new at each training, and at a
        compaction that rewrites the index (a fold that only adds a segment keeps it);
        ``None`` without one."""
        for index in self.table.list_indices():
            if index.name == ANN_INDEX:
                return str(index.index_uuid)
        return None

    def add(self, ids: Sequence[str], ns_tags: Sequence[str], vectors: np.ndarray) -> None:
        """Append encrypted vectors. Callers delete an id's old vector first (a changed
        memory is forgotten before it is queued again); deleting here too cost a scan per
        batch for ids that are new by construction."""
        if not len(ids):
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        flat = pa.array(self.cipher.encrypt(vectors).reshape(-1), pa.float32())
        self.table.add(
            pa.table(
                {
                    "id": pa.array(list(ids), pa.string()),
                    "ns": pa.array(list(ns_tags), pa.string()),
                    "vector": pa.FixedSizeListArray.from_arrays(flat, self.dim),
                    "exact": pa.array(
                        self.copies.encrypt(ids, vectors), pa.binary(self.copies.width)
                    ),
                }
            )
        )

    def unindexed_rows(
        self, known: Collection[str], limit: int
    ) -> tuple[set[str], tuple[list[str], list[str], np.ndarray]] | None:
        """The rows of the latest version that its ANN index does not cover: the ids of
        all of them, and the id, namespace tag and exact vector of each one not in
        ``known``. ``None`` when there is no ANN index, when more than ``limit`` rows are
        uncovered, or when an exact copy does not open (the row could not be scored)."""
        dataset = _open_dataset(self.path)
        described = [i for i in dataset.describe_indices() if i.name == ANN_INDEX]
        if not described:
            return None
        covered = {f for segment in described[0].segments for f in segment.fragment_ids}
        fragments = [f for f in dataset.get_fragments() if f.fragment_id not in covered]
        empty = np.zeros((0, self.dim), dtype=np.float32)
        if not fragments:
            return set(), ([], [], empty)
        if sum(f.count_rows() for f in fragments) > limit:
            return None
        ids = dataset.scanner(columns=["id"], fragments=fragments).to_table()["id"].to_pylist()
        if all(i in known for i in ids):
            return set(ids), ([], [], empty)
        rows = dataset.scanner(columns=["id", "ns", "exact"], fragments=fragments).to_table()
        keep = [n for n, i in enumerate(rows.column("id").to_pylist()) if i not in known]
        rows = rows.take(keep)
        new_ids = rows.column("id").to_pylist()
        opened, vectors = self.copies.decrypt(new_ids, rows.column("exact").to_pylist())
        if len(opened) != len(new_ids):
            return None
        return set(ids), (new_ids, rows.column("ns").to_pylist(), vectors)

    def delete(self, ids: Sequence[str]) -> None:
        if not len(ids):
            return
        quoted = ", ".join("'" + i.replace("'", "''") + "'" for i in ids)
        self.table.delete(f"id IN ({quoted})")

    def search(
        self,
        vector: np.ndarray,
        limit: int,
        ns_tag: str | None,
        probes: int,
        scored: bool = False,
        fast: bool = False,
    ) -> list[tuple[str, float | None]]:
        """Candidate ids by L2 distance over ciphertexts, nearest first, each with its
        cosine similarity to ``vector`` from its exact copy when ``scored`` (``None``
        otherwise, or when the copy does not open). ``probes``: the ANN index's
        partitions scanned (each one's int8 codes; the rows it does not cover yet are
        scanned exhaustively, unless ``fast``: then they are left out, for the caller
        to score: ``unindexed_rows``). Any thread may call it, one at a time; the owner
        thread's work does not hold it up."""
        vector = np.asarray(vector, dtype=np.float32)
        query = self.cipher.encrypt_query(vector)
        nearest = {"column": "vector", "q": query, "k": limit, "metric": "l2",
                   "nprobes": probes}  # probes: ignored while there is no ANN index
        # With the distance: without it, Lance logs a deprecation warning at every search.
        columns = ["id", "_distance", "exact"] if scored else ["id", "_distance"]
        searcher = self._searcher

        def run() -> pa.Table:
            # The latest version, as lancedb's table with a consistency interval of 0
            # checks out at each query (0.07 ms). Through lancedb's query builder the
            # same search, with the same answers, took ~3 ms more at 1M rows (16.89
            # against 14.16 ms p50 in-process, 120 probes, 100 rows), and daemons on
            # the 1M bench store searched 1.2-1.3 × as long (docs/performance-log.md).
            searcher.checkout_latest()
            return searcher.to_table(
                columns=columns,
                nearest=nearest,
                filter=None if ns_tag is None else f"ns = '{ns_tag}'",
                prefilter=ns_tag is not None,
                fast_search=fast,
            )

        try:
            result = run()
        except Exception as exc:  # noqa: BLE001 - retried once, then raised
            # A compaction's cleanup may delete the files of the version a search began
            # on: the latest version has them all.
            log.debug("vector search retried on the latest version: %s", type(exc).__name__)
            result = run()
        ids = result.column("id").to_pylist()
        scores: list[float | None] = [None] * len(ids)
        if scored:
            opened, exact = self.copies.decrypt(ids, result.column("exact").to_pylist())
            for n, score in zip(opened, (exact @ vector).tolist(), strict=True):
                scores[n] = score
        return list(zip(ids, scores, strict=True))

    def compact(self, merge_segments: bool = False) -> dict[str, float]:
        """Merge small fragments, rewrite those holding deleted rows, fold rows the
        indexes do not cover into them, and drop old versions, so that deleted vectors
        and replaced indexes leave the disk. Returns each step's seconds.

        lancedb's ``optimize`` did this with Lance's default fragment size of 1,048,576
        rows, so below it the table's big fragment was always a candidate and every
        compaction rewrote the whole table (2.6 GB at 1M rows) and remapped the ANN index:
        on a copy of the 1M bench index, 21.3 s right after a training and 8-12 s to
        fold in 10,000 rows. Here fragments grow to ``COMPACT_FRAGMENT_ROWS`` and then
        stay, unless they hold a deleted row (any share: a forgotten memory's vector must
        leave the disk); the same steps took 0.11 s after the training and 0.5-4 s for
        10,000 rows (a `/tmp` script, docs/performance-log.md).

        New rows are folded into a new segment of the ANN index, or with
        ``merge_segments`` merged with all of its segments into one, which rewrites the
        whole ANN index (1.4-1.8 s at 1M rows, even with one segment and nothing new) and
        saves searches ~0.8 ms a segment there (``VectorCatalog._compact`` chooses). Old
        versions are dropped after the indexes are updated, so their replaced files go in
        the same compaction."""
        steps: dict[str, float] = {}

        def step(name: str, run: Any) -> None:
            started = time.perf_counter()
            run(_open_dataset(self.path))  # the latest version
            steps[name] = time.perf_counter() - started

        step("files", lambda ds: ds.optimize.compact_files(
            target_rows_per_fragment=COMPACT_FRAGMENT_ROWS, materialize_deletions_threshold=0.0))
        step("ann", lambda ds: ds.optimize.optimize_indices(
            num_indices_to_merge=MERGE_ALL if merge_segments else 0, index_names=[ANN_INDEX]))
        # The namespace index is small (130 KB at 1M rows): merged at once.
        step("namespaces", lambda ds: ds.optimize.optimize_indices(index_names=[NS_INDEX]))
        # Only this process touches the index, so dropping every old version is safe.
        step("versions", lambda ds: ds.cleanup_old_versions(
            older_than=timedelta(0), delete_unverified=True))
        self.reload()  # a remapped index: the old one leaves the search handle's cache
        return steps


def _open_table(path: Path, **connect: Any) -> lancedb.table.Table:
    """The index table at ``path`` on a connection of its own (``connect``: its options)."""
    return lancedb.connect(str(path), **connect).open_table(TABLE)


def _open_dataset(path: Path) -> lance.LanceDataset:
    """The index table at ``path`` as Lance's dataset, with a cache of its own."""
    return lance.dataset(str(path / f"{TABLE}.lance"))


def _id_table(table: lancedb.table.Table) -> pa.Table:
    """Every id, as an Arrow table with one column: only the ids are read, not the vectors
    (1.5 GB at 1M rows), and no Python string is made for each. In batches of 64k rows:
    ``to_arrow`` returned ~1k-row chunks, which took 257 ms to read at 1M rows against
    51 ms, and DuckDB's checksum of them 32 ms against 7."""
    if not table.count_rows():
        return pa.table({"id": pa.array([], pa.string())})
    return table.search().select(["id"]).limit(None).to_batches(ID_BATCH_ROWS).read_all()


def read_ids(path: Path) -> pa.Table:
    """``VectorIndex.id_table`` of the table at ``path``, on a connection of its own: off
    the owner thread, whose work it would hold up (~0.05-0.15 s at 1M rows)."""
    return _id_table(_open_table(path))


def build_ann_index(path: Path, partition_rows: int) -> int:
    """Train and write the ANN index of the table at ``path``, replacing any older one, on
    a connection of its own (run it off the owner thread), with partitions of about
    ``partition_rows`` rows. Returns the rows it was trained on. Writes that commit
    meanwhile are kept: Lance rebases the index commit on them, and their rows stay
    searchable exhaustively until the next compaction."""
    table = _open_table(path)
    rows = int(table.count_rows())
    config = IvfSq(distance_type="l2", target_partition_size=partition_rows)
    table.create_index("vector", config=config, replace=True, name=ANN_INDEX)
    _index_namespaces(table)
    return rows


def _ann_stats(table: Any) -> dict[str, int] | None:
    """``VectorIndex.ann_stats`` of ``table`` (either handle)."""
    indices = {i.name: i for i in table.list_indices()}
    if ANN_INDEX not in indices:
        return None
    stats = table.index_stats(ANN_INDEX)
    if stats is None:
        return None
    details = getattr(indices[ANN_INDEX], "index_details", None) or {}
    return {
        "indexed": stats.num_indexed_rows,
        "unindexed": stats.num_unindexed_rows,
        "segments": stats.num_indices or 1,
        "partition_rows": int(details.get("target_partition_size") or 0),
        "namespace_index": int(NS_INDEX in indices),
    }


def _index_namespaces(table: lancedb.table.Table) -> None:
    table.create_index("ns", config=Bitmap(), replace=True, name=NS_INDEX)
