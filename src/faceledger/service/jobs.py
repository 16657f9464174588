"""Video jobs: a queue of indexing jobs run one at a time on a background thread.

A failing job is marked failed and never stops the server. Uploads live under
``DATA/tmp/`` and are deleted once indexed.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import TypeAdapter

from faceledger.errors import FaceledgerError, InvalidArgument, NotFound
from faceledger.ledger.audit import Actor
from faceledger.service.media import MediaOps
from faceledger.video import IndexOptions, TextReader, VideoIndex

log = logging.getLogger("faceledger.jobs")
KEEP_FINISHED = 100
JobStatus = Literal["queued", "running", "done", "failed"]
_INDEX_JSON = TypeAdapter(VideoIndex)


@dataclass
class Job:
    """One video to index, and what became of it."""

    id: str
    key_id: str
    collection: str
    path: Path
    options: IndexOptions
    purpose: str | None
    case_ref: str | None
    actor: Actor
    status: JobStatus = "queued"
    progress: float = 0.0
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class VideoJobs:
    """Runs queued jobs one at a time; keeps the last finished ones to be polled."""

    def __init__(self, service: MediaOps) -> None:
        self.service = service
        self._jobs: dict[str, Job] = {}
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._text_reader: TextReader | None = None
        self._thread = threading.Thread(
            target=self._work, name="faceledger-video-jobs", daemon=True
        )
        self._thread.start()

    def submit(self, job: Job) -> None:
        """Queue a job (and forget the oldest finished jobs beyond the last 100)."""
        with self._lock:
            self._jobs[job.id] = job
            finished = [j for j in self._jobs.values() if j.finished_at is not None]
            for old in sorted(finished, key=lambda j: j.created_at)[:-KEEP_FINISHED]:
                del self._jobs[old.id]
        self._queue.put(job)

    def get(self, job_id: str, *, key_id: str | None) -> Job:
        """A job, if ``key_id`` submitted it (``None``: any job, for an administrator)."""
        job = self._jobs.get(job_id)
        if job is None or (key_id is not None and job.key_id != key_id):
            raise NotFound(f"video job {job_id!r} not found")
        return job

    def close(self) -> None:
        """Stop after the running job notices (it is failed as cancelled)."""
        self._closing.set()
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            job.status = "running"
            outcome: JobStatus = "failed"
            try:
                self._run(job)
                outcome = "done"
            except FaceledgerError as exc:
                job.error = exc.to_dict()
            except Exception:  # a job's failure must never reach the server
                log.exception("video job %s failed", job.id)
                job.error = {"code": "internal_error", "message": "indexing failed unexpectedly"}
            finally:
                job.path.unlink(missing_ok=True)
            job.finished_at = datetime.now(UTC)
            job.status = outcome

    def _run(self, job: Job) -> None:
        def progress(done: int, total: int) -> None:
            if self._closing.is_set():
                raise InvalidArgument("the server is shutting down; the job was cancelled")
            job.progress = round(100.0 * done / max(total, 1), 1)

        if job.options.ocr and self._text_reader is None:
            self._text_reader = TextReader()
        index = self.service.index_video(
            job.collection,
            job.path,
            options=job.options,
            purpose=job.purpose,
            case_ref=job.case_ref,
            actor=job.actor,
            progress=progress,
            text_reader=self._text_reader,
        )
        job.result = _INDEX_JSON.dump_python(index, mode="json")
        job.error = index.error
        job.progress = 100.0
