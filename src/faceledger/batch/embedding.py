"""Enrolment images embedded on a Ray cluster: one engine per worker actor, loaded once.

:class:`RayEmbedder` is the :class:`~faceledger.batch.types.Embedder` the service's
``enroll_folder`` takes. It starts one :class:`EmbedWorker` actor per CPU of the cluster,
keeps two chunks in flight per worker, and yields each chunk's results as it finishes;
the service stores each finished chunk in one audited transaction. A worker that dies is
restarted by Ray and its unfinished chunks run again on it (``RETRY_FOREVER``): results
reach the driver once per chunk, so a killed worker loses and duplicates nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from faceledger.batch.cluster import NAMESPACE, RETRY_FOREVER, connected, worker_count
from faceledger.batch.types import EmbeddedImage, EngineSpec, ImageJob, enrolment_faces
from faceledger.errors import FaceledgerError

C = TypeVar("C")

IN_FLIGHT = 2
"""Chunks queued per worker: one running, one waiting, so a worker never idles on the
driver's round trip while the driver's memory holds at most this many chunks per worker."""


@dataclass(frozen=True, slots=True)
class EmbeddedChunk:
    """A worker's results for one chunk, in job order, and the process that made them."""

    worker_pid: int
    images: list[EmbeddedImage]


class EmbedWorker:
    """A Ray actor: one engine, built once when the actor (re)starts."""

    def __init__(self, spec: EngineSpec) -> None:
        self.engine = spec.build(workers=1)

    def embed(self, jobs: list[ImageJob], aligned: bool) -> EmbeddedChunk:
        images = [
            enrolment_faces(self.engine, j.source, j.data, sha256=j.image_sha256, aligned=aligned)
            for j in jobs
        ]
        return EmbeddedChunk(os.getpid(), images)


@dataclass
class ClusterReport:
    """What a run did on the cluster: workers started, tasks (chunks of images, or videos) and
    items (images, or videos) done, and the worker processes that did them.

    More ``worker_pids`` than ``workers`` means a worker died and was restarted mid-run.
    """

    workers: int = 0
    tasks: int = 0
    items: int = 0
    worker_pids: set[int] = field(default_factory=set)


@dataclass
class RayEmbedder:
    """Embeds enrolment chunks on the Ray cluster at ``address`` (``HOST:PORT``)."""

    address: str
    workers: int | None = None
    """Worker actors to start (default: one per CPU of the cluster)."""
    report: ClusterReport = field(default_factory=ClusterReport)

    def embed(
        self, spec: EngineSpec, chunks: Iterable[list[ImageJob]], *, aligned: bool
    ) -> Iterator[tuple[list[ImageJob], list[EmbeddedImage]]]:
        """Each chunk with its results in job order, as chunks finish.

        Raises:
            InvalidArgument: no cluster at the address, or Ray is not installed.
            FaceledgerError: a worker cannot start (e.g. other model weights on its node).
        """
        with connected(self.address) as ray:
            n = worker_count(ray, self.workers)
            self.report.workers = n
            actors = start_workers(ray, EmbedWorker, n, "embed", spec)
            try:
                yield from self._run(ray, actors, iter(chunks), aligned)
            finally:
                for actor in actors:
                    ray.kill(actor)

    def _run(
        self, ray: Any, actors: list[Any], chunks: Iterator[list[ImageJob]], aligned: bool
    ) -> Iterator[tuple[list[ImageJob], list[EmbeddedImage]]]:
        def call(actor: Any, jobs: list[ImageJob]) -> Any:
            return actor.embed.remote(jobs, aligned)

        for jobs, result in dispatch(ray, actors, call, (c for c in chunks if c)):
            chunk: EmbeddedChunk = result
            self.report.tasks += 1
            self.report.items += len(jobs)
            self.report.worker_pids.add(chunk.worker_pid)
            yield jobs, chunk.images


def dispatch(
    ray: Any, actors: list[Any], call: Callable[[Any, C], Any], chunks: Iterator[C]
) -> Iterator[tuple[C, Any]]:
    """Each chunk with its worker's result, as chunks finish.

    ``call(actor, chunk)`` submits one chunk (returns its object ref); chunks go to the
    least loaded actor, :data:`IN_FLIGHT` per actor at most, pulled from ``chunks`` lazily.
    """
    load = [0] * len(actors)
    pending: dict[Any, tuple[int, C]] = {}
    more = True
    while True:
        while more and len(pending) < IN_FLIGHT * len(actors):
            chunk = next(chunks, None)
            if chunk is None:
                more = False
                break
            i = min(range(len(actors)), key=load.__getitem__)
            pending[call(actors[i], chunk)] = (i, chunk)
            load[i] += 1
        if not pending:
            return
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            i, chunk = pending.pop(ref)
            load[i] -= 1
            yield chunk, get_result(ray, ref)


def start_workers(ray: Any, cls: type, n: int, kind: str, *args: Any) -> list[Any]:
    """``n`` restartable actors of ``cls`` (one CPU each), named ``<job>-<kind>-<i>``."""
    job = ray.get_runtime_context().get_job_id()
    actor = ray.remote(num_cpus=1, max_restarts=RETRY_FOREVER, max_task_retries=RETRY_FOREVER)(cls)
    return [
        actor.options(name=f"{job}-{kind}-{i}", namespace=NAMESPACE).remote(*args) for i in range(n)
    ]


def get_result(ray: Any, ref: Any) -> Any:
    """``ray.get(ref)``, with Ray's own failures translated into a faceledger error."""
    try:
        return ray.get(ref)
    except FaceledgerError:  # raised by our code in the worker: already one of ours
        raise
    except ray.exceptions.RayError as exc:  # a worker that cannot start, or the cluster gone
        raise FaceledgerError(f"the Ray cluster failed this batch: {exc}") from exc
