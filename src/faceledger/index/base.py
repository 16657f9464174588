"""The vector index interface (add, remove, search, save, load, length, membership) and the
checks every implementation applies at its boundary.

Vectors are ``(n, d)`` C-contiguous float32, L2-normalised; similarity is the inner product
(cosine). Ids are non-negative int64 face ids chosen by the store, unique within one index
(``-1`` marks an empty result slot). Implementations reject anything else with
``InvalidArgument``; see ``faceledger.index.make_index`` / ``load_index``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from faceledger.errors import InvalidArgument

IdArray = npt.NDArray[np.int64]
VectorArray = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class SearchResult:
    """Top-k neighbours of each query, best first.

    ``ids`` is ``(q, k)`` int64 and ``scores`` ``(q, k)`` float32 cosine similarities.
    Slots beyond the number of stored vectors hold id ``-1`` and score ``-inf``.
    """

    ids: IdArray
    scores: npt.NDArray[np.float32]


@runtime_checkable
class VectorIndex(Protocol):
    """A searchable set of vectors keyed by int64 ids."""

    @property
    def dim(self) -> int: ...

    @property
    def approximate(self) -> bool:
        """True when scores come from compressed codes or a graph walk, so exact
        re-ranking of a wider candidate pool can change the result."""
        ...

    def __len__(self) -> int: ...

    def __contains__(self, key: int) -> bool: ...

    def add(self, ids: IdArray, vectors: VectorArray) -> None:
        """Add vectors under new ids (an existing id is replaced)."""
        ...

    def remove(self, ids: IdArray) -> int:
        """Remove ids that are present; returns how many were removed."""
        ...

    def search(self, queries: VectorArray, k: int) -> SearchResult:
        """The ``k`` most similar stored vectors for each query."""
        ...

    def ids(self) -> IdArray:
        """All stored ids (any order)."""
        ...

    def save(self, path: Path) -> None:
        """Write the index to ``path`` atomically (write to a temporary file, rename)."""
        ...


MAX_DIM = 65536
MAX_K = 10_000
NORM_TOLERANCE = 1e-2


def check_dim(dim: object) -> int:
    """``dim`` as an int in ``1..MAX_DIM`` or :class:`InvalidArgument`."""
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or not 0 < dim <= MAX_DIM:
        raise InvalidArgument(f"dim must be an int in 1..{MAX_DIM}", dim=repr(dim))
    return int(dim)


def check_vectors(vectors: object, dim: int, what: str = "vectors") -> VectorArray:
    """A C-contiguous ``(n, dim)`` float32 array of finite, L2-normalised rows.

    Costs one O(n·dim) pass (finiteness and norms). Raises :class:`InvalidArgument`.
    """
    if not isinstance(vectors, np.ndarray):
        raise InvalidArgument(f"{what} must be a numpy array", got=type(vectors).__name__)
    if vectors.dtype != np.float32:
        raise InvalidArgument(f"{what} must be float32", dtype=str(vectors.dtype))
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise InvalidArgument(f"{what} must have shape (n, {dim})", shape=list(vectors.shape))
    if not vectors.flags.c_contiguous:
        raise InvalidArgument(f"{what} must be C-contiguous")
    if vectors.shape[0]:
        sq = np.einsum("ij,ij->i", vectors, vectors)
        if not np.all(np.isfinite(sq)):
            raise InvalidArgument(f"{what} contain NaN or infinite values")
        if np.any(np.abs(sq - 1.0) > 2 * NORM_TOLERANCE):
            raise InvalidArgument(f"{what} must be L2-normalised")
    return vectors


def check_ids(ids: object, n: int | None = None, *, unique: bool = True) -> IdArray:
    """A 1-D int64 array of non-negative ids (of length ``n`` and duplicate-free if asked)."""
    if not isinstance(ids, np.ndarray):
        raise InvalidArgument("ids must be a numpy array", got=type(ids).__name__)
    if ids.dtype != np.int64:
        raise InvalidArgument("ids must be int64", dtype=str(ids.dtype))
    if ids.ndim != 1:
        raise InvalidArgument("ids must be one-dimensional", shape=list(ids.shape))
    if n is not None and ids.shape[0] != n:
        raise InvalidArgument("ids and vectors differ in length", ids=ids.shape[0], vectors=n)
    if ids.shape[0]:
        if int(ids.min()) < 0:
            raise InvalidArgument("ids must be non-negative (-1 marks an empty result slot)")
        if unique and np.unique(ids).shape[0] != ids.shape[0]:
            raise InvalidArgument("ids contain duplicates")
    return ids


def check_k(k: object) -> int:
    """``k`` as an int in ``1..MAX_K``."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 0 < k <= MAX_K:
        raise InvalidArgument(f"k must be an int in 1..{MAX_K}", k=repr(k))
    return int(k)


def as_key(key: object) -> int | None:
    """An integer key for ``__contains__``, or ``None`` when ``key`` is not an integer."""
    if isinstance(key, bool) or not isinstance(key, int | np.integer):
        return None
    return int(key)


def empty_result(q: int, k: int) -> SearchResult:
    """A result with every slot empty (id -1, score -inf)."""
    return SearchResult(
        ids=np.full((q, k), -1, dtype=np.int64),
        scores=np.full((q, k), -np.inf, dtype=np.float32),
    )
