"""Approximate search: a FAISS HNSW graph over 8-bit (default), float16 or float32 codes.

FAISS HNSW cannot delete, so removal is a tombstone: the id's graph node stays (it still
routes searches) but is filtered out of every result by an ``IDSelectorBitmap`` — deletes
show immediately — and its stored code is overwritten with zeros at once, so no trace of
the removed vector stays in memory or in the next saved file (erasure is physical).
Replacing an id tombstones the old node and inserts a new one. When more
than ``compact_fraction`` of the nodes are tombstones the graph is rebuilt from the live
vectors (:meth:`HnswIndex.compact`).

The graph can be split into ``shards`` (default 2, one per core here): each batch added is
divided between them, and a single query searches every shard at once on its own thread
(FAISS releases the GIL), merging the results. Two graphs of n/2 are cheaper to build than
one of n and each is easier to search, so at the same wall-clock latency a query reaches
more of its true neighbours; a query then occupies both cores for its few milliseconds.

Measured on 1M synthetic 512-d faces, 2 cores (``benchmarks/search.py``; results
re-ranked exactly from a 32-candidate pool, as the store does, except the first row).
Insertion rate, then mate recall (the exact top 10 above the 1e-4 FMR threshold) and p50
single-query latency at efSearch 384:

=======================  ========  ====================================
codes, m, shards         faces/s   mate recall / p50
=======================  ========  ====================================
sq8, m=64, 1 shard       945       0.975 / 4.9 ms (efSearch 256)
sq8, m=32 (efC 64), 1    2,801     0.959 / 3.4 ms
sq8, m=48, 1 shard       1,683     0.981 / 5.0 ms (0.991 needs 640: 9.3 ms)
f16, m=48, 2 shards      1,811     0.990 / 4.8 ms (1.46 KB/face)
sq8, m=48, 2 shards      2,040     0.993 / 4.0 ms (p99 5.9 ms)
=======================  ========  ====================================

Defaults are the last row: sq8 codes, m=48, ef_construction=96, ef_search=384, 2 shards;
0.94 KB per face in memory, 0.92 KB on disk, reopen 0.7 s.
"""

from __future__ import annotations

import os

# FAISS's OpenMP threads spin while idle by default; when the cores are shared (an API server
# also running a face model) that made a 2-thread insert 10-25x slower than 1 thread, while
# passive waiting made it faster. Why here, at import, and not where an index is created:
# the OpenMP runtime reads OMP_WAIT_POLICY once, when it is loaded, and it is loaded by
# `import faiss` just below; by the time an HnswIndex is constructed it is too late. The
# registry imports this module only when the first HNSW index is made or loaded, so a
# process that never uses HNSW is not affected; setdefault keeps an operator's own value.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, Literal

import faiss as _faiss
import numpy as np
import numpy.typing as npt

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
from faceledger.index.fileformat import read_index_file, write_index_file
from faceledger.index.idmap import IdMap

faiss: Any = _faiss  # the stubs bundled with faiss-cpu lack SearchParametersHNSW, IO callbacks

Storage = Literal["f16", "sq8", "f32"]
_QTYPES = {"f16": faiss.ScalarQuantizer.QT_fp16, "sq8": faiss.ScalarQuantizer.QT_8bit}
_CODE_BYTES = {"f16": 2, "sq8": 1, "f32": 4}
_CHUNK = 65536

DEFAULT_M = 48
DEFAULT_EF_CONSTRUCTION = 96
DEFAULT_EF_SEARCH = 384
DEFAULT_SHARDS = 2
"""Defaults chosen on 1M synthetic faces, 2 cores (``benchmarks/search.py``; module doc)."""


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _search_pool() -> ThreadPoolExecutor:
    """Threads that search the shards of one query in parallel (FAISS releases the GIL)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(
                os.cpu_count() or 2,
                thread_name_prefix="faceledger-hnsw",
                initializer=faiss.omp_set_num_threads,
                initargs=(1,),
            )
        return _POOL


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
        m: int = DEFAULT_M,
        ef_construction: int = DEFAULT_EF_CONSTRUCTION,
        ef_search: int = DEFAULT_EF_SEARCH,
        compact_fraction: float = 0.5,
        shards: int = DEFAULT_SHARDS,
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
        self._shards = _positive("shards", shards)
        self._ranges: npt.NDArray[np.float32] | None = None  # sq8 (vmin, vdiff) once set
        self._graphs: list[Any] = [self._new_faiss() for _ in range(self._shards)]
        # Global label of shard s's local label l: l * shards + s. _labels maps it to the id
        # (-1: tombstone or unused slot), _map the id back to its global label.
        self._labels: IdArray = np.empty(0, dtype=np.int64)
        self._map = IdMap()
        self._dead = 0
        self._bitmaps: list[npt.NDArray[np.uint8] | None] = [None] * self._shards

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
        for graph in self._graphs:
            self._install_ranges(graph)

    # ------------------------------------------------------------------ protocol

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def approximate(self) -> bool:
        return True

    @property
    def storage(self) -> Storage:
        return self._storage

    @property
    def ef_search(self) -> int:
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self._ef_search = _positive("ef_search", value)
        for graph in self._graphs:
            graph.hnsw.efSearch = self._ef_search

    @property
    def shards(self) -> int:
        return self._shards

    @property
    def _ntotal(self) -> int:
        """Graph nodes in all shards, live or tombstoned."""
        return sum(int(graph.ntotal) for graph in self._graphs)

    def _shard_labels(self, shard: int) -> IdArray:
        """The id (or -1) of each node of one shard, by local label."""
        return self._labels[shard :: self._shards][: int(self._graphs[shard].ntotal)]

    @property
    def tombstones(self) -> int:
        """Graph nodes that belong to removed or replaced ids."""
        return self._dead

    @property
    def nbytes(self) -> int:
        """Approximate memory held: codes, graph links, levels/offsets, id arrays."""
        n = self._ntotal
        graph = sum(int(g.hnsw.neighbors.size()) for g in self._graphs) * 4 + n * 12
        codes = n * self._dim * _CODE_BYTES[self._storage]
        return codes + graph + self._labels.nbytes + self._map.nbytes

    def __len__(self) -> int:
        return self._ntotal - self._dead

    def __contains__(self, key: object) -> bool:
        k = as_key(key)
        return k is not None and self._map.get_one(k) >= 0

    def ids(self) -> IdArray:
        return self._labels[self._labels >= 0].copy()

    def vectors(self) -> tuple[IdArray, VectorArray]:
        """Live ids and their decoded vectors (float16/sq8 codes widened); O(n·dim)."""
        ids, out = [], []
        for shard, graph in enumerate(self._graphs):
            labels = self._shard_labels(shard)
            live = np.flatnonzero(labels >= 0).astype(np.int64)
            for a in range(0, live.shape[0], _CHUNK):
                out.append(graph.reconstruct_batch(live[a : a + _CHUNK]))
            ids.append(labels[live])
        if not out:
            return np.empty(0, np.int64), np.empty((0, self._dim), np.float32)
        return np.concatenate(ids), np.concatenate(out).astype(np.float32, copy=False)

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
        # Near-equal contiguous parts, the largest to the smallest shard.
        parts = sorted(np.array_split(np.arange(ids.shape[0]), self._shards), key=len)[::-1]
        order = sorted(range(self._shards), key=lambda s: int(self._graphs[s].ntotal))
        for shard, part in zip(order, parts, strict=True):
            if part.shape[0]:
                self._add_to(shard, ids[part], vectors[part])

    def _add_to(self, shard: int, ids: IdArray, vectors: VectorArray) -> None:
        graph = self._graphs[shard]
        start = int(graph.ntotal)
        graph.add(np.ascontiguousarray(vectors))
        labels = np.arange(start, start + ids.shape[0], dtype=np.int64) * self._shards + shard
        needed = int(labels[-1]) + 1
        if self._labels.shape[0] < needed:
            grown = np.full(max(needed, self._labels.shape[0] * 3 // 2, 64), -1, np.int64)
            grown[: self._labels.shape[0]] = self._labels
            self._labels = grown
        self._labels[labels] = ids
        self._map.set(ids, labels)
        self._bitmaps[shard] = None

    def remove(self, ids: IdArray) -> int:
        """Tombstone present ids; O(b log n), plus a rebuild (:meth:`compact`) once more than
        ``compact_fraction`` of the nodes are tombstones."""
        ids = check_ids(ids, unique=False)
        removed = self._tombstone(self._map.pop(np.unique(ids)))
        if self._dead > self._compact_fraction * self._ntotal:
            self.compact()
        return removed

    def _tombstone(self, labels: IdArray) -> int:
        labels = labels[labels >= 0]
        self._labels[labels] = -1
        self._dead += labels.shape[0]
        for shard in np.unique(labels % self._shards).tolist():
            self._bitmaps[shard] = None
            self._scrub(shard, labels[labels % self._shards == shard] // self._shards)
        return int(labels.shape[0])

    def _scrub(self, shard: int, nodes: IdArray) -> None:
        """Overwrite the stored codes of tombstoned ``nodes`` of a shard with zeros, in place.

        The node stays in the graph (it routes searches, and is filtered from results), but
        the vector it held is gone: a zero code decodes to the quantiser's minimum, the same
        for every erased face. O(len(nodes) · code size)."""
        if not nodes.shape[0]:
            return
        storage = faiss.downcast_index(self._graphs[shard].storage)
        size = int(storage.code_size)
        codes = faiss.rev_swig_ptr(storage.codes.data(), int(storage.codes.size()))
        rows = np.asarray(codes).reshape(-1, size)
        rows[nodes] = 0

    def compact(self) -> None:
        """Rebuild the graph from the live vectors, dropping tombstones. Costs as much as
        adding every live vector again (minutes at 1M faces on 2 cores)."""
        if not self._dead:
            return
        ids, vecs = self.vectors()
        self._graphs = [self._new_faiss() for _ in range(self._shards)]
        self._labels = np.empty(0, dtype=np.int64)
        self._map, self._dead, self._bitmaps = IdMap(), 0, [None] * self._shards
        for a in range(0, ids.shape[0], _CHUNK):
            chunk = vecs[a : a + _CHUNK]
            chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
            self.add(ids[a : a + _CHUNK], chunk)

    def search(self, queries: VectorArray, k: int) -> SearchResult:
        """Approximate top-k: about O(ef_search · m · log n · dim) per query and shard. A
        single query searches the shards in parallel threads; a batch of queries runs the
        shards one after another, each spreading the queries over all cores."""
        queries = check_vectors(queries, self._dim, "queries")
        k = check_k(k)
        q = queries.shape[0]
        if not len(self) or not q:
            return empty_result(q, k)
        if self._shards > 1 and q == 1:  # the other shards on pool threads, the first here
            pool = _search_pool()
            others = [
                pool.submit(self._search_shard, s, queries, k) for s in range(1, self._shards)
            ]
            found = [self._search_shard(0, queries, k), *(f.result() for f in others)]
        else:
            found = [self._search_shard(s, queries, k) for s in range(self._shards)]
        if len(found) == 1:
            ids, scores = found[0]
        else:
            all_ids = np.concatenate([f[0] for f in found], axis=1)
            all_scores = np.concatenate([f[1] for f in found], axis=1)
            best = np.argsort(-all_scores, axis=1, kind="stable")[:, :k]
            ids = np.take_along_axis(all_ids, best, axis=1)
            scores = np.take_along_axis(all_scores, best, axis=1)
        return SearchResult(ids=ids, scores=scores)

    def _search_shard(
        self, shard: int, queries: VectorArray, k: int
    ) -> tuple[IdArray, npt.NDArray[np.float32]]:
        graph = self._graphs[shard]
        if not graph.ntotal:
            empty = empty_result(queries.shape[0], k)
            return empty.ids, empty.scores
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(self._ef_search, k)
        sel = None
        if self._dead:
            bitmap = self._bitmaps[shard]
            if bitmap is None:
                bitmap = np.packbits(self._shard_labels(shard) >= 0, bitorder="little")
                self._bitmaps[shard] = bitmap
            sel = faiss.IDSelectorBitmap(int(graph.ntotal), faiss.swig_ptr(bitmap))
            params.sel = sel
        scores, local = graph.search(queries, k, params=params)
        found = local >= 0
        labels = np.where(found, local, 0) * self._shards + shard
        ids = np.where(found, self._labels[labels], -1).astype(np.int64)
        del sel
        return ids, np.where(found, scores, -np.inf).astype(np.float32)

    # ------------------------------------------------------------------ persistence

    def settings(self) -> dict[str, Any]:
        return {
            "storage": self._storage,
            "m": self._m,
            "ef_construction": self._ef_construction,
            "ef_search": self._ef_search,
            "compact_fraction": self._compact_fraction,
            "shards": self._shards,
        }

    def save(self, path: Path | str, *, extra: dict[str, Any] | None = None) -> None:
        """Atomically write labels and the FAISS graph: O(n · (code bytes + 8m)) I/O."""
        header = {"kind": "hnsw", **(extra or {}), "impl": "hnsw", "dim": self._dim}
        header.update(self.settings(), dead=self._dead)
        graphs = list(self._graphs)
        used = max(int(g.ntotal) for g in graphs) * self._shards

        def blob(f: IO[bytes]) -> None:
            writer = faiss.PyCallbackIOWriter(f.write)
            for graph in graphs:  # one after another; each read back by its own length
                faiss.write_index(graph, writer)
            del writer

        write_index_file(path, header, {"labels": self._labels[:used]}, blob)

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
        options = {k: header[k] for k in keys}
        index = cls(int(header["dim"]), **options, shards=int(header.get("shards", 1)))
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                reader = faiss.PyCallbackIOReader(fh.read)
                index._graphs = [faiss.read_index(reader) for _ in range(index.shards)]
                del reader
        except (OSError, RuntimeError) as exc:
            raise StoreError(f"cannot read the HNSW graph in {path}: {exc}") from exc
        labels = np.array(arrays["labels"], dtype=np.int64)
        graphs = index._graphs
        used = max(int(g.ntotal) for g in graphs) * index.shards
        if used != labels.shape[0] or any(g.d != index.dim for g in graphs):
            raise StoreError(f"{path}: graph and labels do not match")
        if index._storage == "sq8" and graphs[0].is_trained:
            storage = faiss.downcast_index(graphs[0].storage)
            index._ranges = faiss.vector_to_array(storage.sq.trained).astype(np.float32)
        index._labels = labels
        live = np.flatnonzero(labels >= 0).astype(np.int64)
        index._map = IdMap.from_arrays(labels[live], live)
        index._dead = index._ntotal - int(live.shape[0])
        return index
