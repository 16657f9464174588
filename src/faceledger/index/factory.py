"""Making and loading indexes, boundary checks, and the on-disk index file format.

File format: one file, a run of ``.npy`` records written with :func:`numpy.save`. The first
record is a ``uint8`` array holding a UTF-8 JSON header (``format``, ``version``, ``kind``,
``impl``, ``dim``, the names of the array records that follow and implementation settings);
then one record per named array; then, for the HNSW implementation, the raw FAISS index
bytes up to the end of the file. Files are written to a temporary file in the same
directory, fsynced and renamed over the target (:func:`os.replace`), so a reader sees the
old file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from faceledger.errors import InvalidArgument, StoreError
from faceledger.index.base import IdArray, SearchResult, VectorArray, VectorIndex

FORMAT = "faceledger-index"
VERSION = 1
MAX_DIM = 65536
MAX_K = 10_000
NORM_TOLERANCE = 1e-2
KINDS = ("exact", "hnsw", "auto")


# ---------------------------------------------------------------- boundary checks


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


# ---------------------------------------------------------------- file format


@dataclass(slots=True)
class IndexFile:
    """A parsed index file: its header, named arrays, and where the trailing blob starts."""

    path: Path
    header: dict[str, Any]
    arrays: dict[str, npt.NDArray[Any]]
    blob_offset: int


def write_index_file(
    path: Path | str,
    header: Mapping[str, Any],
    arrays: Mapping[str, npt.NDArray[Any]],
    blob: Callable[[IO[bytes]], None] | None = None,
) -> None:
    """Atomically write ``header``, ``arrays`` and an optional trailing blob to ``path``.

    Cost: O(file size) I/O plus an fsync.
    """
    path = Path(path)
    full = {**header, "format": FORMAT, "version": VERSION, "arrays": list(arrays)}
    head = np.frombuffer(json.dumps(full).encode(), dtype=np.uint8)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.save(f, head, allow_pickle=False)
            for arr in arrays.values():
                np.save(f, np.ascontiguousarray(arr), allow_pickle=False)
            if blob is not None:
                blob(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise StoreError(f"cannot write index file {path}: {exc}") from exc
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_index_file(path: Path | str, *, mmap: bool = False) -> IndexFile:
    """Parse an index file. With ``mmap`` arrays are read-only memory maps (O(1) to open);
    otherwise they are read into memory (O(array bytes)). Raises :class:`StoreError`."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = _read_record(f, path, mmap=False)
            header = json.loads(head.tobytes().decode())
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise StoreError(f"{path} is not a faceledger index file")
            if header.get("version") != VERSION:
                raise StoreError(f"{path}: unsupported index file version {header.get('version')}")
            arrays = {name: _read_record(f, path, mmap=mmap) for name in header["arrays"]}
            return IndexFile(path=path, header=header, arrays=arrays, blob_offset=f.tell())
    except StoreError:
        raise
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise StoreError(f"cannot read index file {path}: {exc}") from exc


def _read_record(f: IO[bytes], path: Path, *, mmap: bool) -> npt.NDArray[Any]:
    start = f.tell()
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise StoreError(f"{path}: unsupported .npy version {version} at byte {start}")
    if fortran or dtype.hasobject:
        raise StoreError(f"{path}: unexpected array layout at byte {start}")
    count = int(np.prod(shape, dtype=np.int64))
    offset = f.tell()
    nbytes = count * dtype.itemsize
    if mmap and nbytes:
        arr: npt.NDArray[Any] = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
        f.seek(offset + nbytes)
        return arr
    data = np.fromfile(f, dtype=dtype, count=count)
    if data.shape[0] != count:
        raise StoreError(f"{path} is truncated")
    return data.reshape(shape)


def peek_header(path: Path | str) -> dict[str, Any]:
    """The JSON header of an index file (cheap: reads only the first record)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            header = json.loads(_read_record(f, path, mmap=False).tobytes().decode())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"cannot read index file {path}: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise StoreError(f"{path} is not a faceledger index file")
    return header


# ---------------------------------------------------------------- factory


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
