"""A collection's pgvector index (``--index pgvector``), consistent with the database.

The vectors are rows of ``face_vectors``, written in the same transaction as their faces
(:meth:`PgVectorCollectionIndex.stage`) and deleted with them by the foreign key's
``ON DELETE CASCADE``: an erasure is effective in the index, on every replica, when its
transaction commits, and no process holds a copy. Faces written by a process that does not
use pgvector (another ``--index``, an older version) are caught up from the change log
before each search, as the FAISS index does; a collection seen for the first time is
checked whole. Searches take ``RERANK_POOL`` candidates from the HNSW graph and rank them
by exact similarity to the stored float32 embeddings, in the same snapshot.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
from sqlalchemy import Connection, Engine, func, select, text, update
from sqlalchemy.exc import DBAPIError

from faceledger.errors import StoreError
from faceledger.index.base import SearchResult, check_k
from faceledger.index.pgvector import PgVectorIndex, check_pgvector, write_vectors
from faceledger.index.rerank import RERANK_POOL, rerank
from faceledger.store.db import greatest, read_transaction, write_transaction
from faceledger.store.schema import collections, face_vectors, faces, vector_changes
from faceledger.store.vectors import SAVE_EVERY, SHARED_PRUNE_LAG, stored_vectors

log = logging.getLogger(__name__)
BACKFILL_BATCH = 5_000


def ensure_table(conn: Connection) -> bool:
    """Install pgvector (if the server has it and this role may) and create
    ``face_vectors``; False when pgvector cannot be had here (nothing changed)."""
    if conn.dialect.name != "postgresql":
        return False
    if conn.scalar(text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")) is None:
        if conn.scalar(text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")) is None:
            return False
        try:
            with conn.begin_nested():
                conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        except DBAPIError as exc:  # typically: permission denied (not a superuser)
            log.warning("cannot create the vector extension: %s", exc.orig)
            return False
    face_vectors.create(conn, checkfirst=True)
    return True


def open_pgvector(engine: Engine) -> None:
    """Make a store ready for pgvector: install the extension if the server has it and the
    role may, create the table if missing; or :class:`StoreError` saying what is missing."""
    try:
        with write_transaction(engine) as conn:
            ensure_table(conn)
            check_pgvector(conn)  # the clear error: not PostgreSQL, or no extension
    except DBAPIError as exc:  # e.g. no right to create the table
        raise StoreError(f"cannot prepare the pgvector table: {exc.orig}") from exc


class PgVectorCollectionIndex:
    """The pgvector index of one collection: the same methods as ``CollectionIndex``."""

    def __init__(
        self, engine: Engine, collection_id: int, dim: int, *, save_every: int = SAVE_EVERY
    ) -> None:
        self._engine = engine
        self.collection_id = collection_id
        self.dim = dim
        self._index = PgVectorIndex(engine, face_vectors, collection_id, dim)
        self._lock = threading.Lock()
        self.watermark = 0
        self._unsaved = 0
        self._save_every = save_every
        self._catch_up(whole=True)  # before the graph exists: a first build is a bulk build
        self._index.create_graph()

    @property
    def index(self) -> PgVectorIndex:
        return self._index

    @staticmethod
    def stage(conn: Connection, collection_id: int, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Write new faces' vectors in the transaction that stores the faces."""
        write_vectors(conn, face_vectors.name, collection_id, ids.astype(np.int64), vectors)

    # -- catching up -------------------------------------------------------------------
    def _missing(self, conn: Connection, whole: bool) -> tuple[list[int], int]:
        """Faces of the collection without a vector (all, or those logged since the
        watermark) and the change log's last sequence number, in ``conn``'s snapshot."""
        last = int(conn.scalar(select(func.coalesce(func.max(vector_changes.c.seq), 0))) or 0)
        lacking = (
            ~select(face_vectors.c.face_id).where(face_vectors.c.face_id == faces.c.id).exists()
        )
        query = select(faces.c.id).where(faces.c.collection_id == self.collection_id, lacking)
        if not whole:
            pruned = conn.scalar(
                select(collections.c.vectors_pruned_through).where(
                    collections.c.id == self.collection_id
                )
            )
            if pruned is not None and pruned > self.watermark:
                return self._missing(conn, True)  # changes we never saw were pruned
            logged = select(vector_changes.c.face_id).where(
                vector_changes.c.collection_id == self.collection_id,
                vector_changes.c.seq > self.watermark,
                vector_changes.c.op == "a",
            )
            query = query.where(faces.c.id.in_(logged))
        return [int(i) for i in conn.scalars(query)], last

    def _catch_up(self, *, whole: bool = False) -> None:
        with self._lock:
            with read_transaction(self._engine) as conn:
                missing, last = self._missing(conn, whole)
            if missing:
                self._backfill(missing)
            self.watermark = max(self.watermark, last)

    def _backfill(self, ids: list[int]) -> None:
        """Write the vectors of faces stored without one (under the write lock, so none is
        erased meanwhile; a face gone by then is skipped). O(n) rows read and inserted."""
        log.info(
            "pgvector: %d face(s) of collection %s get their vectors", len(ids), self.collection_id
        )
        for a in range(0, len(ids), BACKFILL_BATCH):
            with write_transaction(self._engine) as conn:
                rows = conn.execute(
                    select(faces.c.id, faces.c.embedding).where(
                        faces.c.id.in_(ids[a : a + BACKFILL_BATCH])
                    )
                ).all()
                if rows:
                    found = np.array([r[0] for r in rows], dtype=np.int64)
                    vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
                    self.stage(conn, self.collection_id, found, vectors.reshape(-1, self.dim))

    # -- the CollectionIndex surface ---------------------------------------------------
    def sync(self) -> None:
        """Write vectors for faces other processes stored without one (usually none)."""
        self._catch_up()

    def apply(
        self, added_ids: np.ndarray, added: np.ndarray, removed_ids: np.ndarray, seq: int
    ) -> None:
        """After this process's commit: nothing to change (the rows were written, or
        deleted, in that transaction); counts changes towards pruning the change log."""
        with self._lock:
            if seq > self.watermark and seq - len(added_ids) - len(removed_ids) == self.watermark:
                self.watermark = seq
            self._unsaved += len(added_ids) + len(removed_ids)
        if self._unsaved >= self._save_every:
            self.save()

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        """Top-``k`` faces per query: ``max(k, RERANK_POOL)`` candidates from the graph,
        ranked by exact similarity to the stored float32 embeddings (one snapshot)."""
        k = check_k(k)
        self._catch_up()
        with read_transaction(self._engine) as conn:
            found = self._index.search_in(conn, queries, max(k, RERANK_POOL))
            return rerank(
                queries,
                found,
                lambda ids: stored_vectors(conn, self.collection_id, self.dim, ids),
                k,
            )

    def __len__(self) -> int:
        return len(self._index)

    def save(self) -> None:
        """Nothing to write; prunes the change log this index has caught up with, keeping
        ``SHARED_PRUNE_LAG`` changes for replicas that replay it into FAISS."""
        with self._lock:
            if self._unsaved == 0:
                return
            self._unsaved = 0
            through = max(0, self.watermark - SHARED_PRUNE_LAG)
        if through == 0:
            return
        with write_transaction(self._engine) as conn:
            conn.execute(
                vector_changes.delete().where(
                    vector_changes.c.collection_id == self.collection_id,
                    vector_changes.c.seq <= through,
                )
            )
            conn.execute(
                update(collections)
                .where(collections.c.id == self.collection_id)
                .values(
                    vectors_pruned_through=greatest(collections.c.vectors_pruned_through, through)
                )
            )

    def drop_files(self) -> None:
        """The collection is gone: drop its graph (its rows went with its faces)."""
        self._index.drop_graph()
