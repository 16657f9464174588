"""Exact (brute-force) inner-product search with NumPy/BLAS, and the compact id map.

Memory per face: ``dim * 4`` (float32) or ``dim * 2`` (float16) bytes for the vector, plus
8 bytes row->id and about 16 bytes id->row. A single-query search reads every stored vector
once: about 1-2 ms per 20k faces at 512-d float32 on one core. float16 storage halves the
memory but NumPy widens float16 at ~5 ns per element on this class of machine, so a search
costs ~50x more (about 100 ms at 20k faces): use it only where memory matters more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

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

StorageDtype = Literal["float32", "float16"]
_SCORE_BUDGET = 1 << 24  # floats in one (queries x rows) score block: 64 MiB
_F16_BLOCK = 16384  # rows widened to float32 at a time for float16 storage
_SMALL_BATCH = 4  # up to this many queries ...
_EINSUM_MIN = 1 << 22  # ... over at least this many stored floats skip BLAS (see _scores)


def top_k(scores: npt.NDArray[np.float32], k: int) -> tuple[IdArray, npt.NDArray[np.float32]]:
    """Row positions and scores of the ``k`` largest scores per row, best first, padded with
    ``-1``/``-inf``. O(n) per row via ``argpartition`` plus O(k log k) to order the winners."""
    q, n = scores.shape
    kk = min(k, n)
    if kk < n:
        part = np.argpartition(scores, n - kk, axis=1)[:, n - kk :]
    else:
        part = np.broadcast_to(np.arange(n, dtype=np.int64), (q, n))
    best = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-best, axis=1, kind="stable")
    pos = np.full((q, k), -1, dtype=np.int64)
    out = np.full((q, k), -np.inf, dtype=np.float32)
    pos[:, :kk] = np.take_along_axis(part, order, axis=1)
    out[:, :kk] = np.take_along_axis(best, order, axis=1)
    return pos, out


class ExactIndex:
    """Brute-force index: every search scores all stored vectors (recall 1.0).

    Not safe for concurrent mutation; concurrent searches are fine.
    """

    def __init__(self, dim: int, *, dtype: StorageDtype = "float32") -> None:
        self._dim = check_dim(dim)
        if dtype not in ("float32", "float16"):
            raise InvalidArgument("dtype must be 'float32' or 'float16'", dtype=repr(dtype))
        self._dtype: StorageDtype = dtype
        self._vecs: npt.NDArray[Any] = np.empty((0, self._dim), dtype=dtype)
        self._ids: IdArray = np.empty(0, dtype=np.int64)
        self._n = 0
        self._map = IdMap()

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def approximate(self) -> bool:
        """False: every vector is scored (float16 storage errs by about 1e-4 at most)."""
        return False

    @property
    def dtype(self) -> StorageDtype:
        return self._dtype

    @property
    def nbytes(self) -> int:
        """Approximate memory held by the index, in bytes."""
        return int(self._vecs.nbytes + self._ids.nbytes + self._map.nbytes)

    def __len__(self) -> int:
        return self._n

    def __contains__(self, key: object) -> bool:
        k = as_key(key)
        return k is not None and self._map.get_one(k) >= 0

    def ids(self) -> IdArray:
        return self._ids[: self._n].copy()

    def vectors(self) -> VectorArray:
        """All stored vectors as float32, row-aligned with :meth:`ids`; O(n·dim) copy."""
        return np.array(self._vecs[: self._n], dtype=np.float32)

    def _reserve(self, extra: int) -> None:
        need = self._n + extra
        cap = self._vecs.shape[0]
        if need <= cap and isinstance(self._vecs, np.ndarray) and self._vecs.flags.writeable:
            return
        cap = max(need, cap + cap // 2, 64) if need > cap else cap
        vecs = np.empty((cap, self._dim), dtype=self._dtype)
        vecs[: self._n] = self._vecs[: self._n]
        ids = np.empty(cap, dtype=np.int64)
        ids[: self._n] = self._ids[: self._n]
        self._vecs, self._ids = vecs, ids

    def add(self, ids: IdArray, vectors: VectorArray) -> None:
        """Add (or replace) vectors; amortised O(b·dim) plus O(b log n) map updates."""
        vectors = check_vectors(vectors, self._dim)
        ids = check_ids(ids, vectors.shape[0])
        if not ids.shape[0]:
            return
        rows = self._map.get(ids)
        old = rows >= 0
        self._reserve(int(np.count_nonzero(~old)))
        new_rows = np.arange(self._n, self._n + int(np.count_nonzero(~old)), dtype=np.int64)
        rows[~old] = new_rows
        self._vecs[rows] = vectors
        self._ids[new_rows] = ids[~old]
        self._n += new_rows.shape[0]
        self._map.set(ids[~old], new_rows)

    def remove(self, ids: IdArray) -> int:
        """Remove present ids by moving the last rows into their slots and zeroing the rows
        left over; O(b·dim)."""
        ids = check_ids(ids, unique=False)
        rows = np.unique(self._map.pop(np.unique(ids)))
        rows = rows[rows >= 0]
        m = int(rows.shape[0])
        if not m:
            return 0
        self._reserve(0)
        tail = self._n - m
        holes = rows[rows < tail]
        movers = np.setdiff1d(np.arange(tail, self._n, dtype=np.int64), rows, assume_unique=True)
        if holes.shape[0]:
            self._vecs[holes] = self._vecs[movers]
            self._ids[holes] = self._ids[movers]
            self._map.set(self._ids[holes], holes)
        self._vecs[tail : self._n] = 0  # erased: no copy of a removed vector stays in memory
        self._ids[tail : self._n] = -1
        self._n = tail
        return m

    def search(self, queries: VectorArray, k: int) -> SearchResult:
        """Score every stored vector: O(q·n·dim) BLAS work plus O(q·n) for the top-k."""
        queries = check_vectors(queries, self._dim, "queries")
        k = check_k(k)
        q = queries.shape[0]
        if not self._n or not q:
            return empty_result(q, k)
        ids = np.full((q, k), -1, dtype=np.int64)
        scores = np.full((q, k), -np.inf, dtype=np.float32)
        step = max(1, _SCORE_BUDGET // self._n)
        for a in range(0, q, step):
            b = min(q, a + step)
            pos, sc = top_k(self._scores(queries[a:b]), k)
            ids[a:b] = np.where(pos >= 0, self._ids[pos], -1)
            scores[a:b] = sc
        return SearchResult(ids=ids, scores=scores)

    def _scores(self, queries: VectorArray) -> npt.NDArray[np.float32]:
        """Scores of ``queries`` against every stored row.

        A few queries over a large gallery use a single-threaded ``einsum`` instead of BLAS:
        with the cores busy (an API server also runs the face model) multi-threaded OpenBLAS
        gemv waited ~10x longer for its threads (20k faces: p50 18 ms vs 2 ms), while for
        memory-bound sizes one thread is as fast as two.
        """
        vecs = np.asarray(self._vecs[: self._n])
        q, n = queries.shape[0], self._n
        small = q <= _SMALL_BATCH and n * self._dim >= _EINSUM_MIN
        if self._dtype == "float32" and not small:
            return np.asarray(queries @ vecs.T, dtype=np.float32)
        out = np.empty((q, n), dtype=np.float32)
        step = n if self._dtype == "float32" else _F16_BLOCK
        for a in range(0, n, step):
            b = min(n, a + step)
            block = vecs[a:b].astype(np.float32, copy=False)
            if small:
                for i in range(q):
                    np.einsum("ij,j->i", block, queries[i], out=out[i, a:b])
            else:
                np.matmul(queries, block.T, out=out[:, a:b])
        return out

    def save(self, path: Path | str, *, extra: dict[str, Any] | None = None) -> None:
        """Atomically write the index (O(n·dim) bytes); ``extra`` goes into the header."""
        header = {"kind": "exact", **(extra or {}), "impl": "exact", "dim": self._dim}
        header["dtype"] = self._dtype
        arrays = {"ids": self._ids[: self._n], "vectors": self._vecs[: self._n]}
        write_index_file(path, header, arrays)

    @classmethod
    def load(cls, path: Path | str, *, mmap: bool = False) -> ExactIndex:
        """Open a saved exact index. With ``mmap`` the vectors are memory-mapped (O(1) I/O,
        copied into memory on the first change); either way the id map costs O(n log n)."""
        f = read_index_file(path, mmap=mmap)
        return cls.from_file(f.header, f.arrays)

    @classmethod
    def from_file(cls, header: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]) -> ExactIndex:
        if header.get("impl") != "exact":
            raise StoreError("not an exact index file", impl=header.get("impl"))
        index = cls(int(header["dim"]), dtype=header.get("dtype", "float32"))
        ids, vecs = arrays["ids"], arrays["vectors"]
        if ids.dtype != np.int64 or vecs.shape != (ids.shape[0], index.dim):
            raise StoreError("index file arrays do not match", shape=list(vecs.shape))
        if vecs.dtype != np.dtype(index.dtype):
            raise StoreError("index file dtype does not match its header")
        index._vecs, index._ids, index._n = vecs, np.array(ids), int(ids.shape[0])
        index._map = IdMap.from_arrays(index._ids, np.arange(ids.shape[0], dtype=np.int64))
        return index
