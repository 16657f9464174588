"""Evaluation images embedded on a Ray cluster for the evaluation cache: one engine per actor.

:class:`RayImageEmbedder` is the :class:`~faceledger.eval.cache.RemoteEmbedder` an
:class:`~faceledger.eval.cache.EmbeddingCache` takes: :func:`~faceledger.eval.cache.
embed_images` hands it the images the cache lacks, it sends them to :class:`EvalWorker`
actors in chunks of paths (images are read by path on the workers: the dataset must be
mounted at the same path on every node), each worker runs the same per-image step as a
local run (``step``: the front passes :func:`~faceledger.eval.cache.embed_image`, as batch
never imports the evaluation suite), and each chunk's entries are written into the cache
as the chunk finishes. A worker that dies is restarted and its
unfinished chunks run again (``RETRY_FOREVER``); a driver that dies loses only the chunks
not yet written, and a rerun finds the rest in the cache (keyed by content hash and mode,
so an entry is never stored twice).

The driver connects on the first images it lacks and keeps its workers for the whole
command (``with RayImageEmbedder(...)``), so a command embedding twice (gallery, then
probes) loads the models once per worker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from faceledger.batch.cluster import connected, worker_count
from faceledger.batch.embedding import ClusterReport, dispatch, start_workers
from faceledger.batch.types import EngineSpec
from faceledger.engine import Engine
from faceledger.errors import InvalidArgument

CHUNK = 16
"""Images per task: small enough that a killed worker redoes little and progress moves,
large enough that Ray's per-task cost (about a millisecond) is noise beside 16 embeddings."""


class ImageStep(Protocol):
    """What one image file gives (a cache entry), computed with an engine: ``embed_image``."""

    def __call__(self, engine: Engine, path: Path, *, mode: Any) -> Any: ...


class PathTask(Protocol):
    """An image to embed, named by its path (the same on every node)."""

    @property
    def path(self) -> str: ...


T = TypeVar("T", bound=PathTask)


@dataclass(frozen=True, slots=True)
class EntryChunk:
    """A worker's results for one chunk, in task order, and the process that made them."""

    worker_pid: int
    entries: list[Any]


class EvalWorker:
    """A Ray actor: one engine, built once when the actor (re)starts, and the per-image step."""

    def __init__(self, spec: EngineSpec, step: ImageStep) -> None:
        self.engine = spec.build(workers=1)
        self.step = step

    def embed(self, tasks: list[PathTask], mode: str) -> EntryChunk:
        entries = [self.step(self.engine, Path(t.path), mode=mode) for t in tasks]
        return EntryChunk(os.getpid(), entries)


@dataclass
class RayImageEmbedder(Generic[T]):
    """Embeds the images an evaluation cache lacks on the Ray cluster at ``address``.

    Use it as a context manager: the connection and the workers live until it exits.
    """

    address: str
    spec: EngineSpec
    step: ImageStep
    """The per-image step each worker runs (``faceledger.eval.cache.embed_image``)."""
    workers: int | None = None
    """Worker actors to start (default: one per CPU of the cluster)."""
    chunk: int = CHUNK
    report: ClusterReport = field(default_factory=ClusterReport)
    _stack: ExitStack = field(default_factory=ExitStack, repr=False)
    _ray: Any = field(default=None, repr=False)
    _actors: list[Any] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.chunk < 1:
            raise InvalidArgument("a chunk holds at least one image")

    def __enter__(self) -> RayImageEmbedder[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def embed(self, tasks: Sequence[T], *, mode: str) -> Iterator[tuple[list[T], list[Any]]]:
        """Each chunk of ``tasks`` with its entries in task order, as chunks finish.

        Raises:
            InvalidArgument: no cluster at the address, or Ray is not installed.
            FaceledgerError: a worker cannot start (e.g. other model weights on its node).
        """
        if not tasks:
            return
        ray, actors = self._started()
        chunks = (list(tasks[i : i + self.chunk]) for i in range(0, len(tasks), self.chunk))

        def call(actor: Any, chunk: list[T]) -> Any:
            return actor.embed.remote(chunk, mode)

        for chunk, result in dispatch(ray, actors, call, chunks):
            done: EntryChunk = result
            self.report.tasks += 1
            self.report.items += len(chunk)
            self.report.worker_pids.add(done.worker_pid)
            yield chunk, done.entries

    def _started(self) -> tuple[Any, list[Any]]:
        if self._ray is None:
            ray = self._stack.enter_context(connected(self.address))
            n = worker_count(ray, self.workers)
            actors = start_workers(ray, EvalWorker, n, "evalembed", self.spec, self.step)
            self._stack.callback(_kill, ray, actors)
            self._actors = actors
            self._ray = ray
            self.report.workers = n
        return self._ray, self._actors

    def close(self) -> None:
        """Stop the workers and disconnect (nothing to do if it never connected)."""
        self._ray = None
        self._actors = []
        self._stack.close()


def _kill(ray: Any, actors: list[Any]) -> None:
    for actor in actors:
        ray.kill(actor)
