"""Approximate search: a FAISS HNSW graph over 8-bit (default), float16 or float32 codes.

FAISS HNSW cannot delete, so removal is a tombstone: the id's graph node stays (it still
routes searches) but is filtered out of every result by an ``IDSelectorBitmap`` — deletes
show immediately. Replacing an id tombstones the old node and inserts a new one. When more
than ``compact_fraction`` of the nodes are tombstones the graph is rebuilt from the live
vectors (:meth:`HnswIndex.compact`).

Defaults (sq8, m=64, ef_construction=96, ef_search=256) measured on 1M synthetic 512-d
faces, 2 cores (``benchmarks/search.py``): 1.07 KB/face in memory, 1.05 KB/face on disk,
reopen 0.7 s, single-query p50 4.9 ms, 99.7% of the probe's own mates found (97.5% of the
exact top-10 above the 1e-4 FMR threshold, which at 1M also holds near-threshold
impostors), insertion 2.0 CPU-ms per face (~950 faces/s on 2 cores). m=48 inserts 1.6x
faster but finds only 98.3% of own mates at ef_search=384 (4.5 ms).
"""

from __future__ import annotations

import os

# FAISS's OpenMP threads spin while idle by default; when the cores are shared (an API server
# also running a face model) that made a 2-thread insert 10-25x slower than 1 thread, while
# passive waiting made it faster. Only takes effect if OpenMP is not loaded yet.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path
from typing import IO, Any, Literal

import faiss as _faiss
import numpy as np
import numpy.typing as npt

from faceledger.errors import InvalidArgument, StoreError
from faceledger.index.base import IdArray, SearchResult, VectorArray
from faceledger.index.exact import IdMap
from faceledger.index.factory import (
    as_key,
    check_dim,
    check_ids,
    check_k,
    check_vectors,
    empty_result,
    read_index_file,
    write_index_file,
)

faiss: Any = _faiss  # the stubs bundled with faiss-cpu lack SearchParametersHNSW, IO callbacks

Storage = Literal["f16", "sq8", "f32"]
_QTYPES = {"f16": faiss.ScalarQuantizer.QT_fp16, "sq8": faiss.ScalarQuantizer.QT_8bit}
_CODE_BYTES = {"f16": 2, "sq8": 1, "f32": 4}
_CHUNK = 65536


def _positive(name: str, value: object, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise InvalidArgument(f"{name} must be an int >= {low}", **{name: repr(value)})
    return int(value)


class HnswIndex:
    """HNSW approximate index (FAISS) with immediate deletes via tombstones.

    ``storage``: "sq8" (default: per-dimension 8-bit codes, 512 B/face at 512-d, scores
    within ~3e-3 of exact, std 6e-4), "f16" (twice the code memory, scores within ~1e-3) or
    "f32" (exact scores, 4x). ``m`` is the graph degree (memory ``8·m`` bytes/face; more
    links raise recall on hard queries), ``ef_construction`` the insertion beam (build time
    grows about linearly with it), ``ef_search`` the search beam (latency grows about
    linearly; raised to ``k`` when ``k`` is larger). Not safe for concurrent mutation;
    concurrent searches are fine.
    """

    def __init__(
        self,
        dim: int,
        *,
        storage: Storage = "sq8",
        m: int = 64,
        ef_construction: int = 96,
        ef_search: int = 256,
        compact_fraction: float = 0.5,
    ) -> None:
        self._dim = check_dim(dim)
        if storage not in _CODE_BYTES:
            raise InvalidArgument("storage must be 'f16', 'sq8' or 'f32'", storage=repr(storage))
        if not 0.0 < float(compact_fraction) <= 1.0:
            raise InvalidArgument("compact_fraction must be in (0, 1]")
        self._storage: Storage = storage
        self._m = _positive("m", m, 4)
        self._ef_construction = _positive("ef_construction", ef_construction)
        self._ef_search = _positive("ef_search", ef_search)
        self._compact_fraction = float(compact_fraction)
        self._ranges: npt.NDArray[np.float32] | None = None  # sq8 (vmin, vdiff) once set
        self._index: Any = self._new_faiss()
        self._labels: IdArray = np.empty(0, dtype=np.int64)  # faiss label -> id, -1 = tombstone
        self._map = IdMap()
        self._dead = 0
        self._bitmap: npt.NDArray[np.uint8] | None = None

    def _new_faiss(self) -> Any:
        ip = faiss.METRIC_INNER_PRODUCT
        if self._storage == "f32":
            index = faiss.IndexHNSWFlat(self._dim, self._m, ip)
        else:
            index = faiss.IndexHNSWSQ(self._dim, _QTYPES[self._storage], self._m, ip)
        index.hnsw.efConstruction = self._ef_construction
        index.hnsw.efSearch = self._ef_search
        if self._ranges is not None:
            self._install_ranges(index)
        return index

    def _install_ranges(self, index: Any) -> None:
        storage = faiss.downcast_index(index.storage)
        faiss.copy_array_to_vector(self._ranges, storage.sq.trained)
        storage.is_trained = True
        index.is_trained = True

    def _train(self, vectors: VectorArray) -> None:
        """sq8 only: fix per-dimension ranges from the first vectors added, widened by 25%
        and floored at 6/sqrt(dim) (6 sigma of a random unit vector); values beyond clip."""
        floor = min(1.0, 6.0 / np.sqrt(self._dim))
        r = np.clip(1.25 * np.abs(vectors).max(axis=0), floor, 1.0).astype(np.float32)
        self._ranges = np.concatenate([-r, 2 * r]).astype(np.float32)
        self._install_ranges(self._index)

    # ------------------------------------------------------------------ protocol

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def storage(self) -> Storage:
        return self._storage

    @property
    def ef_search(self) -> int:
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self._ef_search = _positive("ef_search", value)
        self._index.hnsw.efSearch = self._ef_search

    @property
    def tombstones(self) -> int:
        """Graph nodes that belong to removed or replaced ids."""
        return self._dead

    @property
    def nbytes(self) -> int:
        """Approximate memory held: codes, graph links, levels/offsets, id arrays."""
        n = int(self._index.ntotal)
        graph = int(self._index.hnsw.neighbors.size()) * 4 + n * 12
        codes = n * self._dim * _CODE_BYTES[self._storage]
        return codes + graph + self._labels.nbytes + self._map.nbytes

    def __len__(self) -> int:
        return int(self._index.ntotal) - self._dead

    def __contains__(self, key: object) -> bool:
        k = as_key(key)
        return k is not None and self._map.get_one(k) >= 0

    def ids(self) -> IdArray:
        labels = self._labels[: self._index.ntotal]
        return labels[labels >= 0].copy()

    def vectors(self) -> tuple[IdArray, VectorArray]:
        """Live ids and their decoded vectors (float16/sq8 codes widened); O(n·dim)."""
        live = np.flatnonzero(self._labels[: self._index.ntotal] >= 0).astype(np.int64)
        out = np.empty((live.shape[0], self._dim), dtype=np.float32)
        for a in range(0, live.shape[0], _CHUNK):
            out[a : a + _CHUNK] = self._index.reconstruct_batch(live[a : a + _CHUNK])
        return self._labels[live].copy(), out

    def add(self, ids: IdArray, vectors: VectorArray) -> None:
        """Insert (or replace) vectors. Cost: one HNSW insertion per vector, about
        O(ef_construction · m · log n · dim); FAISS spreads a batch over all cores, so add in
        batches (thousands) for throughput."""
        vectors = check_vectors(vectors, self._dim)
        ids = check_ids(ids, vectors.shape[0])
        if not ids.shape[0]:
            return
        if self._storage == "sq8" and self._ranges is None:
            self._train(vectors)
        self._tombstone(self._map.get(ids))
        start = int(self._index.ntotal)
        self._index.add(vectors)
        labels = np.arange(start, start + ids.shape[0], dtype=np.int64)
        if self._labels.shape[0] < self._index.ntotal:
            grown = np.full(max(self._index.ntotal, start + start // 2, 64), -1, np.int64)
            grown[:start] = self._labels[:start]
            self._labels = grown
        self._labels[labels] = ids
        self._map.set(ids, labels)
        self._bitmap = None

    def remove(self, ids: IdArray) -> int:
        """Tombstone present ids; O(b log n), plus a rebuild (:meth:`compact`) once more than
        ``compact_fraction`` of the nodes are tombstones."""
        ids = check_ids(ids, unique=False)
        removed = self._tombstone(self._map.pop(np.unique(ids)))
        if self._dead > self._compact_fraction * self._index.ntotal:
            self.compact()
        return removed

    def _tombstone(self, labels: IdArray) -> int:
        labels = labels[labels >= 0]
        self._labels[labels] = -1
        self._dead += labels.shape[0]
        self._bitmap = None
        return int(labels.shape[0])

    def compact(self) -> None:
        """Rebuild the graph from the live vectors, dropping tombstones. Costs as much as
        adding every live vector again (minutes at 1M faces on 2 cores)."""
        if not self._dead:
            return
        ids, vecs = self.vectors()
        self._index = self._new_faiss()
        self._labels = np.empty(0, dtype=np.int64)
        self._map, self._dead, self._bitmap = IdMap(), 0, None
        for a in range(0, ids.shape[0], _CHUNK):
            chunk = vecs[a : a + _CHUNK]
            chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
            self.add(ids[a : a + _CHUNK], chunk)

    def search(self, queries: VectorArray, k: int) -> SearchResult:
        """Approximate top-k: about O(ef_search · m · log n · dim) per query, one core per
        query (a batch of queries uses all cores)."""
        queries = check_vectors(queries, self._dim, "queries")
        k = check_k(k)
        q = queries.shape[0]
        if not len(self) or not q:
            return empty_result(q, k)
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(self._ef_search, k)
        sel = None
        if self._dead:
            if self._bitmap is None:
                live = self._labels[: self._index.ntotal] >= 0
                self._bitmap = np.packbits(live, bitorder="little")
            sel = faiss.IDSelectorBitmap(int(self._index.ntotal), faiss.swig_ptr(self._bitmap))
            params.sel = sel
        scores, labels = self._index.search(queries, k, params=params)
        found = labels >= 0
        ids = np.where(found, self._labels[np.where(found, labels, 0)], -1)
        scores = np.where(found, scores, -np.inf).astype(np.float32)
        del sel
        return SearchResult(ids=ids.astype(np.int64), scores=scores)

    # ------------------------------------------------------------------ persistence

    def settings(self) -> dict[str, Any]:
        return {
            "storage": self._storage,
            "m": self._m,
            "ef_construction": self._ef_construction,
            "ef_search": self._ef_search,
            "compact_fraction": self._compact_fraction,
        }

    def save(self, path: Path | str, *, extra: dict[str, Any] | None = None) -> None:
        """Atomically write labels and the FAISS graph: O(n · (code bytes + 8m)) I/O."""
        header = {"kind": "hnsw", **(extra or {}), "impl": "hnsw", "dim": self._dim}
        header.update(self.settings(), dead=self._dead)
        index = self._index

        def blob(f: IO[bytes]) -> None:
            writer = faiss.PyCallbackIOWriter(f.write)
            faiss.write_index(index, writer)
            del writer

        write_index_file(path, header, {"labels": self._labels[: index.ntotal]}, blob)

    @classmethod
    def load(cls, path: Path | str) -> HnswIndex:
        """Read a saved index: O(file size) I/O (about 1-2 s per GB) plus O(n log n) to
        rebuild the id map; no graph construction."""
        f = read_index_file(path)
        return cls.from_file(f.header, f.arrays, f.path, f.blob_offset)

    @classmethod
    def from_file(
        cls, header: dict[str, Any], arrays: dict[str, npt.NDArray[Any]], path: Path, offset: int
    ) -> HnswIndex:
        if header.get("impl") != "hnsw":
            raise StoreError("not an HNSW index file", impl=header.get("impl"))
        keys = ("storage", "m", "ef_construction", "ef_search", "compact_fraction")
        index = cls(int(header["dim"]), **{k: header[k] for k in keys})
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                index._index = faiss.read_index(faiss.PyCallbackIOReader(fh.read))
        except (OSError, RuntimeError) as exc:
            raise StoreError(f"cannot read the HNSW graph in {path}: {exc}") from exc
        labels = np.array(arrays["labels"], dtype=np.int64)
        if index._index.ntotal != labels.shape[0] or index._index.d != index.dim:
            raise StoreError(f"{path}: graph and labels do not match")
        if index._storage == "sq8" and index._index.is_trained:
            storage = faiss.downcast_index(index._index.storage)
            index._ranges = faiss.vector_to_array(storage.sq.trained).astype(np.float32)
        index._labels = labels
        live = np.flatnonzero(labels >= 0).astype(np.int64)
        index._map = IdMap.from_arrays(labels[live], live)
        index._dead = int(labels.shape[0] - live.shape[0])
        return index
