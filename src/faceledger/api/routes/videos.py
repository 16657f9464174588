"""Video indexing as asynchronous jobs: upload a video, then poll the job for its index.

Jobs run one at a time on a background thread; a failing job is marked failed and never
stops the server. Uploads are written under ``DATA/tmp/`` and deleted once indexed.
"""

from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request, status
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from faceledger.api.deps import SearcherKey, ServiceDep, actor_of
from faceledger.errors import FaceledgerError, InvalidArgument, NotFound
from faceledger.ledger.audit import Actor
from faceledger.ledger.keys import ApiKey, Role
from faceledger.service import FaceService
from faceledger.video import IndexOptions, TextReader, check_request, index_video

log = logging.getLogger("faceledger.api.videos")
KEEP_FINISHED = 100
JOB_TIME_BUDGET = 1800.0
"""Seconds of decoding a job may take before the rest of its video is reported unread."""
VIDEO_BODY = {
    "requestBody": {
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "video/mp4": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"video": {"type": "string", "format": "binary"}},
                    "required": ["video"],
                }
            },
        },
        "required": True,
    }
}
Status = Literal["queued", "running", "done", "failed"]


class JobAccepted(BaseModel):
    """A queued job's id, to poll at ``GET /v1/videos/{job}``."""

    job: str


class JobPublic(BaseModel):
    """A video job as its submitter sees it."""

    job: str
    status: Status
    progress: float
    """Percentage of the video's sampled frames analysed."""
    collection: str
    created_at: datetime
    finished_at: datetime | None
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    """Why the job failed, or what part of the video could not be read."""


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
    status: Status = "queued"
    progress: float = 0.0
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class VideoJobs:
    """A queue of indexing jobs run one at a time on a background thread."""

    def __init__(self, service: FaceService) -> None:
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

    def get(self, job_id: str, key: ApiKey) -> Job:
        """A job of this key (an admin sees every job)."""
        job = self._jobs.get(job_id)
        if job is None or (key.role != Role.ADMIN and job.key_id != key.id):
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
            outcome: Status = "failed"
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
        index = index_video(
            self.service,
            job.collection,
            job.path,
            options=job.options,
            purpose=job.purpose,
            case_ref=job.case_ref,
            actor=job.actor,
            progress=progress,
            text_reader=self._text_reader,
        )
        job.result = jsonable_encoder(index)
        job.error = index.error
        job.progress = 100.0


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the job worker on the app's service; stop it before the service closes."""
    jobs = VideoJobs(app.state.service)
    app.state.video_jobs = jobs
    try:
        yield
    finally:
        await run_in_threadpool(jobs.close)


router = APIRouter(tags=["videos"], lifespan=lifespan)


def _public(job: Job) -> JobPublic:
    return JobPublic(
        job=job.id,
        status=job.status,
        progress=job.progress,
        collection=job.collection,
        created_at=job.created_at,
        finished_at=job.finished_at,
        result=job.result,
        error=job.error,
    )


async def _save_upload(request: Request, directory: Path) -> Path:
    """Stream the raw body or the multipart field ``video`` into a file in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, prefix="video-", suffix=".upload")
    path, size = Path(name), 0
    try:
        with os.fdopen(fd, "wb") as fh:
            if request.headers.get("content-type", "").startswith("multipart/form-data"):
                form = await request.form(max_files=1, max_fields=10)
                upload = form.get("video")
                if not isinstance(upload, UploadFile):
                    raise InvalidArgument("multipart upload needs a file field named 'video'")
                while chunk := await upload.read(1 << 20):
                    size += await run_in_threadpool(fh.write, chunk)
                await form.close()
            else:
                async for chunk in request.stream():
                    size += await run_in_threadpool(fh.write, chunk)
        if size == 0:
            raise InvalidArgument("the request has no video")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


@router.post(
    "/v1/videos",
    response_model=JobAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra=VIDEO_BODY,
)
async def submit_video(
    request: Request,
    service: ServiceDep,
    key: SearcherKey,
    collection: Annotated[str, Query(min_length=1, description="Collection to identify against.")],
    purpose: Annotated[str | None, Query(max_length=1024, description="Why (required).")] = None,
    case: Annotated[str | None, Query(max_length=256, description="Case reference.")] = None,
    fps: Annotated[float, Query(gt=0, le=120, description="Frames sampled per second.")] = 4.0,
    every_frame: Annotated[bool, Query(description="Analyse every frame.")] = False,
    ocr: Annotated[bool, Query(description="Read the text on screen.")] = True,
    max_fmr: Annotated[float, Query(gt=0, lt=1, description="Largest false match rate.")] = 1e-4,
) -> JobAccepted:
    """Queue a video for indexing (raw body or multipart field ``video``); poll the job."""
    await run_in_threadpool(check_request, service, collection, purpose)
    path = await _save_upload(request, service.settings.data / "tmp")
    job = Job(
        id=uuid.uuid4().hex,
        key_id=key.id,
        collection=collection,
        path=path,
        options=IndexOptions(
            fps=None if every_frame else fps,
            ocr=ocr,
            max_fmr=max_fmr,
            time_budget=JOB_TIME_BUDGET,
        ),
        purpose=purpose,
        case_ref=case,
        actor=actor_of(key),
    )
    jobs: VideoJobs = request.app.state.video_jobs
    jobs.submit(job)
    return JobAccepted(job=job.id)


@router.get("/v1/videos/{job}", response_model=JobPublic)
def get_video_job(job: str, request: Request, key: SearcherKey) -> JobPublic:
    """A video job: status, progress percentage, and the index or the error."""
    jobs: VideoJobs = request.app.state.video_jobs
    return _public(jobs.get(job, key))
