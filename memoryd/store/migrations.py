"""Schema migrations: named, ordered functions applied at start and recorded.

Each runs in its own transaction and is followed by a CHECKPOINT: DuckDB 1.4-1.5.5 can fail
to replay a WAL in which DDL and data writes interleave (duckdb/duckdb#25928), so no DDL is
ever left in the WAL behind later writes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from memoryd.search.vector_blob import vector_blob

Migration = tuple[str, Callable[[Any], None]]


# The memories table's columns, as 0001 created it and 0003 wrote it anew.
MEMORIES_COLUMNS = """(
    id VARCHAR PRIMARY KEY,
    content VARCHAR NOT NULL,
    content_hash VARCHAR NOT NULL,
    namespace VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    tags VARCHAR[] NOT NULL,
    metadata JSON NOT NULL,
    importance DOUBLE NOT NULL,
    source VARCHAR,
    thread VARCHAR,
    position BIGINT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    accessed_at TIMESTAMP,
    access_count BIGINT NOT NULL,
    expires_at TIMESTAMP,
    doc_len INTEGER NOT NULL,
    embedding BLOB USING COMPRESSION uncompressed,
    embedding_model VARCHAR
)"""


def m0001_initial(con: Any) -> None:
    # The vectors are stored uncompressed. A real model's vectors do not compress, and
    # DuckDB stores them so anyway; vectors that do (sparse ones, like the ``hash``
    # embedder's) got FSST, which must be decoded whole even for a few rows: selecting
    # 10,000 of 1M memories' vectors by a tag took 168 ms instead of 54.
    con.execute(
        f"""
        CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
        CREATE TABLE memories {MEMORIES_COLUMNS};
        CREATE TABLE postings (
            term VARCHAR NOT NULL,
            memory_id VARCHAR NOT NULL,
            tf INTEGER NOT NULL
        );
        CREATE SEQUENCE history_seq START 1;
        CREATE TABLE history (
            seq BIGINT NOT NULL DEFAULT nextval('history_seq'),
            memory_id VARCHAR NOT NULL,
            changed_at TIMESTAMP NOT NULL,
            actor VARCHAR,
            action VARCHAR NOT NULL,
            changes JSON
        );
        """
    )


def m0002_postings_scope(con: Any) -> None:
    """Postings carry their memory's namespace and document length, so BM25 needs no
    join with the memories table for the common searches (20 -> 5 ms at 100k)."""
    con.execute(
        """
        CREATE TABLE postings_scoped AS
            SELECT p.term, p.memory_id, p.tf, m.namespace, m.doc_len
            FROM postings p JOIN memories m ON m.id = p.memory_id;
        DROP TABLE postings;
        ALTER TABLE postings_scoped RENAME TO postings;
        """
    )


def m0003_float16_vectors(con: Any) -> None:
    """Stored vectors become float16, as the daemon now writes them
    (``memoryd.search.vector_blob``). The table is written anew with the converted column,
    as 0002 did for the postings; its columns, key and the vectors' storage are as
    0001 made them."""
    con.create_function(
        "memoryd_float16", _float16_blobs, ["BLOB"], "BLOB", type="arrow", side_effects=False
    )
    try:
        con.execute(
            f"""
            CREATE TABLE memories_float16 {MEMORIES_COLUMNS};
            INSERT INTO memories_float16
                SELECT id, content, content_hash, namespace, kind, tags, metadata, importance,
                    source, thread, position, created_at, updated_at, accessed_at,
                    access_count, expires_at, doc_len, memoryd_float16(embedding),
                    embedding_model
                FROM memories ORDER BY rowid;
            DROP TABLE memories;
            ALTER TABLE memories_float16 RENAME TO memories;
            """
        )
    finally:
        con.remove_function("memoryd_float16")


def _float16_blobs(blobs: pa.Array) -> pa.Array:
    """float32 vectors (bytes) as float16 ones; NULL stays NULL."""
    return pa.array(
        [
            None if blob is None else vector_blob(np.frombuffer(blob, "<f4"))
            for blob in blobs.to_pylist()
        ],
        pa.binary(),
    )


MIGRATIONS: list[Migration] = [
    ("0001_initial", m0001_initial),
    ("0002_postings_scope", m0002_postings_scope),
    ("0003_float16_vectors", m0003_float16_vectors),
]
