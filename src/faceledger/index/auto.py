"""An index that is exact while small and HNSW once large, switching by itself.

Crossover measured on 2 cores, 512-d (``benchmarks/search.py --crossover``), single-query
p50 exact vs HNSW (default settings): 5k faces 0.29 vs 0.59 ms, 10k 1.3 vs 0.8 ms, 20k 2.4
vs 1.5 ms, 50k 5.2 vs 1.8 ms. HNSW is faster from about 10k faces, but exact search has
recall 1.0 and costs nothing to build, so the default threshold is 20k: the largest size
at which exact search stays within half the 5 ms latency budget. Crossing upwards builds
the HNSW graph from every stored vector inside the ``add`` that crossed (3-5 s at 20k
faces). Dropping below half the threshold (hysteresis, so the index does not flap) moves
back to exact, O(n·dim).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from faceledger.errors import InvalidArgument, StoreError
from faceledger.index.base import IdArray, SearchResult, VectorArray, check_dim
from faceledger.index.exact import ExactIndex, StorageDtype
from faceledger.index.fileformat import read_index_file
from faceledger.index.hnsw import (
    DEFAULT_EF_CONSTRUCTION,
    DEFAULT_EF_SEARCH,
    DEFAULT_M,
    DEFAULT_SHARDS,
    HnswIndex,
    Storage,
)

DEFAULT_THRESHOLD = 20_000
_CHUNK = 65536


class AutoIndex:
    """Exact below ``threshold`` faces, HNSW above; the same interface throughout.

    ``dtype`` is the exact index's storage ("float32"/"float16"); ``storage``, ``m``,
    ``ef_construction``, ``ef_search``, ``compact_fraction`` and ``shards`` configure the
    HNSW index.
    """

    def __init__(
        self,
        dim: int,
        *,
        threshold: int = DEFAULT_THRESHOLD,
        dtype: StorageDtype = "float32",
        storage: Storage = "sq8",
        m: int = DEFAULT_M,
        ef_construction: int = DEFAULT_EF_CONSTRUCTION,
        ef_search: int = DEFAULT_EF_SEARCH,
        compact_fraction: float = 0.5,
        shards: int = DEFAULT_SHARDS,
    ) -> None:
        self._dim = check_dim(dim)
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise InvalidArgument("threshold must be an int >= 1", threshold=repr(threshold))
        self._threshold = threshold
        self._dtype: StorageDtype = dtype
        self._hnsw_opts: dict[str, Any] = {
            "storage": storage,
            "m": m,
            "ef_construction": ef_construction,
            "ef_search": ef_search,
            "compact_fraction": compact_fraction,
            "shards": shards,
        }
        HnswIndex(self._dim, **self._hnsw_opts)  # validate the options now, not at migration
        self._inner: ExactIndex | HnswIndex = ExactIndex(self._dim, dtype=dtype)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def approximate(self) -> bool:
        return self._inner.approximate

    @property
    def threshold(self) -> int:
        return self._threshold

    @property
    def impl(self) -> str:
        """ "exact" or "hnsw": what currently answers searches."""
        return "exact" if isinstance(self._inner, ExactIndex) else "hnsw"

    @property
    def inner(self) -> ExactIndex | HnswIndex:
        return self._inner

    @property
    def nbytes(self) -> int:
        return self._inner.nbytes

    def __len__(self) -> int:
        return len(self._inner)

    def __contains__(self, key: object) -> bool:
        return key in self._inner

    def ids(self) -> IdArray:
        return self._inner.ids()

    def add(self, ids: IdArray, vectors: VectorArray) -> None:
        """Add (or replace); the add that takes the size past ``threshold`` also builds the
        HNSW graph from every stored vector."""
        self._inner.add(ids, vectors)
        if isinstance(self._inner, ExactIndex) and len(self._inner) > self._threshold:
            self._to_hnsw()

    def remove(self, ids: IdArray) -> int:
        """Remove; falling below ``threshold // 2`` moves the vectors back to exact."""
        removed = self._inner.remove(ids)
        if isinstance(self._inner, HnswIndex) and len(self._inner) < self._threshold // 2:
            self._to_exact()
        return removed

    def search(self, queries: VectorArray, k: int) -> SearchResult:
        """Delegates to the current implementation (see ExactIndex / HnswIndex costs)."""
        return self._inner.search(queries, k)

    def _to_hnsw(self) -> None:
        assert isinstance(self._inner, ExactIndex)
        ids, vecs = self._inner.ids(), self._inner.vectors()
        hnsw = HnswIndex(self._dim, **self._hnsw_opts)
        for a in range(0, ids.shape[0], _CHUNK):
            hnsw.add(ids[a : a + _CHUNK], vecs[a : a + _CHUNK])
        self._inner = hnsw

    def _to_exact(self) -> None:
        assert isinstance(self._inner, HnswIndex)
        ids, vecs = self._inner.vectors()
        if vecs.shape[0]:
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        exact = ExactIndex(self._dim, dtype=self._dtype)
        exact.add(ids, vecs)
        self._inner = exact

    def save(self, path: Path | str) -> None:
        """Atomically write the current implementation's data plus the auto settings."""
        auto = {"threshold": self._threshold, "dtype": self._dtype, **self._hnsw_opts}
        self._inner.save(path, extra={"kind": "auto", "auto": auto})

    @classmethod
    def load(cls, path: Path | str, *, mmap: bool = False) -> AutoIndex:
        """Open a saved auto index (costs as for the implementation it holds)."""
        f = read_index_file(path, mmap=mmap)
        settings = f.header.get("auto")
        if f.header.get("kind") != "auto" or not isinstance(settings, dict):
            raise StoreError(f"{path} is not an auto index file")
        index = cls(int(f.header["dim"]), **settings)
        if f.header.get("impl") == "hnsw":
            index._inner = HnswIndex.from_file(f.header, f.arrays, f.path, f.blob_offset)
        else:
            index._inner = ExactIndex.from_file(f.header, f.arrays)
        return index
