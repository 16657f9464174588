"""The registry of index kinds: make a new index of a kind, or load one from its file.

Implementations are imported on first use, so that ``import faceledger.index`` does not
load FAISS; they never import this module (the package's modules import one way:
``base`` and ``fileformat`` <- ``idmap`` <- ``exact``, ``hnsw`` <- ``auto`` <- ``registry``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from faceledger.errors import InvalidArgument, StoreError
from faceledger.index.base import VectorIndex, check_dim
from faceledger.index.fileformat import peek_header

KINDS = ("exact", "hnsw", "auto")


def make_index(kind: str, dim: int, **opts: Any) -> VectorIndex:
    """A new empty index of ``kind`` ("exact", "hnsw" or "auto").

    ``opts`` go to the implementation: ExactIndex(dtype=), HnswIndex(storage=, m=,
    ef_construction=, ef_search=), AutoIndex(threshold=, dtype=, storage=, ...).
    Unknown kinds or options raise :class:`InvalidArgument`.
    """
    dim = check_dim(dim)
    if kind == "exact":
        from faceledger.index.exact import ExactIndex as cls
    elif kind == "hnsw":
        from faceledger.index.hnsw import HnswIndex as cls  # type: ignore[assignment]
    elif kind == "auto":
        from faceledger.index.auto import AutoIndex as cls  # type: ignore[assignment]
    else:
        raise InvalidArgument(f"unknown index kind {kind!r}", choices=list(KINDS))
    try:
        return cls(dim, **opts)
    except TypeError as exc:
        raise InvalidArgument(f"bad options for a {kind} index: {exc}") from exc


def load_index(path: Path | str, *, mmap: bool = False) -> VectorIndex:
    """Open an index written by ``save``; the kind comes from the file's header.

    ``mmap`` maps an exact index's arrays instead of reading them (copied on first change);
    the HNSW graph is always read into memory. Cost: O(file size) read plus an
    O(n log n) sort of the ids.
    """
    kind = peek_header(path).get("kind")
    if kind == "exact":
        from faceledger.index.exact import ExactIndex

        return ExactIndex.load(path, mmap=mmap)
    if kind == "hnsw":
        from faceledger.index.hnsw import HnswIndex

        return HnswIndex.load(path)
    if kind == "auto":
        from faceledger.index.auto import AutoIndex

        return AutoIndex.load(path, mmap=mmap)
    raise StoreError(f"{path}: unknown index kind {kind!r}")
