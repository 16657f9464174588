"""A video archive indexed on a Ray cluster: one task per video, one engine per worker actor.

Workers decode, detect, embed, track and transcribe (``video.index_video``, the local
indexer itself, with the actor's speech model: :mod:`faceledger.batch.speech`); the one
step that needs the database, identifying the finished tracks against the collection,
comes back to the driver through an :class:`IdentifyBroker` actor, so it stays one
audited search per video in the service (``video.identify``) and no worker ever opens
the store. Videos are read by path: the archive folder must be mounted at the same path
on every node.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceledger.batch.cluster import NAMESPACE, connected, worker_count
from faceledger.batch.embedding import ClusterReport, get_result, start_workers
from faceledger.batch.speech import SpeechSpec
from faceledger.batch.types import EngineSpec
from faceledger.errors import FaceledgerError, InvalidArgument
from faceledger.search.ranking import Candidate
from faceledger.types import FloatArray
from faceledger.video.indexer import Identify, IndexOptions, VideoIndex, file_sha256, index_video

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".wmv", ".flv"}
)
"""Files taken from an archive folder as videos (by name; the decoder still checks content)."""

POLL_SECONDS = 0.2
"""How long the driver waits for a finished video before answering identify requests."""

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class VideoOutcome:
    """One video of an archive: its index, or the error that stopped it."""

    path: str
    video_sha256: str
    index: VideoIndex | None = None
    error: dict[str, Any] | None = None


def find_videos(directory: Path) -> list[Path]:
    """Video files under ``directory`` (recursively, sorted), by suffix."""
    return sorted(
        p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
    )


def pending_videos(videos: Sequence[Path], done: set[str]) -> list[tuple[Path, str]]:
    """The videos whose SHA-256 is not in ``done``, with their SHA-256 (each file read once)."""
    out = [(p, file_sha256(p)) for p in videos]
    return [(p, sha) for p, sha in out if sha not in done]


def index_locally(
    videos: Sequence[tuple[Path, str]],
    index_one: Callable[[Path], VideoIndex],
    *,
    on_done: Callable[[VideoOutcome], None],
    progress: Progress | None = None,
) -> None:
    """Index the videos one after another in this process (``index_one`` is the service's)."""
    for n, (path, sha) in enumerate(videos, 1):
        try:
            on_done(VideoOutcome(str(path), sha, index=index_one(path)))
        except FaceledgerError as exc:  # this video only: the archive goes on
            on_done(VideoOutcome(str(path), sha, error=exc.to_dict()))
        if progress:
            progress(n, len(videos))


class IdentifyBroker:
    """A Ray actor relaying each worker's identify call to the driver and its answer back."""

    def __init__(self) -> None:
        self._questions: list[tuple[str, FloatArray, dict[str, Any]]] = []
        self._answers: dict[str, asyncio.Future[list[list[Candidate]]]] = {}

    async def ask(self, templates: FloatArray, about: dict[str, Any]) -> list[list[Candidate]]:
        key = uuid.uuid4().hex
        answer: asyncio.Future[list[list[Candidate]]] = asyncio.get_running_loop().create_future()
        self._answers[key] = answer
        self._questions.append((key, templates, about))
        return await answer

    async def questions(self) -> list[tuple[str, FloatArray, dict[str, Any]]]:
        out, self._questions = self._questions, []
        return out

    async def answer(self, key: str, candidates: list[list[Candidate]]) -> None:
        waiting = self._answers.pop(key, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(candidates)


class VideoWorker:
    """A Ray actor: one engine, OCR reader and speech model built once, a video per call."""

    def __init__(self, spec: EngineSpec, ocr: bool, speech: SpeechSpec | None) -> None:
        from faceledger.video.ocr import TextReader

        self.engine = spec.build(workers=1)
        self.reader = TextReader() if ocr else None
        self.speech = speech.load() if speech is not None else None

    def index(
        self, path: str, collection: str, options: IndexOptions, broker: Any
    ) -> tuple[int, VideoIndex | dict[str, Any]]:
        """The video's index, or its error as data (so it crosses Ray intact)."""
        import ray

        def identify(templates: FloatArray, about: dict[str, Any]) -> list[list[Candidate]]:
            answer: list[list[Candidate]] = ray.get(broker.ask.remote(templates, about))
            return answer

        try:
            found = index_video(
                path,
                engine=self.engine,
                collection=collection,
                identify=identify,
                options=options,
                text_reader=self.reader,
                transcriber=self.speech.transcriber(options.hotwords) if self.speech else None,
            )
        except FaceledgerError as exc:  # this video only: the archive goes on
            return os.getpid(), exc.to_dict()
        return os.getpid(), found


def index_on_ray(
    videos: Sequence[tuple[Path, str]],
    *,
    address: str,
    spec: EngineSpec,
    collection: str,
    options: IndexOptions,
    identify: Identify,
    on_done: Callable[[VideoOutcome], None],
    speech: SpeechSpec | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> ClusterReport:
    """Index each video as one task on a pool of worker actors; identify here, in order asked.

    ``identify`` is the service's audited search; ``on_done`` receives each video as it
    finishes (a worker that dies is restarted and its video indexed again from the start).
    ``speech`` is the model each worker loads once to transcribe (with ``options.speech``).

    Raises:
        InvalidArgument: ``options.speech`` without ``speech``, or no cluster at ``address``.
    """
    if options.speech and speech is None:
        raise InvalidArgument("indexing speech on the cluster needs a speech model spec")
    report = ClusterReport()
    if not videos:
        return report
    with connected(address) as ray:
        n = min(worker_count(ray, workers), len(videos))
        report.workers = n
        job = ray.get_runtime_context().get_job_id()
        broker = (
            ray.remote(num_cpus=0)(IdentifyBroker)
            .options(name=f"{job}-identify", namespace=NAMESPACE)
            .remote()
        )
        actors = start_workers(
            ray, VideoWorker, n, "video", spec, options.ocr, speech if options.speech else None
        )
        try:
            queue = list(videos)
            pending: dict[Any, tuple[int, Path, str]] = {}
            idle = list(range(n))
            finished = 0
            while queue or pending:
                while queue and idle:
                    i = idle.pop()
                    path, sha = queue.pop(0)
                    ref = actors[i].index.remote(str(path), collection, options, broker)
                    pending[ref] = (i, path, sha)
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
                for key, templates, about in ray.get(broker.questions.remote()):
                    ray.get(broker.answer.remote(key, identify(templates, about)))
                for ref in ready:
                    i, path, sha = pending.pop(ref)
                    idle.append(i)
                    pid, found = get_result(ray, ref)
                    report.worker_pids.add(pid)
                    report.tasks += 1
                    report.items += 1
                    if isinstance(found, VideoIndex):
                        on_done(VideoOutcome(str(path), sha, index=found))
                    else:
                        on_done(VideoOutcome(str(path), sha, error=found))
                    finished += 1
                    if progress:
                        progress(finished, len(videos))
        finally:
            for actor in [*actors, broker]:
                ray.kill(actor)
    return report
