"""Schema migrations: named, ordered functions applied at start and recorded.

Each runs in its own transaction and is followed by a CHECKPOINT: DuckDB 1.4-1.5.5 can fail
to replay a WAL in which DDL and data writes interleave (duckdb/duckdb#25928), so no DDL is
ever left in the WAL behind later writes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Migration = tuple[str, Callable[[Any], None]]


def m0001_initial(con: Any) -> None:
    # The vectors are stored uncompressed. A real model's vectors do not compress, and
    # DuckDB stores them so anyway; vectors that do (sparse ones, like the ``hash``
    # embedder's) got FSST, which must be decoded whole even for a few rows: selecting
    # 10,000 of 1M memories' vectors by a tag took 168 ms instead of 54.
    con.execute(
        """
        CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
        CREATE TABLE memories (
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
        );
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


MIGRATIONS: list[Migration] = [
    ("0001_initial", m0001_initial),
    ("0002_postings_scope", m0002_postings_scope),
]
