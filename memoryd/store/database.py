"""The encrypted DuckDB database: memories, their postings, exact vectors and history.

Every method here is synchronous and must run on the one thread that owns the connection
(``memoryd.store.owner.OwnerThread``); callers await it from the event loop. Every write of
more than one statement goes through ``transaction()``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from memoryd.errors import KeyProblem, MemorydError, NotFound
from memoryd.model import Memory, SearchFilters, is_canonical_id, utcnow
from memoryd.search.hit_rows import HIT_FIELDS, HitRows
from memoryd.search.inverted import InvertedIndex
from memoryd.search.lexical import DocumentAnalyzer
from memoryd.search.ram import (
    NEVER,
    NO_POSITION,
    Coded,
    FactRow,
    Pairs,
    RamIndex,
    RankFact,
    RankFacts,
    ThreadsTooLong,
)
from memoryd.store.content_keys import KEY_SQL, ContentKeys
from memoryd.store.migrations import MIGRATIONS

log = logging.getLogger(__name__)

T = TypeVar("T")

_MEMORY_FIELDS = (
    "id",
    "content",
    "namespace",
    "kind",
    "tags",
    "metadata",
    "importance",
    "source",
    "thread",
    "position",
    "created_at",
    "updated_at",
    "accessed_at",
    "access_count",
    "expires_at",
    "embedding_model",
)
MEMORY_COLUMNS = ", ".join(_MEMORY_FIELDS)
# The fields a memory's add event reports (``Database.history``).
ADD_EVENT_FIELDS = ("content", "namespace", "kind", "tags", "metadata", "importance")
# The RAM copy's fields (memoryd/search/hit_rows.py) as SQL: MEMORY_COLUMNS, less the id.
HIT_COLUMNS = ", ".join(
    {
        "metadata": "metadata::VARCHAR AS metadata",
        "embedded": "embedding_model IS NOT NULL AS embedded",
    }.get(name, name)
    for name in HIT_FIELDS
)
# DuckDB's memory limit while its cache is released (release_cache).
RELEASE_CACHE_LIMIT_MB = 16
# The most memories of the candidates' threads a search sorts on the event loop to find
# their neighbours (``RamIndex.neighbours``: ~1 ms for this many); longer threads are
# sorted on the owner thread, so that other requests are not held meanwhile (100k
# memories in one thread took 15 ms).
LOOP_THREAD_MEMBERS_MAX = 8192
# When writes pause, a write-ahead log of this size or more is checkpointed (DuckDB's own
# threshold, store.checkpoint_mb, is far higher so that imports are not slowed down).
IDLE_CHECKPOINT_MB = 16
# A set of ids in two numbers: equal sets give equal pairs; different ones, only by a
# 64-bit hash collision.
_CHECKSUM = "SELECT count(*), coalesce(sum(hash(id)::HUGEINT), 0) FROM "


def extension_path(name: str) -> Path:
    """The .duckdb_extension file shipped in the pinned ``duckdb-extension-<name>`` wheel."""
    import importlib

    module = importlib.import_module(f"duckdb_extension_{name}")
    root = Path(module.__file__ or "").parent / "extensions"
    found = sorted(root.glob(f"v*/{name}.duckdb_extension"))
    if not found:
        raise MemorydError(f"the duckdb-extension-{name} wheel has no extension file")
    return found[-1]


@dataclass
class PreparedMemory:
    """A memory ready to write: validated, hashed, analysed and (maybe) embedded."""

    id: str
    content: str
    content_hash: str
    namespace: str
    kind: str
    tags: list[str]
    metadata: dict[str, Any]
    importance: float
    source: str | None
    thread: str | None
    position: int | None
    created_at: datetime
    expires_at: datetime | None
    updated_at: datetime
    embedding: bytes | None = None  # ``vector_blob``: float16
    embedding_model: str | None = None


@dataclass(frozen=True)
class IndexDiff:
    """How the vector index's ids differ from the memories embedded by a model."""

    missing: list[str]  # embedded, not in the index
    extra: list[str]  # in the index, not (or no longer) embedded
    repeated: list[str]  # embedded, and in the index more than once
    # DuckDB's (count, sum of id hashes) of the embedded memories when the diff was taken
    # (``embedded_checksum``): a seal taken right after an empty diff reuses it.
    checksum: tuple[int, int] | None = field(default=None, compare=False)

    def __bool__(self) -> bool:
        return bool(self.missing or self.extra or self.repeated)


class Database:
    def __init__(
        self,
        path: Path,
        key: str,
        temp_dir: Path,
        analyzer: DocumentAnalyzer | None = None,
        memory_limit_mb: int = 0,
        lexical_ram_max: int = 0,
        checkpoint_mb: int = 0,
    ):
        self.path = path
        self.temp_dir = temp_dir
        self.analyzer = analyzer or DocumentAnalyzer()
        self.con, self._spill_dir = self._connect(path, key, temp_dir)
        # Lexical search and ranking from RAM (memoryd.search.ram) once loaded, while the
        # store holds at most ``lexical_ram_max`` memories; the tables stay the truth.
        self.lexical_ram_max = lexical_ram_max
        self._ram: RamIndex | None = None
        # Held while the RAM index changes (on the owner thread) and by reads of it from
        # other threads, instead of queueing on the owner thread, which an import keeps
        # busy with inserts and commits: a search's event loop reads the rank facts and
        # hits' fields if it is free (``candidate_facts_now``, ``rows_now``), and the RAM
        # search thread the postings (``lexical_search_now``).
        self._ram_lock = threading.Lock()
        self._ram_log: list[tuple[str, tuple[Any, ...]]] | None = None  # during a load
        self._after_commit: list[tuple[str, tuple[Any, ...]]] | None = None
        # Which content may be stored already; loaded in the background (load_content_keys).
        self.content_keys = ContentKeys()
        if memory_limit_mb > 0:
            self.con.execute(f"SET memory_limit = '{int(memory_limit_mb)}MB'")
        if checkpoint_mb > 0:
            self.con.execute(f"SET checkpoint_threshold = '{int(checkpoint_mb)}MB'")
        # Restored by value after release_cache: DuckDB 1.5.5's RESET memory_limit shows
        # the default again but leaves the buffer pool at the lowered limit.
        row = self.con.execute("SELECT current_setting('memory_limit')").fetchone()
        self._memory_limit = str(row[0]) if row else ""  # e.g. '18.8 GiB', DuckDB's own
        self.migrate()
        self.ensure_lexical_index()

    # -- connection and schema -------------------------------------------------------------

    @staticmethod
    def _connect(path: Path, key: str, temp_dir: Path) -> tuple[duckdb.DuckDBPyConnection, Path]:
        """A connection with the store attached, and the directory of its spill files."""
        con = duckdb.connect(
            ":memory:",
            config={"autoinstall_known_extensions": False, "autoload_known_extensions": False},
        )
        # DuckDB's built-in crypto can only read encrypted files; httpfs brings OpenSSL,
        # which it needs to write them. Loaded from the pinned wheel: never downloaded.
        con.execute(f"LOAD '{extension_path('httpfs')}'")
        temp_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # A directory of this connection's own: spill files that a killed daemon left in
        # the temp directory made DuckDB refuse temp_file_encryption below ("existing
        # temporary files found"), so the daemon could not start again.
        spill_dir = Path(tempfile.mkdtemp(prefix="spill-", dir=temp_dir))
        con.execute(f"SET temp_directory = '{spill_dir}'")
        # Off by default even with an encrypted database: sorts and joins that spill would
        # write plaintext rows to temp_directory.
        con.execute("SET temp_file_encryption = true")
        try:
            con.execute(f"ATTACH '{path}' AS store (ENCRYPTION_KEY '{key}')")
        except duckdb.Error as exc:
            con.close()
            shutil.rmtree(spill_dir, ignore_errors=True)
            text = str(exc)
            if "encryption key" in text.lower() or "without a key" in text.lower():
                raise KeyProblem(
                    f"the data key does not open {path} (was the key file replaced?)"
                ) from None
            raise KeyProblem(f"cannot open the database {path}: {text.splitlines()[0]}") from None
        con.execute("USE store")
        # The store is ours now (DuckDB locks its file), so whatever else is in the temp
        # directory was left by a process that died: encrypted, but of no further use.
        for stale in temp_dir.iterdir():
            if stale != spill_dir:
                if stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    stale.unlink(missing_ok=True)
        return con, spill_dir

    def migrate(self, stop_before: str | None = None) -> list[str]:
        """Apply pending migrations in order; returns the names applied."""
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name VARCHAR, applied_at TIMESTAMP)"
        )
        self.con.execute("CHECKPOINT")
        done = {r[0] for r in self.con.execute("SELECT name FROM schema_migrations").fetchall()}
        applied = []
        for name, migration in MIGRATIONS:
            if name == stop_before:
                break
            if name in done:
                continue
            with self.transaction() as con:
                migration(con)
                con.execute("INSERT INTO schema_migrations VALUES (?, ?)", [name, utcnow()])
            self.con.execute("CHECKPOINT")
            log.info("applied migration %s", name)
            applied.append(name)
        return applied

    def ensure_lexical_index(self, batch: int = 5000) -> int:
        """Rebuild every memory's postings if they were made by another analyser recipe
        (another version, index keys or thread context). Returns how many were rebuilt."""
        if self.get_meta("lexical_recipe") == self.analyzer.signature:
            return 0
        ids = [r[0] for r in self.con.execute("SELECT id FROM memories ORDER BY id").fetchall()]
        for start in range(0, len(ids), batch):
            with self.transaction() as con:
                self._reindex_lexical(con, ids[start : start + batch])
        self.set_meta("lexical_recipe", self.analyzer.signature)
        if ids:
            log.info("rebuilt the lexical index of %d memories", len(ids))
        return len(ids)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.con.execute("BEGIN TRANSACTION")
        self._after_commit = []
        try:
            yield self.con
        except BaseException:
            self._after_commit = None
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")
        changes, self._after_commit = self._after_commit, None
        for op, args in changes:
            self._ram_change(op, args)

    # -- lexical search from RAM ---------------------------------------------------------------

    @property
    def ram_ready(self) -> bool:
        return self._ram is not None

    @property
    def hit_fields_in_ram(self) -> bool:
        """Whether searches take their hits' fields from RAM (``HitRows``)."""
        return self._ram is not None and self._ram.rows.enabled

    def _ram_changed(self, op: str, *args: Any) -> None:
        """Postings were written (op "add"), memories inserted ("new"), rank facts
        written ("facts"), rows changed ("stale") or a memory erased ("remove"): the RAM
        copy follows once the transaction commits, and not at all if it rolls back
        (``RamIndex.apply``)."""
        if self._after_commit is not None:
            self._after_commit.append((op, args))
        else:
            self._ram_change(op, args)

    def _ram_change(self, op: str, args: tuple[Any, ...]) -> None:
        if self._ram_log is not None:
            self._ram_log.append((op, args))
        ram = self._ram
        if ram is None:
            return
        with self._ram_lock:
            ram.apply(op, args)
            if len(ram) > self.lexical_ram_max:
                self._ram = None
                log.info(
                    "lexical search and ranking back to SQL: more than "
                    "search.lexical_ram_max memories"
                )

    def compact_ram(self) -> None:
        """Fold what write batches left in Python sets and lists (recent content keys,
        recent postings) into compact arrays; for when writes pause."""
        self.content_keys.fold()
        ram = self._ram
        if ram is not None:
            try:
                self._copy_missing_rows(ram)
            except (duckdb.Error, pa.ArrowException) as exc:  # a cache: drop it, lose nothing
                log.warning("search hits read from DuckDB: copying their fields failed (%s)",
                            type(exc).__name__)
                with self._ram_lock:
                    ram.rows.clear()
            with self._ram_lock:
                ram.fold()

    def _copy_missing_rows(self, ram: RamIndex) -> None:
        """Copy the hit fields of memories whose copies went stale (edits, touches, new
        embeddings) into RAM again: one scan, joined to their ids."""
        ids = ram.rows.missing_ids()
        if not ids:
            return
        wanted = pa.table({"id": pa.array(ids, pa.string())})
        self.con.register("wanted_rows", wanted)
        try:
            table = self.con.execute(
                f"SELECT m.id, {HIT_COLUMNS} FROM memories m SEMI JOIN wanted_rows w ON m.id = w.id"
            ).to_arrow_table()
        finally:
            self.con.unregister("wanted_rows")
        ordinals = ram.postings.ordinals(table.column("id").to_pylist())
        with self._ram_lock:
            ram.rows.add(table, ordinals)

    def _store_cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor of its own, for a snapshot another thread may read meanwhile."""
        cursor = self.con.cursor()
        cursor.execute("USE store")  # a cursor starts in the in-memory catalog
        return cursor

    def begin_ram_index(self) -> duckdb.DuckDBPyConnection:
        """Open a snapshot of the postings and rank facts for ``build_ram_index`` (on
        another thread: reading them takes seconds at 1M memories) and note every change
        from now on, for ``finish_ram_index``."""
        self._ram_log = []
        cursor = self._store_cursor()
        cursor.execute("BEGIN TRANSACTION")  # the build's reads see one snapshot
        # which DuckDB takes at a transaction's first read of the store: take it now.
        cursor.execute("SELECT 1 FROM memories LIMIT 1").fetchall()
        return cursor

    def finish_ram_index(self, ram: RamIndex | None) -> None:
        """Replay what changed during the build and search from ``ram`` from now on
        (``None``: the build failed; stay with SQL)."""
        changes, self._ram_log = self._ram_log or [], None
        if ram is None:
            return
        for op, args in changes:
            ram.apply(op, args)
        if len(ram) <= self.lexical_ram_max:
            with self._ram_lock:
                self._ram = ram
            mb = ram.nbytes / 1e6
            log.info(
                "lexical search and ranking from RAM: %d memories (%.0f MB; hits' fields %s)",
                len(ram),
                mb,
                "too" if ram.rows.enabled else "from DuckDB",
            )

    def close(self) -> None:
        with contextlib.suppress(duckdb.Error):
            self.con.execute("CHECKPOINT")
        self.con.close()
        shutil.rmtree(self._spill_dir, ignore_errors=True)

    def release_cache(self) -> None:
        """Drop the blocks DuckDB keeps cached after a bulk read or write (the RAM load
        reads every row: ~90 MB of a restarted daemon at 100k memories stayed cached),
        by lowering the memory limit for a moment. Searches cache what they read again,
        up to the limit. Anything that must leave memory spills to encrypted temp files."""
        try:
            self.con.execute(f"SET memory_limit = '{RELEASE_CACHE_LIMIT_MB}MB'")
        except duckdb.Error as exc:  # cannot shrink that far now: keep the cache
            log.debug("DuckDB cache not released: %s", type(exc).__name__)
        finally:
            if self._memory_limit:
                self.con.execute(f"SET memory_limit = '{self._memory_limit}'")

    def cached_mb(self) -> float:
        """How much of the database's data DuckDB holds in its cache, in MB."""
        row = self.con.execute(
            "SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() "
            "WHERE tag = 'BASE_TABLE'"
        ).fetchone()
        return float(row[0]) / 1e6 if row else 0.0

    def get_meta(self, key: str) -> str | None:
        row = self.con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])

    def pop_meta(self, key: str) -> str | None:
        """Read and delete a meta value (one statement: both or neither)."""
        row = self.con.execute("DELETE FROM meta WHERE key = ? RETURNING value", [key]).fetchone()
        return row[0] if row else None

    # -- writes -----------------------------------------------------------------------------

    def find_duplicates(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Existing ids for (namespace, content_hash) pairs, in one query. The pairs go in
        as a registered Arrow table: a 1,000-element list parameter cost ~60 ms to bind."""
        maybe = self.content_keys.may_contain([k[1] for k in keys])
        keys = [k for k, stored in zip(keys, maybe, strict=True) if stored]
        if not keys:
            return {}
        wanted = pa.table({"namespace": [k[0] for k in keys], "content_hash": [k[1] for k in keys]})
        self.con.register("wanted_hashes", wanted)
        try:
            rows = self.con.execute(
                "SELECT m.namespace, m.content_hash, min(m.id) FROM memories m "
                "JOIN (SELECT DISTINCT namespace, content_hash FROM wanted_hashes) w "
                "ON w.namespace = m.namespace AND w.content_hash = m.content_hash "
                "GROUP BY 1, 2"
            ).fetchall()
        finally:
            self.con.unregister("wanted_hashes")
        return {(r[0], r[1]): r[2] for r in rows}

    def insert(self, items: Sequence[PreparedMemory], actor: str) -> list[tuple[str, bool]]:
        """Store new memories in one transaction; exact duplicates in a namespace return the
        existing id instead (also within the batch). Returns (id, duplicate) per item."""
        results: list[tuple[str, bool]] = []
        fresh: list[PreparedMemory] = []
        seen: dict[tuple[str, str], str] = {}
        with self.transaction() as con:
            known = self.find_duplicates([(i.namespace, i.content_hash) for i in items])
            for item in items:
                key = (item.namespace, item.content_hash)
                existing = seen.get(key) or known.get(key)
                if existing:
                    results.append((existing, True))
                    continue
                seen[key] = item.id
                fresh.append(item)
                results.append((item.id, False))
            if fresh:
                self.content_keys.add(m.content_hash for m in fresh)
                documents, successors = self._new_documents(con, fresh)
                inserted = self._insert_rows(con, fresh, actor, documents)
                namespaces = {m.id: m.namespace for m in fresh}
                self._write_postings(con, documents, namespaces, replace=False)
                self._reindex_lexical(con, successors)
                self._ram_changed(
                    "new",
                    [
                        (m.id, m.created_at, m.importance, m.expires_at, m.kind, m.tags, m.thread,
                         m.position)
                        for m in fresh
                    ],
                    _hit_fields(inserted),
                )
        return results

    def _new_documents(
        self, con: Any, items: Sequence[PreparedMemory]
    ) -> tuple[dict[str, Counter[str]], list[str]]:
        """The lexical documents of memories about to be inserted, and the ids of stored
        memories that will follow one of them in a thread (their documents change).

        Computed before the insert so rows go in with their final length: rebuilding
        after the fact cost a windowed query and an UPDATE per batch. Unthreaded memories
        need no query at all."""
        previous: dict[str, tuple[str, dict[str, Any] | None] | None] = {}
        successors: list[str] = []
        threaded = [m for m in items if m.thread is not None]
        if threaded:
            stored = self._thread_order(con, {(m.namespace, str(m.thread)) for m in threaded})
            groups: dict[tuple[str, str], list[tuple[Any, ...]]] = defaultdict(list)
            for memory_id, namespace, thread, position in stored:
                groups[(namespace, thread)].append((memory_id, position, None))
            for m in threaded:
                groups[(m.namespace, m.thread)].append((m.id, m.position, m))  # type: ignore[index]
            needed: dict[str, list[str]] = {}  # stored id -> new ids it precedes
            for entries in groups.values():
                entries.sort(key=lambda e: (e[1] is None, e[1] or 0, e[0]))
                for before, entry in zip([None, *entries], entries, strict=False):
                    new = entry[2]
                    if new is not None and before is not None:
                        if before[2] is not None:
                            previous[new.id] = (before[2].content, before[2].metadata)
                        else:
                            needed.setdefault(before[0], []).append(new.id)
                    elif new is None and before is not None and before[2] is not None:
                        successors.append(entry[0])
            if needed:
                ids = _id_list(list(needed))
                rows = con.execute(
                    f"SELECT id, content, metadata FROM memories WHERE id IN ({ids})"
                ).fetchall()
                for memory_id, content, metadata in rows:
                    for new_id in needed[memory_id]:
                        previous[new_id] = (content, json.loads(metadata) if metadata else None)
        counts = self.analyzer.documents_terms(
            [(m.content, m.metadata, previous.get(m.id)) for m in items]
        )
        return {m.id: c for m, c in zip(items, counts, strict=True)}, successors

    def _thread_order(
        self, con: Any, threads: set[tuple[str, str]]
    ) -> list[tuple[str, str, str, int | None]]:
        """(id, namespace, thread, position) of the stored memories of ``threads``."""
        wanted = pa.table({"namespace": [t[0] for t in threads], "thread": [t[1] for t in threads]})
        con.register("wanted_threads", wanted)
        try:
            return con.execute(
                "SELECT m.id, m.namespace, m.thread, m.position FROM memories m "
                "JOIN wanted_threads w ON w.namespace = m.namespace AND w.thread = m.thread"
            ).fetchall()
        finally:
            con.unregister("wanted_threads")

    def _insert_rows(
        self,
        con: Any,
        items: list[PreparedMemory],
        actor: str,
        documents: dict[str, Counter[str]],
    ) -> pa.Table:
        """Insert ``items``' rows (and their history); returns the Arrow table of them
        that was inserted."""
        now = utcnow()
        memories = pa.table(
            {
                "id": [m.id for m in items],
                "content": [m.content for m in items],
                "content_hash": [m.content_hash for m in items],
                "namespace": [m.namespace for m in items],
                "kind": [m.kind for m in items],
                "tags": pa.array([m.tags for m in items], pa.list_(pa.string())),
                "metadata": [
                    json.dumps(m.metadata, ensure_ascii=False) if m.metadata else "{}"
                    for m in items
                ],
                "importance": pa.array([m.importance for m in items], pa.float64()),
                "source": pa.array([m.source for m in items], pa.string()),
                "thread": pa.array([m.thread for m in items], pa.string()),
                "position": pa.array([m.position for m in items], pa.int64()),
                "created_at": pa.array([m.created_at for m in items], pa.timestamp("us")),
                "updated_at": pa.array([m.updated_at for m in items], pa.timestamp("us")),
                "expires_at": pa.array([m.expires_at for m in items], pa.timestamp("us")),
                "embedding": pa.array([m.embedding for m in items], pa.binary()),
                "embedding_model": pa.array([m.embedding_model for m in items], pa.string()),
                "doc_len": pa.array([sum(documents[m.id].values()) for m in items], pa.int32()),
            }
        )
        con.register("new_memories", memories)
        try:
            con.execute(
                """
                INSERT INTO memories (id, content, content_hash, namespace, kind, tags, metadata,
                    importance, source, thread, position, created_at, updated_at, accessed_at,
                    access_count, expires_at, doc_len, embedding, embedding_model)
                SELECT id, content, content_hash, namespace, kind, tags, metadata::JSON,
                    importance, source, thread, position, created_at, updated_at, NULL, 0,
                    expires_at, doc_len, embedding, embedding_model
                FROM new_memories
                """
            )
            # The add event holds no fields: ``history`` derives them from the row and the
            # updates' old values. Building them as JSON (a second copy of every memory's
            # content) was ~10% of an import's insert in py-spy's samples.
            con.execute(
                "INSERT INTO history (memory_id, changed_at, actor, action, changes) "
                "SELECT id, ?, ?, 'add', NULL FROM new_memories",
                [now, actor],
            )
        finally:
            con.unregister("new_memories")
        return memories

    def _reindex_lexical(self, con: Any, ids: Sequence[str]) -> None:
        """Rebuild the postings and document length of ``ids`` and of the memories that
        follow them in their threads (their documents include the one before them)."""
        if not ids:
            return
        id_list = _id_list(ids)
        rows = con.execute(
            f"""
            WITH target AS (SELECT DISTINCT namespace, thread FROM memories
                            WHERE id IN ({id_list}) AND thread IS NOT NULL),
            threaded AS (
                SELECT m.id, m.namespace, m.content, m.metadata,
                       lag(m.id) OVER w AS prev_id, lag(m.content) OVER w AS prev_content,
                       lag(m.metadata) OVER w AS prev_metadata
                FROM memories m JOIN target t ON t.namespace = m.namespace
                                              AND t.thread = m.thread
                WINDOW w AS (PARTITION BY m.namespace, m.thread
                             ORDER BY m.position NULLS LAST, m.id))
            SELECT id, namespace, content, metadata, prev_content, prev_metadata FROM threaded
            WHERE id IN ({id_list}) OR prev_id IN ({id_list})
            UNION ALL
            SELECT id, namespace, content, metadata, NULL, NULL FROM memories
            WHERE id IN ({id_list}) AND thread IS NULL
            """
        ).fetchall()
        namespaces = {r[0]: r[1] for r in rows}
        counts = self.analyzer.documents_terms([
            (
                content,
                json.loads(metadata) if metadata else None,
                None if prev_content is None
                else (prev_content, json.loads(prev_metadata) if prev_metadata else None),
            )
            for _, _, content, metadata, prev_content, prev_metadata in rows
        ])
        documents = {r[0]: c for r, c in zip(rows, counts, strict=True)}
        self._write_postings(con, documents, namespaces, replace=True)

    def _write_postings(
        self,
        con: Any,
        documents: dict[str, Counter[str]],
        namespaces: dict[str, str],
        replace: bool,
    ) -> None:
        """Insert the postings of ``documents``; with ``replace``, first drop the old ones
        and set each memory's document length (new rows carry theirs already)."""
        if not documents:
            return
        self._ram_changed("add", documents, namespaces)
        # A row per (memory, term): the memory's own columns repeated by its term count.
        ids, counts = list(documents), list(documents.values())
        owner = pa.array(np.repeat(np.arange(len(ids)), [len(c) for c in counts]))
        lengths = pa.array([sum(c.values()) for c in counts], pa.int32())  # BM25's length
        postings = pa.table(
            {
                "term": [term for c in counts for term in c],
                "memory_id": pa.array(ids).take(owner),
                "tf": pa.array([tf for c in counts for tf in c.values()], pa.int32()),
                "namespace": pa.array([namespaces[i] for i in ids]).take(owner),
                "doc_len": lengths.take(owner),
            }
        )
        if replace:
            con.execute(f"DELETE FROM postings WHERE memory_id IN ({_id_list(list(documents))})")
        con.register("new_postings", postings)
        try:
            con.execute(
                "INSERT INTO postings (term, memory_id, tf, namespace, doc_len) "
                "SELECT term, memory_id, tf, namespace, doc_len FROM new_postings"
            )
        finally:
            con.unregister("new_postings")
        if replace:
            con.register("new_doc_lens", pa.table({"id": ids, "doc_len": lengths}))
            try:
                con.execute(
                    "UPDATE memories SET doc_len = d.doc_len FROM new_doc_lens d "
                    "WHERE memories.id = d.id"
                )
            finally:
                con.unregister("new_doc_lens")

    def _next_in_thread(self, con: Any, memory_id: str) -> str | None:
        row = con.execute(
            """
            WITH me AS (SELECT namespace, thread FROM memories WHERE id = ?),
            ordered AS (SELECT m.id, lead(m.id) OVER (ORDER BY m.position NULLS LAST, m.id)
                               AS next_id
                        FROM memories m JOIN me ON me.namespace = m.namespace
                                                AND me.thread = m.thread)
            SELECT next_id FROM ordered WHERE id = ?
            """,
            [memory_id, memory_id],
        ).fetchone()
        return row[0] if row and row[0] else None

    def neighbours(self, ids: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
        """(previous, next) memory in the thread of each of ``ids`` that has a thread."""
        if not ids:
            return {}
        id_list = _id_list(ids)
        rows = self.con.execute(
            f"""
            WITH target AS (SELECT DISTINCT namespace, thread FROM memories
                            WHERE id IN ({id_list}) AND thread IS NOT NULL),
            threaded AS (
                SELECT m.id, lag(m.id) OVER w AS prev_id, lead(m.id) OVER w AS next_id
                FROM memories m JOIN target t ON t.namespace = m.namespace
                                              AND t.thread = m.thread
                WINDOW w AS (PARTITION BY m.namespace, m.thread
                             ORDER BY m.position NULLS LAST, m.id))
            SELECT id, prev_id, next_id FROM threaded WHERE id IN ({id_list})
            """
        ).fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    def update(
        self,
        memory_id: str,
        changes: dict[str, Any],
        actor: str,
        derived: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Apply field changes. ``derived`` holds columns that follow from them (content
        hash, embedding) and are not history. Returns the {field: {old, new}} record
        written to history ({} when nothing changed)."""
        current = self.get(memory_id)
        record: dict[str, Any] = {}
        assignments: list[str] = []
        params: list[Any] = []
        for name, new in changes.items():
            old = getattr(current, name)
            if old == new:
                continue
            record[name] = {"old": _jsonable(old), "new": _jsonable(new)}
            assignments.append(f"{name} = ?")
            params.append(json.dumps(new, ensure_ascii=False) if name == "metadata" else new)
        if not record:
            return {}
        for name, value in (derived or {}).items():
            assignments.append(f"{name} = ?")
            params.append(value)
        now = utcnow()
        if derived and "content_hash" in derived:
            self.content_keys.add([derived["content_hash"]])
        with self.transaction() as con:
            old_next = self._next_in_thread(con, memory_id)
            assignments.append("updated_at = ?")
            params.append(now)
            con.execute(
                f"UPDATE memories SET {', '.join(assignments)} WHERE id = ?", [*params, memory_id]
            )
            if record.keys() & {"content", "metadata", "namespace", "thread", "position"}:
                self._reindex_lexical(con, [i for i in (memory_id, old_next) if i])
            if record.keys() & {
                "created_at", "importance", "expires_at", "kind", "tags", "thread", "position"
            }:
                self._ram_changed("facts", [self._fact_row(con, memory_id)])
            self._ram_changed("stale", [memory_id])
            con.execute(
                "INSERT INTO history (memory_id, changed_at, actor, action, changes) "
                "VALUES (?, ?, ?, 'update', ?)",
                [memory_id, now, actor, json.dumps(record, ensure_ascii=False)],
            )
        return record

    @staticmethod
    def _fact_row(con: Any, memory_id: str) -> FactRow:
        row = con.execute(
            "SELECT id, created_at, importance, expires_at, kind, tags, thread, position "
            "FROM memories WHERE id = ?",
            [memory_id],
        ).fetchone()
        return (row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7])

    def delete(self, memory_id: str, actor: str) -> None:
        """Erase a memory: its row, postings, vector and the content its history holds.
        A content-free record of the deletion stays in history."""
        with self.transaction() as con:
            row = con.execute("SELECT 1 FROM memories WHERE id = ?", [memory_id]).fetchone()
            if row is None:
                raise NotFound(f"no memory with id {memory_id}")
            old_next = self._next_in_thread(con, memory_id)
            con.execute("DELETE FROM postings WHERE memory_id = ?", [memory_id])
            self._ram_changed("remove", [memory_id])
            con.execute("DELETE FROM memories WHERE id = ?", [memory_id])
            if old_next:  # its document held the deleted memory as context
                self._reindex_lexical(con, [old_next])
            con.execute("UPDATE history SET changes = NULL WHERE memory_id = ?", [memory_id])
            con.execute(
                "INSERT INTO history (memory_id, changed_at, actor, action, changes) "
                "VALUES (?, ?, ?, 'delete', NULL)",
                [memory_id, utcnow(), actor],
            )

    def touch(self, memory_id: str) -> None:
        self.con.execute(
            "UPDATE memories SET accessed_at = ?, access_count = access_count + 1 WHERE id = ?",
            [utcnow(), memory_id],
        )
        self._ram_changed("stale", [memory_id])

    def purge_expired(self, actor: str = "memoryd") -> list[str]:
        ids = [
            r[0]
            for r in self.con.execute(
                "SELECT id FROM memories WHERE expires_at IS NOT NULL AND expires_at <= ?",
                [utcnow()],
            ).fetchall()
        ]
        for memory_id in ids:
            self.delete(memory_id, actor)
        return ids

    def set_embeddings(self, rows: Sequence[tuple[str, bytes]], model: str) -> None:
        if not rows:
            return
        table = pa.table(
            {"id": [r[0] for r in rows], "embedding": pa.array([r[1] for r in rows], pa.binary())}
        )
        with self.transaction() as con:
            con.register("new_embeddings", table)
            try:
                con.execute(
                    "UPDATE memories SET embedding = n.embedding, embedding_model = ? "
                    "FROM new_embeddings n WHERE memories.id = n.id",
                    [model],
                )
            finally:
                con.unregister("new_embeddings")
            self._ram_changed("stale", [r[0] for r in rows])  # their `embedded` changed

    # -- reads ------------------------------------------------------------------------------

    def get(self, memory_id: str) -> Memory:
        row = self.con.execute(
            f"SELECT {MEMORY_COLUMNS} FROM memories WHERE id = ?", [memory_id]
        ).fetchone()
        if row is None:
            raise NotFound(f"no memory with id {memory_id}")
        return _memory(row)

    def list_memories(
        self, filters: SearchFilters, limit: int, after: str | None, newest_first: bool = True
    ) -> list[Memory]:
        where, params = filter_sql(filters)
        if after:
            where.append("id < ?" if newest_first else "id > ?")
            params.append(after)
        order = "DESC" if newest_first else "ASC"
        rows = self.con.execute(
            f"SELECT {MEMORY_COLUMNS} FROM memories WHERE {' AND '.join(where)} "
            f"ORDER BY id {order} LIMIT ?",
            [*params, limit],
        ).fetchall()
        return [_memory(r) for r in rows]

    def get_many(
        self,
        ids: Sequence[str],
        filters: SearchFilters,
        vectors: bool = True,
    ) -> dict[str, tuple[Memory, bytes | None]]:
        """Rows and (with ``vectors``) exact vectors for candidate ids that pass the
        filters."""
        if not ids:
            return {}
        ram = self._ram_applying(filters)
        if ram is not None and not vectors:
            return self._rows_passing_in_ram(ram, ids, filters)
        where, params = filter_sql(filters)
        vector = "embedding" if vectors else "NULL"
        rows = self.con.execute(
            _rows_by_id(f"{MEMORY_COLUMNS}, {vector} AS vector", ids, where), params
        ).fetchall()
        return {r[0]: (_memory(r[:-1]), r[-1]) for r in rows}

    def _ram_applying(self, filters: SearchFilters) -> RamIndex | None:
        """The RAM index, when it is loaded and applies ``filters`` (every filter but
        metadata); else ``None``, and SQL applies them."""
        ram = self._ram
        return ram if ram is not None and not filters.beyond_rank_facts else None

    def _rows_passing_in_ram(
        self, ram: RamIndex, ids: Sequence[str], filters: SearchFilters
    ) -> dict[str, tuple[Memory, bytes | None]]:
        """``get_many`` without vectors when the RAM rank facts apply ``filters``: the
        rows by their ids alone (from their RAM copies where fresh ones are held), kept if
        their facts pass. In SQL the filters need the rows found first and filtered after
        (``_rows_by_id``), which took 2.4 ms for a search's 10 hits at 100k memories
        against 1.7 ms for the rows alone (the RAM index changes with each commit on this
        thread, so facts, copies and rows agree)."""
        found = ram.rows.lookup(ids)
        missing = [i for i in ids if i not in found]
        if missing:
            rows = self.con.execute(
                f"SELECT {MEMORY_COLUMNS} FROM memories WHERE id IN ({_id_list(missing)})"
            ).fetchall()
            found.update((r[0], _memory(r)) for r in rows)
        return _passing(ram, found, filters)

    def rows_now(
        self, ids: Sequence[str], filters: SearchFilters, ranked: bool = False
    ) -> dict[str, tuple[Memory, bytes | None]] | None:
        """``get_many(ids, filters, vectors=False)`` from a thread other than the owner,
        or ``None`` when that cannot be answered there now: the RAM index is not loaded,
        is changing this moment, or does not apply ``filters``, or some of ``ids`` have
        no fresh copy of their fields (their rows are read from DuckDB, on the owner
        thread, which the caller then asks).

        ``ranked``: a search ranked these ids a moment ago from rank facts (or rows) that
        passed ``filters``, so their facts are not read again, only their namespaces. A
        memory changed or deleted since has no fresh copy (every change forgets it), so
        its row is read, filtered, from DuckDB: the hits still say what the store says.
        (Reading the 10 hits' facts again took ~0.04 ms of a ~3.5 ms vector search.)"""
        if filters.beyond_rank_facts:
            return None
        with self._ram_if_free() as ram:
            if ram is None:
                return None
            found = ram.rows.lookup(ids)
            if any(i not in found for i in ids):
                return None
            return _passing(ram, found, filters, ranked)

    @contextlib.contextmanager
    def _ram_if_free(self) -> Iterator[RamIndex | None]:
        """The RAM index, kept from changing while the block reads it, for a reader on a
        thread other than the owner; ``None`` (nothing held) when it is not loaded or is
        changing this moment. The reader does not wait for it (the event loop must not):
        it asks the owner thread instead."""
        if not self._ram_lock.acquire(blocking=False):
            yield None
            return
        try:
            yield self._ram
        finally:
            self._ram_lock.release()

    def filter_counts(self, filters: SearchFilters) -> tuple[int, int]:
        """How many unexpired memories pass ``filters``, and how many are in their scope
        (the namespace, or the whole store): from the RAM rank facts when they can apply
        the filters, else one scan of the filtered columns (1-6 ms at 1M memories)."""
        ram = self._ram_applying(filters)
        if ram is not None:
            now = utcnow()
            in_namespace = SearchFilters(namespace=filters.namespace)
            return (
                int(np.count_nonzero(ram.passing(filters, now))),
                int(np.count_nonzero(ram.passing(in_namespace, now))),
            )
        where, params = filter_sql(filters)
        scope, scope_params = filter_sql(SearchFilters(namespace=filters.namespace))
        row = self.con.execute(
            f"SELECT count(*) FILTER (WHERE {' AND '.join(where)}), "
            f"count(*) FILTER (WHERE {' AND '.join(scope)}) FROM memories",
            [*params, *scope_params],
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def namespace_share(self, namespace: str) -> float:
        """The share of the memories that ``namespace`` holds (1.0 in an empty store):
        from the RAM postings when loaded, else one count."""
        ram = self._ram
        if ram is not None:
            return ram.postings.share(namespace)
        row = self.con.execute(
            "SELECT count(*) FILTER (WHERE namespace = ?), count(*) FROM memories", [namespace]
        ).fetchone()
        return row[0] / row[1] if row and row[1] else 1.0

    def matching_vectors(
        self, filters: SearchFilters, vectors: bool
    ) -> list[tuple[str, bytes | None]]:
        """Every memory that passes ``filters``: (id, stored vector, or ``None`` without
        ``vectors``). For filters that ``filter_counts`` found narrow."""
        ram = self._ram_applying(filters)
        if ram is not None and not vectors:
            passing = np.flatnonzero(ram.passing(filters, utcnow()))
            return [(i, None) for i in ram.postings.ids(passing)]
        where, params = filter_sql(filters)
        vector = "embedding" if vectors else "NULL"
        return self.con.execute(
            f"SELECT id, {vector} FROM memories WHERE {' AND '.join(where)}", params
        ).fetchall()

    def stored_vectors(self, ids: Sequence[str]) -> dict[str, bytes | None]:
        """The stored (exact) vectors of those ``ids`` that exist: the column alone, for a
        ranking that has everything else from RAM."""
        if not ids:
            return {}
        rows = self.con.execute(
            f"SELECT id, embedding FROM memories WHERE id IN ({_id_list(ids)})"
        ).fetchall()
        return dict(rows)

    def candidate_facts(
        self, ids: Sequence[str], neighbours: bool, filters: SearchFilters | None = None
    ) -> tuple[dict[str, RankFact], dict[str, tuple[str | None, str | None]]] | None:
        """Like ``candidates`` for a search without a metadata filter, from the RAM rank
        facts instead of the rows: the facts of candidates that exist, have not expired
        and pass ``filters`` (all but the namespace, which the candidates' search applied)
        and, with ``neighbours``, the thread neighbours of threaded ones (and their facts,
        on the same terms), found in RAM too. ``None`` until the RAM index is loaded."""
        ram = self._ram
        if ram is None:
            return None
        return self._facts_with_neighbours(ram, ids, neighbours, filters)

    def candidate_facts_now(
        self, ids: Sequence[str], neighbours: bool, filters: SearchFilters | None = None
    ) -> tuple[dict[str, RankFact], dict[str, Pairs]] | None:
        """``candidate_facts`` from a thread other than the owner (the event loop), or
        ``None`` when that cannot be answered there now: the RAM index is not loaded or is
        changing this moment, or the candidates' threads are too long to sort there
        (``LOOP_THREAD_MEMBERS_MAX``). The caller then asks the owner thread."""
        with self._ram_if_free() as ram:
            if ram is None:
                return None
            try:
                return self._facts_with_neighbours(
                    ram, ids, neighbours, filters, LOOP_THREAD_MEMBERS_MAX
                )
            except ThreadsTooLong:
                return None

    def _facts_with_neighbours(
        self,
        ram: RamIndex,
        ids: Sequence[str],
        neighbours: bool,
        filters: SearchFilters | None,
        members_max: int | None = None,
    ) -> tuple[dict[str, RankFact], dict[str, Pairs]]:
        now = utcnow()
        return self._with_neighbours(
            lambda wanted: ram.facts.lookup(wanted, now, filters),
            lambda fact: fact.threaded,
            ids,
            neighbours,
            lambda threaded: ram.neighbours(threaded, members_max),
        )

    def _with_neighbours(
        self,
        fetch: Callable[[Sequence[str]], dict[str, T]],
        threaded: Callable[[T], bool],
        ids: Sequence[str],
        neighbours: bool,
        pairs_of: Callable[[Sequence[str]], dict[str, Pairs]] | None = None,
    ) -> tuple[dict[str, T], dict[str, Pairs]]:
        """``fetch`` the candidates and, with ``neighbours``, the (previous, next) of each
        ``threaded`` one (``pairs_of`` them: SQL's ``neighbours`` unless given) and what
        ``fetch`` gives for those neighbours too. The neighbour lookup runs only when some
        candidate has a thread."""
        found = fetch(ids)
        if not neighbours:
            return found, {}
        in_threads = [i for i, item in found.items() if threaded(item)]
        if not in_threads:
            return found, {}
        pairs = (pairs_of or self.neighbours)(in_threads)
        missing = sorted({n for pair in pairs.values() for n in pair if n and n not in found})
        if missing:
            found.update(fetch(missing))
        return found, pairs

    def candidates(
        self, ids: Sequence[str], filters: SearchFilters, neighbours: bool
    ) -> tuple[dict[str, tuple[Memory, bytes | None]], dict[str, tuple[str | None, str | None]]]:
        """Rows and exact vectors of candidate ids that pass the filters and, with
        ``neighbours``, the thread neighbours (previous, next) of each threaded candidate,
        whose rows are returned too when they pass the filters. The neighbour lookup runs
        only when some candidate has a thread: from the RAM index when it is loaded (the
        same pairs as SQL's, without its ~7 ms), else in SQL."""
        ram = self._ram
        return self._with_neighbours(
            lambda wanted: self.get_many(wanted, filters),
            lambda row: row[0].thread is not None,
            ids,
            neighbours,
            ram.neighbours if ram is not None else None,
        )

    def lexical_search(
        self,
        query_terms: Sequence[str],
        filters: SearchFilters,
        limit: int,
        prefixes: Sequence[str] = (),
    ) -> list[tuple[str, float]]:
        """BM25 (id, score), best first: from RAM when loaded and no metadata filter must
        narrow the ranking first, else in SQL. Both rank alike. (In SQL, at 1M memories,
        a search with a time filter took ~145 ms, one with a kind ~160 ms.)"""
        ram = self._ram_applying(filters)
        if ram is not None:
            return _lexical_in_ram(ram, query_terms, filters, limit, prefixes)
        return self.lexical_search_sql(query_terms, filters, limit, prefixes)

    def lexical_search_now(
        self,
        query_terms: Sequence[str],
        filters: SearchFilters,
        limit: int,
        prefixes: Sequence[str] = (),
    ) -> list[tuple[str, float]] | None:
        """``lexical_search`` from the RAM postings, on a thread other than the owner (a
        search's lexical leg, beside its embedding, never queued behind an import's SQL):
        it waits while a commit's changes are applied to the RAM index. ``None`` when SQL
        must answer (the RAM index is not loaded, or a metadata filter), on the owner
        thread, which the caller then asks."""
        with self._ram_lock:
            ram = self._ram_applying(filters)
            if ram is None:
                return None
            return _lexical_in_ram(ram, query_terms, filters, limit, prefixes)

    def lexical_search_sql(
        self,
        query_terms: Sequence[str],
        filters: SearchFilters,
        limit: int,
        prefixes: Sequence[str] = (),
        k1: float = 1.2,
        b: float = 0.75,
    ) -> list[tuple[str, float]]:
        """BM25 over the postings table: (id, score), best first.

        Collection statistics (document count, average length, document frequencies)
        come from the searched namespace when there is one: a term that is rare in this
        conversation is informative here, however common it is elsewhere. ``prefixes``
        match every indexed term that starts with them (``deploy*``).
        """
        unique = sorted(set(query_terms))
        if not unique and not prefixes:
            return []
        in_scope, scope_params = "", []
        if filters.namespace is not None:
            in_scope, scope_params = "AND p.namespace = ?", [filters.namespace]
        # Only filters beyond the namespace need the memories table here; expiry is left
        # to the candidate fetch, which applies every filter to the rows anyway.
        narrowing = filters.beyond_namespace
        join, where = "", ""
        params: list[Any] = []
        if narrowing:
            conditions, params = filter_sql(filters, alias="m")
            join = "JOIN memories m ON m.id = h.memory_id"
            where = "WHERE " + " AND ".join(conditions)
        prefix_terms, prefix_params = "", []
        if prefixes:
            # Terms are stems ("deployment" is indexed as "deploy"), so a prefix also
            # matches a stem it starts with, if the stem lacks at most three letters.
            prefix_terms = (
                " UNION SELECT DISTINCT p.term FROM postings p, "
                "(SELECT unnest(?::VARCHAR[]) AS prefix) x WHERE starts_with(p.term, x.prefix)"
                " OR (starts_with(x.prefix, p.term)"
                " AND length(p.term) >= greatest(3, length(x.prefix) - 3))"
            )
            prefix_params = [list(prefixes)]
        stats_scope = "WHERE namespace = ?" if filters.namespace is not None else ""
        rows = self.con.execute(
            f"""
            WITH q AS (SELECT unnest(?::VARCHAR[]) AS term{prefix_terms}),
            hits AS (SELECT p.term, p.memory_id, p.tf, p.doc_len FROM postings p
                     WHERE p.term IN (SELECT term FROM q) {in_scope}),
            stats AS (SELECT count(*)::DOUBLE AS n, greatest(avg(doc_len), 1)::DOUBLE AS avgdl
                      FROM memories {stats_scope}),
            df AS (SELECT term, count(*)::DOUBLE AS df FROM hits GROUP BY term)
            SELECT h.memory_id,
                   sum(ln(1 + (stats.n - df.df + 0.5) / (df.df + 0.5))
                       * h.tf * ({k1} + 1)
                       / (h.tf + {k1} * (1 - {b} + {b} * h.doc_len / stats.avgdl))) AS score
            FROM hits h JOIN df USING (term) {join}, stats
            {where}
            GROUP BY h.memory_id
            ORDER BY score DESC, h.memory_id
            LIMIT ?
            """,
            [unique, *prefix_params, *scope_params, *scope_params, *params, limit],
        ).fetchall()
        return [(r[0], float(r[1])) for r in rows]

    def history(self, memory_id: str) -> list[dict[str, Any]]:
        rows = self.con.execute(
            "SELECT seq, changed_at, actor, action, changes FROM history WHERE memory_id = ? "
            "ORDER BY seq",
            [memory_id],
        ).fetchall()
        if not rows:
            raise NotFound(f"no memory with id {memory_id}")
        events = [
            {
                "seq": r[0],
                "at": r[1],
                "actor": r[2],
                "action": r[3],
                "changes": json.loads(r[4]) if r[4] is not None else None,
            }
            for r in rows
        ]
        added, deleted = events[0], events[-1]["action"] == "delete"
        if added["action"] == "add" and added["changes"] is None and not deleted:
            updates = [e["changes"] for e in events[1:] if e["action"] == "update"]
            added["changes"] = self._added_fields(self.get(memory_id), updates)
        return events

    @staticmethod
    def _added_fields(memory: Memory, updates: list[dict[str, Any]]) -> dict[str, Any]:
        """The fields ``memory`` was added with: its fields now, each changed one taken
        back to the old value of the first update that changed it. (Add events written
        before the history stopped copying them hold their fields, and are read as
        they are.)"""
        fields = {name: _jsonable(getattr(memory, name)) for name in ADD_EVENT_FIELDS}
        for change in reversed(updates):
            for name in change.keys() & fields.keys():
                fields[name] = change[name]["old"]
        return fields

    def waiting_for_embedding(
        self,
        model: str,
        limit: int,
    ) -> list[tuple[str, str, dict[str, Any]]]:
        rows = self.con.execute(
            "SELECT id, content, metadata FROM memories "
            "WHERE embedding_model IS DISTINCT FROM ? ORDER BY id LIMIT ?",
            [model, limit],
        ).fetchall()
        return [(r[0], r[1], json.loads(r[2]) if r[2] else {}) for r in rows]

    def count_waiting(self, model: str | None) -> int:
        """Memories without a vector from ``model`` (with no model: without any vector)."""
        if model is None:
            sql, params = "SELECT count(*) FROM memories WHERE embedding_model IS NULL", []
        else:
            sql = "SELECT count(*) FROM memories WHERE embedding_model IS DISTINCT FROM ?"
            params = [model]
        row = self.con.execute(sql, params).fetchone()
        return int(row[0]) if row else 0

    def embedded_vectors(
        self,
        model: str,
        ids: Sequence[str] | None = None,
    ) -> list[tuple[str, str, bytes]]:
        """(id, namespace, vector) for memories embedded by ``model`` (all, or ``ids``)."""
        if ids is None:
            sql = "SELECT id, namespace, embedding FROM memories WHERE embedding_model = ?"
        else:
            sql = _rows_by_id("id, namespace, embedding, embedding_model", ids,
                              ["embedding_model = ?"], "id, namespace, embedding")
        return [(r[0], r[1], r[2]) for r in self.con.execute(sql, [model]).fetchall()]

    def count_embedded(self, model: str) -> int:
        row = self.con.execute(
            "SELECT count(*) FROM memories WHERE embedding_model = ?", [model]
        ).fetchone()
        return int(row[0]) if row else 0

    def vector_readers(self, model: str, parts: int = 1, batch_rows: int = 8192
                       ) -> list[StoredVectors]:
        """Every memory embedded by ``model`` as ``parts`` readers of Arrow batches of
        (id, namespace, stored vector) over disjoint ranges of rows, for as many threads
        (``memoryd.search.ram_load``), each on a cursor of its own that the caller
        closes. One snapshot: their transactions begin here, on the owner thread, which
        makes every write, so none commits in between."""
        (end,) = self.con.execute(
            "SELECT coalesce(max(rowid) + 1, 0) FROM memories").fetchone() or (0,)
        where = "WHERE embedding_model = ? AND rowid >= ? AND rowid < ?"
        readers: list[StoredVectors] = []
        try:
            for n in range(parts):
                cursor = self._store_cursor()
                readers.append(StoredVectors(cursor))
                cursor.execute("BEGIN TRANSACTION")
                bounds = [model, end * n // parts, end * (n + 1) // parts]
                (rows,) = cursor.execute(  # also takes the snapshot: its first read
                    f"SELECT count(*) FROM memories {where}", bounds).fetchone() or (0,)
                readers[-1].rows = int(rows)
                readers[-1].batches = cursor.execute(
                    f"SELECT id, namespace, embedding FROM memories {where}", bounds
                ).to_arrow_reader(batch_rows)
        except BaseException:
            for reader in readers:
                reader.close()
            raise
        return readers

    def content_key_reader(self) -> Any:
        """Every stored content hash's duplicate-check key, as Arrow batches read on a
        cursor of its own (the cursor closes with the reader's last batch; see
        ``load_content_keys``)."""
        cursor = self._store_cursor()
        reader = cursor.execute(f"SELECT {KEY_SQL} FROM memories").to_arrow_reader(65_536)
        return _closing_batches(cursor, reader)

    def embedded_checksum(self, model: str) -> tuple[int, int]:
        """(count, sum of 64-bit id hashes) of the memories embedded by ``model``."""
        query = _CHECKSUM + "memories WHERE embedding_model = ?"
        count, total = self.con.execute(query, [model]).fetchone() or (0, 0)
        return int(count), int(total)

    def diff_embedded_ids(self, model: str, indexed: pa.Table) -> IndexDiff:
        """How ``indexed`` (a table with an ``id`` column: the vector index's ids) differs
        from the memories embedded by ``model``.

        The usual answer is "not at all": equal counts and equal sums of 64-bit id hashes
        say so in ~0.1 s at 1M memories (a differing set of ids matches both only by a
        hash collision; a count alone would miss one add and one delete lost together).
        Only otherwise do two anti-joins and a grouping (~0.4 s) list the differences."""
        self.con.register("indexed_ids", indexed)
        try:
            ours = self.embedded_checksum(model)
            count, total = self.con.execute(_CHECKSUM + "indexed_ids").fetchone() or (0, 0)
            if ours == (int(count), int(total)):
                return IndexDiff([], [], [], ours)
            missing = self.con.execute(
                "SELECT m.id FROM memories m ANTI JOIN indexed_ids x ON x.id = m.id "
                "WHERE m.embedding_model = ? ORDER BY m.id",
                [model],
            ).fetchall()
            extra = self.con.execute(
                "SELECT DISTINCT x.id FROM indexed_ids x ANTI JOIN "
                "(SELECT id FROM memories WHERE embedding_model = ?) m ON m.id = x.id",
                [model],
            ).fetchall()
            repeated = self.con.execute(
                "SELECT id FROM indexed_ids GROUP BY id HAVING count(*) > 1 "
                "INTERSECT SELECT id FROM memories WHERE embedding_model = ? ORDER BY id",
                [model],
            ).fetchall()
        finally:
            self.con.unregister("indexed_ids")
        return IndexDiff(
            [r[0] for r in missing], [r[0] for r in extra], [r[0] for r in repeated], ours
        )

    def stats(self) -> dict[str, Any]:
        con = self.con
        return {
            "memories": self.count(),
            "namespaces": dict(
                con.execute(
                    "SELECT namespace, count(*) FROM memories GROUP BY 1 ORDER BY 2 DESC"
                ).fetchall()
            ),
            "kinds": dict(
                con.execute(
                    "SELECT kind, count(*) FROM memories GROUP BY 1 ORDER BY 2 DESC"
                ).fetchall()
            ),
            "tags": dict(
                con.execute(
                    "SELECT tag, count(*) FROM (SELECT unnest(tags) AS tag FROM memories) "
                    "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 100"
                ).fetchall()
            ),
            "threads": self._scalar("SELECT count(DISTINCT thread) FROM memories"),
            "history_events": self._scalar("SELECT count(*) FROM history"),
        }

    def _scalar(self, sql: str) -> int:
        row = self.con.execute(sql).fetchone()
        return int(row[0]) if row else 0

    def count(self) -> int:
        return self._scalar("SELECT count(*) FROM memories")

    def checkpoint(self) -> None:
        self.con.execute("CHECKPOINT")

    @property
    def wal_path(self) -> Path:
        """DuckDB's write-ahead log, beside the database file."""
        return self.path.with_name(self.path.name + ".wal")

    def checkpoint_if_logged(self) -> bool:
        """Checkpoint if the write-ahead log holds ``IDLE_CHECKPOINT_MB`` or more, so
        that a crash later does not replay a long log at the next start. A small log is
        left to grow: every checkpoint rewrites the whole id index, which a lone add
        should not pay for. True if it checkpointed."""
        try:
            size = self.wal_path.stat().st_size
        except FileNotFoundError:
            return False
        if size < IDLE_CHECKPOINT_MB * 1e6:
            return False
        self.con.execute("CHECKPOINT")
        return True

    def settle_after_writes(self) -> bool:
        """When writes pause: the log into the file if it is long, DuckDB's cached
        blocks released, and what write batches left in Python containers folded. True
        if it checkpointed."""
        checkpointed = self.checkpoint_if_logged()
        self.release_cache()
        self.compact_ram()
        return checkpointed


def _rows_by_id(
    columns: str, ids: Sequence[str], where: Sequence[str], output: str = "*"
) -> str:
    """SQL for ``columns`` (``output`` of them) of the rows of ``ids`` that pass ``where``
    (conditions on those columns): the rows are found by the primary key first, and only
    they are filtered. With ``id IN (...) AND namespace = ?`` in one WHERE, DuckDB scanned
    the whole table instead of using the key: 38.6 ms for 10 rows at 1M memories, against
    2.2 ms this way and 1.5 ms for the ids alone (docs/performance.md)."""
    return (
        f"WITH found AS MATERIALIZED (SELECT {columns} FROM memories "
        f"WHERE id IN ({_id_list(ids)})) SELECT {output} FROM found WHERE {' AND '.join(where)}"
    )


def filter_sql(filters: SearchFilters, alias: str | None = None) -> tuple[list[str], list[Any]]:
    """SQL conditions (joined by AND) and their parameters for the common filters."""
    p = f"{alias}." if alias else ""
    where = [f"({p}expires_at IS NULL OR {p}expires_at > ?)"]
    params: list[Any] = [utcnow()]
    if filters.namespace is not None:
        where.append(f"{p}namespace = ?")
        params.append(filters.namespace)
    if filters.kind is not None:
        where.append(f"{p}kind = ?")
        params.append(filters.kind)
    if filters.thread is not None:
        where.append(f"{p}thread = ?")
        params.append(filters.thread)
    if filters.tags:
        where.append(f"list_has_all({p}tags, ?::VARCHAR[])")
        params.append(list(filters.tags))
    if filters.since is not None:
        where.append(f"{p}created_at >= ?")
        params.append(filters.since)
    if filters.until is not None:
        where.append(f"{p}created_at < ?")
        params.append(filters.until)
    for key, value in filters.metadata.items():
        # The JSON path is a parameter, never spliced: keys may hold any character.
        path = "$." + json.dumps(key)
        if value is None:
            where.append(f"json_type({p}metadata, ?) = 'NULL'")
            params.append(path)
        else:
            where.append(f"json_extract({p}metadata, ?) = ?::JSON")
            params += [path, json.dumps(value)]
    return where, params


def build_ram_index(cursor: duckdb.DuckDBPyConnection, rows_max_bytes: int = 0) -> RamIndex:
    """Build the RAM index from the snapshot ``begin_ram_index`` opened on ``cursor``:
    safe on any thread but the owner's. Closes the cursor. The hits' fields are copied
    too if they would take at most ``rows_max_bytes``."""
    try:
        index = InvertedIndex()
        copy_rows = rows_max_bytes > 0 and _hit_fields_bytes(cursor) <= rows_max_bytes
        hit_columns = f", {HIT_COLUMNS}" if copy_rows else ""
        documents = cursor.execute(
            "SELECT rowid, id, namespace, doc_len, created_at, importance, expires_at, kind, "
            "array_to_string(list_sort(list_distinct(tags)), ',') AS tag_set, "
            f"thread, position AS thread_position{hit_columns} "
            "FROM memories"  # tags hold no commas (validate.TAG_RE)
        ).to_arrow_table()
        # Postings name their document by row id (a join in DuckDB): the build took 18 s
        # at 1M memories when each 65k-row batch matched its ids against all 1M ids
        # (pc.index_in), 3-4 s this way.
        rowids = documents.column("rowid").to_numpy()
        ordinal = np.full(int(rowids.max()) + 1 if len(rowids) else 0, -1, dtype=np.int32)
        ordinal[rowids] = np.arange(len(rowids), dtype=np.int32)
        id_list = documents.column("id").to_pylist()
        index.load_documents(
            id_list,
            documents.column("namespace").to_pylist(),
            documents.column("doc_len").to_numpy(zero_copy_only=False),
        )
        facts = RankFacts(index)
        facts.load(
            _micros(documents.column("created_at"), 0),
            documents.column("importance").to_numpy(zero_copy_only=False),
            _micros(documents.column("expires_at"), NEVER),
            _coded(documents.column("kind")),
            _coded(documents.column("tag_set"), lambda key: tuple(key.split(",")) if key else ()),
            _coded(documents.column("thread")),
            pc.fill_null(documents.column("thread_position"), NO_POSITION).to_numpy(),
        )
        rows = HitRows(index, facts.fields, rows_max_bytes if copy_rows else 0)
        if copy_rows:
            rows.load(documents.select(list(HIT_FIELDS)))
        del documents
        postings = cursor.execute(
            "SELECT p.term, m.rowid, p.tf FROM postings p JOIN memories m ON m.id = p.memory_id"
        ).to_arrow_reader(65_536)
        for batch in postings:
            terms = pc.dictionary_encode(batch.column(0))
            index.load_postings(
                terms.dictionary.to_pylist(),
                terms.indices.to_numpy(zero_copy_only=False),
                ordinal[batch.column(1).to_numpy()],
                batch.column(2).to_numpy(zero_copy_only=False),
            )
        index.finish_load()
        return RamIndex(index, facts, rows)
    finally:
        cursor.close()


def _hit_fields_bytes(cursor: duckdb.DuckDBPyConnection) -> int:
    """About how many bytes the RAM copy of every memory's hit fields would take: their
    text, and ~70 bytes a memory of offsets, numbers and times."""
    row = cursor.execute(
        "SELECT count(*) * 70 + coalesce(sum(strlen(content) + strlen(metadata::VARCHAR) + "
        "coalesce(strlen(source), 0) + coalesce(strlen(array_to_string(tags, ',')), 0)), 0) "
        "FROM memories"
    ).fetchone()
    return int(row[0]) if row else 0


def _coded(column: pa.ChunkedArray, value: Callable[[str], Any] = str) -> Coded:
    """A string column as a code per row (-1 for null) and the ``value`` of each code."""
    encoded = pc.dictionary_encode(column.combine_chunks())
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int32)
    return Coded(codes, [value(v) for v in encoded.dictionary.to_pylist()])


def _micros(column: pa.ChunkedArray, missing: int) -> np.ndarray:
    """A timestamp column as microseconds since the epoch, ``missing`` for nulls."""
    as_int = pc.fill_null(column.cast(pa.timestamp("us")).cast(pa.int64()), missing)
    return as_int.to_numpy()


@dataclass
class StoredVectors:
    """One reader of ``Database.vector_readers``: its rows' count and Arrow batches."""

    cursor: duckdb.DuckDBPyConnection
    rows: int = 0
    batches: Any = None  # a pyarrow RecordBatchReader

    def close(self) -> None:
        self.cursor.close()


def _closing_batches(cursor: duckdb.DuckDBPyConnection, reader: Any) -> Iterator[Any]:
    try:
        yield from reader
    finally:
        cursor.close()


def load_content_keys(batches: Iterator[Any]) -> np.ndarray:
    """The duplicate-check keys of every stored hash: safe on any thread but the owner's."""
    parts = [batch.column(0).to_numpy() for batch in batches]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)


def _lexical_in_ram(
    ram: RamIndex,
    query_terms: Sequence[str],
    filters: SearchFilters,
    limit: int,
    prefixes: Sequence[str],
) -> list[tuple[str, float]]:
    """BM25 (id, score), best first, over the RAM postings, within the rank facts' mask
    of the filters other than the namespace (which the postings apply)."""
    allowed = None
    if filters.beyond_namespace:
        allowed = ram.facts.mask(filters, utcnow())
    return ram.postings.search(query_terms, prefixes, filters.namespace, limit, allowed=allowed)


def _passing(
    ram: RamIndex, found: dict[str, Memory], filters: SearchFilters, ranked: bool = False
) -> dict[str, tuple[Memory, bytes | None]]:
    """The memories of ``found`` whose RAM rank facts pass ``filters`` (taken as read
    when ``ranked``: ``Database.rows_now``) and that are in their namespace, each with no
    vector (``get_many`` without vectors)."""
    passing = found if ranked else ram.facts.lookup(list(found), utcnow(), filters)
    namespace = filters.namespace
    return {
        i: (m, None)
        for i, m in found.items()
        if i in passing and (namespace is None or m.namespace == namespace)
    }


def _id_list(ids: Sequence[str]) -> str:
    """A literal SQL list of memory ids. DuckDB plans ``id IN ('a', 'b')`` far better than
    a parameter list (3.8 ms against 12 ms for 100 ids at 10k memories), so the ids are
    spliced, after checking each is a canonical UUID and so cannot carry SQL."""
    for memory_id in ids:
        if not is_canonical_id(memory_id):
            raise ValueError("not a canonical memory id")
    return ", ".join(f"'{memory_id}'" for memory_id in ids)


def _hit_fields(inserted: pa.Table) -> pa.Table:
    """The RAM copy's fields (``HIT_FIELDS``) of rows ``_insert_rows`` inserted, as the
    table holds them: a new memory was never accessed."""
    n = inserted.num_rows
    extra = {
        "accessed_at": pa.nulls(n, pa.timestamp("us")),
        "access_count": pa.array(np.zeros(n, dtype=np.int64)),
        "embedded": pc.is_valid(inserted.column("embedding_model")),
    }
    return pa.table(
        {name: extra[name] if name in extra else inserted.column(name) for name in HIT_FIELDS}
    )


def _memory(row: Sequence[Any]) -> Memory:
    """A memory from a row of ``MEMORY_COLUMNS``."""
    fields = dict(zip(_MEMORY_FIELDS[1:-1], row[1:-1], strict=True))
    fields["embedded"] = row[-1] is not None  # embedding_model
    return Memory.from_stored(row[0], fields)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        from memoryd.model import format_time

        return format_time(value)
    return value
