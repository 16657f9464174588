"""Vector indexes: exact (NumPy/BLAS), HNSW (FAISS) and auto (exact while small, then HNSW).

Use :func:`make_index` / :func:`load_index`; every index satisfies :class:`VectorIndex`.
The implementation classes are imported lazily so that ``import faceledger.index`` does not
load FAISS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from faceledger.index.base import IdArray, SearchResult, VectorArray, VectorIndex
from faceledger.index.registry import KINDS, load_index, make_index

if TYPE_CHECKING:
    from faceledger.index.auto import AutoIndex
    from faceledger.index.exact import ExactIndex
    from faceledger.index.hnsw import HnswIndex

__all__ = [
    "KINDS",
    "AutoIndex",
    "ExactIndex",
    "HnswIndex",
    "IdArray",
    "SearchResult",
    "VectorArray",
    "VectorIndex",
    "load_index",
    "make_index",
]

_LAZY = {
    "ExactIndex": "faceledger.index.exact",
    "HnswIndex": "faceledger.index.hnsw",
    "AutoIndex": "faceledger.index.auto",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'faceledger.index' has no attribute {name!r}")
