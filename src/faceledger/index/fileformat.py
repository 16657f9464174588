"""The on-disk index file format.

One file, a run of ``.npy`` records written with :func:`numpy.save`. The first record is a
``uint8`` array holding a UTF-8 JSON header (``format``, ``version``, ``kind``, ``impl``,
``dim``, the names of the array records that follow and implementation settings); then
one record per named array; then, for the HNSW implementation, the raw FAISS index bytes
up to the end of the file. Files are written to a temporary file in the same directory,
fsynced and renamed over the target (:func:`os.replace`), so a reader sees the old file or
the new one, never a torn one.
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

from faceledger.errors import StoreError

FORMAT = "faceledger-index"
VERSION = 1


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
