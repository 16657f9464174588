"""The vector index interface: add, remove, search, save, load, length, membership.

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
