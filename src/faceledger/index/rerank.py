"""Exact re-ranking of an approximate index's candidates against the stored vectors.

An approximate index scores with compressed codes (8-bit in HNSW): its order among
candidates whose similarities lie within a few thousandths of each other, as the many
near-threshold impostors of a large gallery do, is partly noise. Taking a wider pool of
candidates from the graph and scoring those exactly, against the float32 embeddings the
store keeps on disk anyway, restores the exact order without holding full vectors in
memory.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from faceledger.index.base import IdArray, SearchResult, VectorArray

VectorSource = Callable[[IdArray], VectorArray]
"""Returns the stored vectors ``(n, d)`` float32 of sorted distinct ids ``(n,)``, in that
order, with a row of NaN for an id it no longer holds."""

RERANK_POOL = 32
"""Candidates taken from an approximate index per query before exact re-ranking."""


def rerank(
    queries: VectorArray, candidates: SearchResult, vectors: VectorSource, k: int
) -> SearchResult:
    """The best ``k`` of each query's ``candidates`` by exact inner product, best first.

    Candidates whose vector the source no longer has (deleted since the search) drop out;
    empty slots keep id ``-1`` and score ``-inf``.
    """
    ids = candidates.ids
    q = ids.shape[0]
    unique = np.unique(ids[ids >= 0])
    out_ids = np.full((q, k), -1, dtype=np.int64)
    out_scores = np.full((q, k), -np.inf, dtype=np.float32)
    if unique.size == 0:
        return SearchResult(ids=out_ids, scores=out_scores)
    table = vectors(unique)
    if table.shape[0] != unique.size:
        raise ValueError(f"vector source returned {table.shape[0]} rows for {unique.size} ids")
    slot = np.searchsorted(unique, np.maximum(ids, 0))
    rows = table[slot]  # (q, pool, d)
    scores = np.einsum("qd,qpd->qp", queries, rows, dtype=np.float32)
    valid = (ids >= 0) & np.isfinite(rows[:, :, 0])
    scores = np.where(valid, scores, -np.inf).astype(np.float32)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    width = order.shape[1]
    taken = np.take_along_axis(scores, order, axis=1)
    out_scores[:, :width] = taken
    out_ids[:, :width] = np.where(np.isfinite(taken), np.take_along_axis(ids, order, axis=1), -1)
    return SearchResult(ids=out_ids, scores=out_scores)
