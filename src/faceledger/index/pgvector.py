"""A vector index inside PostgreSQL: pgvector's HNSW over half-precision vectors.

The vectors of all collections live in one table (``face_id``, ``collection_id``,
``embedding halfvec``; the store defines it as ``face_vectors``). Each collection has its
own partial HNSW index on the expression ``embedding::halfvec(dim)`` (pgvector's documented
way to index vectors of several dimensions in one column), so a collection's search walks
only its own graph. Scores come from 16-bit vectors and a graph walk: the index is
approximate, and the store re-ranks its candidates exactly against the float32 embeddings
(:mod:`faceledger.index.rerank`), as it does for FAISS.

Nothing is held in this process: rows and graph are the database's, durable at each
commit, shared by every replica, and a deleted row leaves the index with it (no
tombstones). Cost per search: one SQL round trip per query; per insertion, the HNSW
insertion on the server (measured in ``benchmarks/search.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import psycopg
from pgvector import HalfVector
from pgvector.psycopg.halfvec import HalfVectorBinaryDumper
from sqlalchemy import Connection, Engine, Table, text

from faceledger.errors import InvalidArgument, StoreError
from faceledger.index.base import (
    IdArray,
    SearchResult,
    VectorArray,
    as_key,
    check_dim,
    check_ids,
    check_k,
    check_vectors,
    empty_result,
)

DEFAULT_M = 16
DEFAULT_EF_CONSTRUCTION = 64
DEFAULT_EF_SEARCH = 200
"""pgvector's defaults for the graph (m 16, ef_construction 64). ef_search (pgvector: 40)
must be at least the store's 32 candidates; at 100k synthetic faces mate recall after
re-ranking was 0.950 at 40, 0.982 at 100 and 0.996 at 200 (p50 15, 19 and 30 ms on two
loaded cores; ``benchmarks/search.py --kinds hnsw pgvector --ef 40 200``)."""
MAX_HALFVEC_DIM = 4000
"""The most dimensions pgvector indexes with HNSW for ``halfvec``."""
WRITE_BATCH = 1000


class _HalfvecParameter(HalfVectorBinaryDumper):
    """Sends a :class:`HalfVector` in pgvector's binary form as a parameter of unknown type,
    which the ``%b::halfvec`` cast in the SQL types: no per-database type lookup (the
    extension's type ids differ between databases). 0.02 ms per 512-d row, against 0.7 ms
    to format the text form ``[v1,...]`` (measured on this machine)."""

    oid = 0


# Registered on psycopg's process-wide adapters at import, so that every connection made
# afterwards has it (a connection copies them when it opens); it adapts pgvector's own
# class only, and registering again is harmless.
psycopg.adapters.register_dumper(HalfVector, _HalfvecParameter)


def half(vector: VectorArray) -> HalfVector:
    """One ``(d,)`` float32 vector as a halfvec parameter (rounded to float16)."""
    return HalfVector(vector)


def check_pgvector(conn: Connection) -> None:
    """Raise :class:`StoreError` unless ``conn`` is PostgreSQL with the ``vector`` extension."""
    if conn.dialect.name != "postgresql":
        raise StoreError(
            "the pgvector index needs a PostgreSQL store "
            "(FACELEDGER_DB_URL=postgresql+psycopg://...); this store is "
            f"{conn.dialect.name}"
        )
    installed = conn.scalar(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'"))
    if installed is None:
        raise StoreError(
            "the pgvector index needs the 'vector' extension in this database: "
            "run CREATE EXTENSION vector as a superuser, then start faceledger again"
        )


def write_vectors(
    conn: Connection, table: str, collection_id: int, ids: IdArray, vectors: VectorArray
) -> None:
    """Insert (or replace) ``vectors`` under ``ids`` in ``conn``'s transaction.

    ``ids`` int64 ``(n,)``, ``vectors`` ``(n, d)`` float32 L2-normalised (stored as halfvec).
    """
    if ids.shape[0] == 0:
        return
    sql = (
        f"INSERT INTO {table} (face_id, collection_id, embedding) "
        "VALUES (%s, %s, %b::halfvec) "
        "ON CONFLICT (face_id) DO UPDATE SET embedding = EXCLUDED.embedding"
    )
    cid = int(collection_id)
    for a in range(0, ids.shape[0], WRITE_BATCH):
        rows = [
            (int(i), cid, half(v))
            for i, v in zip(ids[a : a + WRITE_BATCH], vectors[a : a + WRITE_BATCH], strict=True)
        ]
        conn.exec_driver_sql(sql, rows)


class PgVectorIndex:
    """One collection's vectors in a pgvector table, searched through its HNSW index.

    ``table`` has columns ``face_id`` (primary key), ``collection_id`` and ``embedding``
    (halfvec); the graph is created on first use (``m``, ``ef_construction``: pgvector's
    build settings; ``ef_search``: candidates kept during a walk).
    """

    def __init__(
        self,
        engine: Engine,
        table: Table,
        collection_id: int,
        dim: int,
        *,
        m: int = DEFAULT_M,
        ef_construction: int = DEFAULT_EF_CONSTRUCTION,
        ef_search: int = DEFAULT_EF_SEARCH,
    ) -> None:
        self._dim = check_dim(dim)
        if self._dim > MAX_HALFVEC_DIM:
            raise InvalidArgument(f"pgvector indexes at most {MAX_HALFVEC_DIM} dimensions")
        for name, value, low in (("m", m, 2), ("ef_construction", ef_construction, 4)):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 1000:
                raise InvalidArgument(f"{name} must be an int in {low}..1000", got=repr(value))
        self._engine = engine
        self._table = table.name
        self.collection_id = int(collection_id)
        self._m, self._ef_construction = m, ef_construction
        self.ef_search = ef_search
        self.index_name = f"{self._table}_hnsw_{self.collection_id}"
        self._expr = f"(embedding::halfvec({self._dim}))"
        with engine.connect() as conn:
            check_pgvector(conn)

    # -- the graph -----------------------------------------------------------------------
    def create_graph(self) -> None:
        """Create the collection's HNSW index if it is missing (builds from the rows
        present: O(n log n) on the server; replicas starting together build it once)."""
        with self._engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": self.index_name})
            conn.exec_driver_sql(
                f"CREATE INDEX IF NOT EXISTS {self.index_name} ON {self._table} "
                f"USING hnsw ({self._expr} halfvec_ip_ops) "
                f"WITH (m = {self._m}, ef_construction = {self._ef_construction}) "
                f"WHERE collection_id = {self.collection_id}"
            )

    def drop_graph(self) -> None:
        """Drop the collection's HNSW index (its rows go with their faces)."""
        with self._engine.begin() as conn:
            conn.exec_driver_sql(f"DROP INDEX IF EXISTS {self.index_name}")

    def disk_bytes(self) -> dict[str, int]:
        """Bytes on disk: the collection's graph, and the whole table (all collections)."""
        with self._engine.connect() as conn:
            graph = conn.scalar(
                text("SELECT coalesce(pg_relation_size(to_regclass(:n)), 0)"),
                {"n": self.index_name},
            )
            table = conn.scalar(text("SELECT pg_total_relation_size(:t)"), {"t": self._table})
        return {"graph": int(graph or 0), "table": int(table or 0)}

    # -- the VectorIndex interface ---------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def approximate(self) -> bool:
        return True

    def __len__(self) -> int:
        with self._engine.connect() as conn:
            return int(
                conn.exec_driver_sql(
                    f"SELECT count(*) FROM {self._table} WHERE collection_id = %s",
                    (self.collection_id,),
                ).scalar_one()
            )

    def __contains__(self, key: object) -> bool:
        k = as_key(key)
        if k is None:
            return False
        with self._engine.connect() as conn:
            row = conn.exec_driver_sql(
                f"SELECT 1 FROM {self._table} WHERE face_id = %s AND collection_id = %s",
                (k, self.collection_id),
            ).first()
        return row is not None

    def ids(self) -> IdArray:
        with self._engine.connect() as conn:
            rows = conn.exec_driver_sql(
                f"SELECT face_id FROM {self._table} WHERE collection_id = %s",
                (self.collection_id,),
            ).all()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def add(self, ids: IdArray, vectors: VectorArray) -> None:
        """Add (or replace) in one transaction; the graph takes each row as it is inserted."""
        vectors = check_vectors(vectors, self._dim)
        ids = check_ids(ids, vectors.shape[0])
        with self._engine.begin() as conn:
            write_vectors(conn, self._table, self.collection_id, ids, vectors)

    def remove(self, ids: IdArray) -> int:
        """Delete the rows of ``ids``; pgvector drops them from the graph at vacuum and
        never returns a deleted row meanwhile."""
        ids = check_ids(ids, unique=False)
        if ids.shape[0] == 0:
            return 0
        with self._engine.begin() as conn:
            result = conn.exec_driver_sql(
                f"DELETE FROM {self._table} WHERE collection_id = %s AND face_id = ANY(%s)",
                (self.collection_id, [int(i) for i in np.unique(ids)]),
            )
            return int(result.rowcount)

    def search(self, queries: VectorArray, k: int) -> SearchResult:
        """The ``k`` best rows per query by the graph's half-precision inner product."""
        with self._engine.connect() as conn, conn.begin():
            return self.search_in(conn, queries, k)

    def search_in(self, conn: Connection, queries: VectorArray, k: int) -> SearchResult:
        """As :meth:`search`, in ``conn``'s transaction (one round trip per query)."""
        queries = check_vectors(queries, self._dim, "queries")
        k = check_k(k)
        out = empty_result(queries.shape[0], k)
        conn.exec_driver_sql(f"SET LOCAL hnsw.ef_search = {max(int(self.ef_search), k)}")
        sql = (
            f"SELECT face_id, {self._expr} <#> %b::halfvec({self._dim}) AS d "
            f"FROM {self._table} WHERE collection_id = {self.collection_id} "
            f"ORDER BY d LIMIT {k}"
        )
        for i, query in enumerate(queries):
            rows = conn.exec_driver_sql(sql, (half(query),)).all()
            if rows:
                out.ids[i, : len(rows)] = [r[0] for r in rows]
                out.scores[i, : len(rows)] = [-r[1] for r in rows]  # <#> is minus the product
        return out

    def save(self, path: Path) -> None:
        """Nothing to write: the index is the database's, durable at each commit."""
