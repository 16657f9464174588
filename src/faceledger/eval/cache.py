"""Embedding cache for evaluations: one SQLite file per model, keyed by image content.

A row is keyed by the SHA-256 of the image bytes and a *mode* that names how the image
was turned into an embedding: ``aligned`` (the file is an aligned crop), ``detected``
(the largest detected face, with the detector settings in the key) or ``center`` (the
LFW fallback crop of the image centre). Images in which no face was found are stored
too (without an embedding), so a re-run never searches them again. Decoding and size
errors are not cached: they depend on the engine's limits, not only on the content.
The mode also carries :func:`pipeline_code_version`, a hash of the source of every module
between an image file and its embedding, so a change of decoding, detection or alignment
code never passes on vectors the old code made.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from faceledger.engine import Engine
from faceledger.errors import FaceledgerError, InvalidArgument, ModelError, StoreError
from faceledger.types import FloatArray

Mode = Literal["detected", "aligned", "center"]
Progress = Callable[[int, int], None]
PIPELINE_MODULES = (
    "faceledger.imaging.decode",
    "faceledger.imaging.resize",
    "faceledger.engine",
    "faceledger.models.pipeline",
    "faceledger.models.scrfd",
    "faceledger.models.align",
    "faceledger.models.arcface",
    "faceledger.models.graph",
    "faceledger.models.dlib_pack",
)
"""Modules whose code decides what embedding an image file gives."""
WRITE_BATCH = 256


@dataclass(frozen=True, slots=True)
class ImageEmbedding:
    """What embedding one image gave: its vector ``(dim,)`` float32 L2-normalised, or why not.

    ``faces`` is the number of faces detected (1 for aligned and centre crops); ``error``
    is the error code of an image that could not be read, ``None`` otherwise.
    """

    embedding: FloatArray | None
    faces: int
    error: str | None = None


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes.

    Raises:
        InvalidArgument: the file cannot be read.
    """
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror}") from exc
    return digest.hexdigest()


@cache
def pipeline_code_version() -> str:
    """Hash of the source of :data:`PIPELINE_MODULES` (12 hex digits)."""
    digest = hashlib.sha256()
    for name in PIPELINE_MODULES:
        origin = importlib.util.find_spec(name)
        if origin is None or origin.origin is None:
            raise InvalidArgument(f"cannot find the source of {name}")
        digest.update(Path(origin.origin).read_bytes())
    return digest.hexdigest()[:12]


def mode_key(engine: Engine, mode: Mode) -> str:
    """The cache key of a mode: the pipeline code's version and, for detected embeddings,
    the detector settings."""
    code = f"code{pipeline_code_version()}"
    if mode == "detected":
        return f"detected/min{engine.min_face_size:g}/cap{engine.detector_input_cap}/{code}"
    return f"{mode}/{code}"


class EmbeddingCache:
    """Embeddings of one model (``model_id``) in ``root/<model_id>.sqlite``.

    Only the thread that opened it may use it; the engine's worker threads compute and
    this thread stores. With a ``remote`` (e.g. :class:`faceledger.batch.evaluation.
    RayImageEmbedder`), :func:`embed_images` has the images it lacks embedded there.
    """

    def __init__(self, root: Path, model_id: str, *, remote: RemoteEmbedder | None = None) -> None:
        self.model_id = model_id
        self.remote = remote
        safe = re.sub(r"[^A-Za-z0-9_.@-]+", "_", model_id)
        self.path = root / f"{safe}.sqlite"
        try:
            root.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS embeddings (sha256 TEXT NOT NULL, mode TEXT NOT NULL,"
                " faces INTEGER NOT NULL, embedding BLOB, PRIMARY KEY (sha256, mode))"
            )
            self._db.commit()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"embedding cache {self.path} is unusable: {exc}") from exc

    def __len__(self) -> int:
        (n,) = self._db.execute("SELECT COUNT(*) FROM embeddings").fetchone()
        return int(n)

    def get(self, digests: Sequence[str], mode: str, dim: int) -> dict[str, ImageEmbedding]:
        """Cached results for the digests found (rows of another dimension are ignored)."""
        found: dict[str, ImageEmbedding] = {}
        unique = sorted(set(digests))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT sha256, faces, embedding FROM embeddings "
                f"WHERE mode = ? AND sha256 IN ({marks})",
                [mode, *chunk],
            )
            for sha, faces, blob in rows:
                if blob is None:
                    found[sha] = ImageEmbedding(None, int(faces))
                elif len(blob) == dim * 4:
                    found[sha] = ImageEmbedding(np.frombuffer(blob, dtype=np.float32), int(faces))
        return found

    def put(self, mode: str, results: dict[str, ImageEmbedding]) -> None:
        """Store results (those with a read error are skipped)."""
        rows = [
            (sha, mode, r.faces, None if r.embedding is None else r.embedding.tobytes())
            for sha, r in results.items()
            if r.error is None
        ]
        try:
            self._db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)", rows)
            self._db.commit()
        except sqlite3.Error as exc:
            raise StoreError(f"embedding cache {self.path} is unusable: {exc}") from exc

    def close(self) -> None:
        self._db.close()


@dataclass(frozen=True, slots=True)
class ImageTask:
    """One image the cache lacks: its path and the SHA-256 its bytes had when listed."""

    path: str
    sha256: str


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """What one image contributes to the cache: its key (``sha256``, ``mode``) and result.

    ``sha256`` is the digest of the bytes that were embedded (``None`` when the file could
    not be read) and ``mode`` the :func:`mode_key` of the process that embedded them, so an
    entry made on another node is stored under what it really is.
    """

    sha256: str | None
    mode: str
    result: ImageEmbedding


def embed_image(engine: Engine, path: Path, *, mode: Mode) -> CacheEntry:
    """Read one image file once, hash and embed its bytes as ``mode`` says: its cache entry.

    The one per-image step of :func:`embed_images`, whether it runs here or in a worker
    on another machine. A read or decoding error is kept as the result's ``error`` code.
    """
    key = mode_key(engine, mode)
    try:
        data = path.read_bytes()
    except OSError:
        return CacheEntry(None, key, ImageEmbedding(None, 0, "unreadable"))
    sha = hashlib.sha256(data).hexdigest()
    try:
        if mode == "aligned":
            result = ImageEmbedding(engine.embed_aligned([data])[0], 1)
        elif mode == "center":
            result = ImageEmbedding(engine.embed_center(data).embedding, 1)
        else:
            faces = engine.embed(data)
            result = ImageEmbedding(faces[0].embedding if faces else None, len(faces))
    except FaceledgerError as exc:
        result = ImageEmbedding(None, 0, exc.code)
    return CacheEntry(sha, key, result)


Batches = Iterator[tuple[list[ImageTask], list[CacheEntry]]]
"""Tasks with their entries in task order, a batch at a time as batches finish."""


class RemoteEmbedder(Protocol):
    """Computes the entries of images the cache lacks somewhere else (a Ray cluster)."""

    def embed(self, tasks: Sequence[ImageTask], *, mode: Mode) -> Batches:
        """Each batch of ``tasks`` with its entries (made by :func:`embed_image`), any order."""
        ...


def _embed_here(engine: Engine, tasks: Sequence[ImageTask], mode: Mode) -> Batches:
    """One image a batch, on the engine's threads (the caller groups its cache writes)."""
    entries = engine.map(lambda t: embed_image(engine, Path(t.path), mode=mode), tasks)
    for task, entry in zip(tasks, entries, strict=True):
        yield [task], [entry]


def embed_images(
    engine: Engine,
    paths: Sequence[Path],
    *,
    mode: Mode,
    cache: EmbeddingCache | None = None,
    progress: Progress | None = None,
) -> list[ImageEmbedding]:
    """Embed each image once per content and mode, reading cached results where present.

    Identical files are embedded once. The images the cache lacks are embedded by the
    cache's :attr:`~EmbeddingCache.remote` when it has one, else by ``engine`` here, and
    stored a batch at a time as they finish, so a run that stops part way resumes from
    the cache. ``progress(done, total)`` counts images.

    Raises:
        StoreError: the cache holds another model.
        ModelError: a remote entry was made with other detector settings or pipeline code.
    """
    if cache is not None and cache.model_id != engine.model_id:
        raise StoreError(f"cache holds {cache.model_id}, engine is {engine.model_id}")
    total = len(paths)
    digests = list(engine.map(file_sha256, paths))
    key = mode_key(engine, mode)
    known = cache.get(digests, key, engine.pack.embedding_dim) if cache is not None else {}
    todo: dict[str, Path] = {}
    for sha, path in zip(digests, paths, strict=True):
        if sha not in known:
            todo.setdefault(sha, path)
    done = total - sum(1 for sha in digests if sha in todo)
    if progress:
        progress(done, total)
    waiting = Counter(digests)
    tasks = [ImageTask(str(path), sha) for sha, path in todo.items()]
    remote = cache.remote if cache is not None else None
    if remote is not None and tasks:
        batches, write_every = remote.embed(tasks, mode=mode), 1  # each batch as it arrives
    else:
        batches, write_every = _embed_here(engine, tasks, mode), WRITE_BATCH
    fresh: dict[str, ImageEmbedding] = {}
    for batch, entries in batches:
        for task, entry in zip(batch, entries, strict=True):
            if entry.mode != key:
                raise ModelError(
                    f"{task.path} was embedded as {entry.mode}, here it is {key}: run the same "
                    "faceledger version and settings on every node"
                )
            result = entry.result
            if entry.sha256 is not None and entry.sha256 != task.sha256:
                result = ImageEmbedding(None, 0, "changed")  # not the bytes hashed here
            if entry.sha256 is not None and entry.result.error is None:
                fresh[entry.sha256] = entry.result
            known[task.sha256] = result
            done += waiting[task.sha256]
        if cache is not None and len(fresh) >= write_every:
            cache.put(key, fresh)
            fresh = {}
        if progress:
            progress(done, total)
    if cache is not None and fresh:
        cache.put(key, fresh)
    return [known[sha] for sha in digests]
