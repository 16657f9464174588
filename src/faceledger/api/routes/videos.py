"""Video indexing as asynchronous jobs: upload a video (or audio file), then poll the job.

The jobs themselves run, and are kept, in the service layer (:mod:`faceledger.service.jobs`);
this module only receives uploads (under ``DATA/tmp/`` until accepted) and shows, retries,
cancels and deletes jobs.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from faceledger.api.deps import SearcherKey, ServiceDep, actor_of
from faceledger.config import Settings
from faceledger.errors import InvalidArgument, StorageFull, VideoError
from faceledger.ledger.keys import ApiKey, Role
from faceledger.service.jobs import JobRecord, JobStatus, VideoJobs
from faceledger.service.webhooks import Webhook
from faceledger.store.mediatypes import MAX_FILE_NAME, check_file_name
from faceledger.video import IndexOptions
from faceledger.video.reader import check_media_limits, probe_streams

MEDIA_TYPES = (
    "video/mp4",
    "video/x-matroska",
    "video/webm",
    "video/quicktime",
    "audio/flac",
    "audio/mpeg",
    "audio/wav",
    "audio/mp4",
    "audio/ogg",
)
"""Raw-body content types documented for uploads (any type is read: FFmpeg sniffs it)."""
JOB_TIME_BUDGET = 1800.0
"""Seconds of decoding a job may take before the rest of its video is reported unread."""
QUOTA_RETRY_SECONDS = 60
"""``Retry-After`` of a 507 ``storage_full``: queued jobs free their uploads as they end."""
VIDEO_BODY = {
    "requestBody": {
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            **{kind: {"schema": {"type": "string", "format": "binary"}} for kind in MEDIA_TYPES},
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


class JobAccepted(BaseModel):
    """A queued job's id, to poll at ``GET /v1/videos/{job}``."""

    job: str
    webhook_secret: str | None = None
    """With ``webhook``: the secret its deliveries are signed with, shown this once."""


class WebhookPublic(BaseModel):
    """A job's webhook and its last delivery (never the secret)."""

    url: str
    delivered: bool | None = None
    """None until the job has ended and a delivery was tried."""
    status: int | None = None
    attempts: int = 0
    error: str | None = None
    at: str | None = None


class JobPublic(BaseModel):
    """A video job as its submitter sees it."""

    job: str
    status: JobStatus
    progress: float
    """Percentage done over the passes (sampled frames, then seconds of speech)."""
    collection: str
    file_name: str | None = None
    """The video's name as submitted (``name``, or the multipart field's file name)."""
    created_at: datetime
    finished_at: datetime | None
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    """Why the job failed, or what part of the video could not be read."""
    webhook: WebhookPublic | None = None


router = APIRouter(tags=["videos"])


def _public(job: JobRecord) -> JobPublic:
    return JobPublic(
        job=job.id,
        status=job.status,
        progress=job.progress,
        collection=job.collection,
        file_name=job.file_name,
        created_at=job.created_at,
        finished_at=job.finished_at,
        result=job.result,
        error=job.error,
        webhook=(
            None
            if job.webhook is None
            else WebhookPublic(**{k: v for k, v in job.webhook.items() if k != "secret"})
        ),
    )


def _jobs(request: Request) -> VideoJobs:
    jobs: VideoJobs = request.app.state.video_jobs
    return jobs


def _owner(key: ApiKey) -> str | None:
    """Whose jobs a key sees: its own, or every job for an administrator."""
    return None if key.role == Role.ADMIN else key.id


def _uploads_bytes(settings: Settings) -> int:
    """Bytes of the uploads held now: being received (``DATA/tmp``) and kept for jobs."""
    total = 0
    for folder in (settings.data / "tmp", settings.data / "jobs"):
        if folder.is_dir():
            for entry in folder.iterdir():
                try:
                    if entry.is_file():
                        total += entry.stat().st_size
                except FileNotFoundError:  # a job ended and removed its upload meanwhile
                    continue
    return total


class _Quota:
    """The room under ``MAX_UPLOAD_DISK_BYTES`` for one upload, given what others hold.

    What the other uploads hold is measured from the folders when the upload starts and
    again after every ``RESCAN_BYTES`` written, so uploads received at the same time see
    each other's bytes (overshoot is bounded by that much per concurrent upload).
    """

    RESCAN_BYTES = 1 << 20

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.quota = settings.max_upload_disk_bytes
        self.others = 0
        self.seen = 0
        """This upload's bytes written when the folders were last measured."""

    async def measure(self, written: int) -> None:
        """Measure the folders; ``written`` bytes of them are this upload's own."""
        if self.quota > 0:
            held = await run_in_threadpool(_uploads_bytes, self.settings)
            self.others, self.seen = max(0, held - written), written

    async def check(self, written: int, more: int) -> None:
        """Refuse if ``more`` bytes after ``written`` would not fit (0: no quota).

        Raises:
            StorageFull: with ``retry_after`` seconds (HTTP 507).
        """
        if self.quota <= 0:
            return
        if written - self.seen >= self.RESCAN_BYTES:
            await self.measure(written)
        if self.others + written + more > self.quota:
            raise StorageFull(
                f"uploads would exceed the disk quota (MAX_UPLOAD_DISK_BYTES {self.quota}, "
                f"{self.others} bytes held): retry when queued jobs have finished",
                retry_after=QUOTA_RETRY_SECONDS,
            )


async def _save_upload(
    request: Request, directory: Path, *, name: str | None, quota: _Quota
) -> tuple[Path, str | None]:
    """Stream the raw body or the multipart field ``video`` into a file in ``directory``.

    The upload must fit in ``quota``: checked against ``Content-Length`` before anything
    is written, then as each chunk arrives; a refused upload leaves no file.

    Returns the file and the video's name: ``name``, else the multipart field's file name
    (checked: a plain file name), else None.
    """
    declared = request.headers.get("content-length", "")
    await quota.measure(0)
    if declared.isdigit():
        await quota.check(0, int(declared))
    directory.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix="video-", suffix=".upload")
    path, size = Path(temporary), 0
    try:
        with os.fdopen(fd, "wb") as fh:
            if request.headers.get("content-type", "").startswith("multipart/form-data"):
                form = await request.form(max_files=1, max_fields=10)
                upload = form.get("video")
                if not isinstance(upload, UploadFile):
                    raise InvalidArgument("multipart upload needs a file field named 'video'")
                while chunk := await upload.read(1 << 20):
                    await quota.check(size, len(chunk))
                    size += await run_in_threadpool(fh.write, chunk)
                await form.close()
                if name is None and upload.filename:
                    name = check_file_name(upload.filename)
            else:
                async for chunk in request.stream():
                    await quota.check(size, len(chunk))
                    size += await run_in_threadpool(fh.write, chunk)
        if size == 0:
            raise InvalidArgument("the request has no video")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, name


def _check_headers(path: Path, settings: Settings) -> None:
    """Refuse (and remove) an upload whose headers claim frames or a duration over the caps.

    A file FFmpeg cannot open is left to the job, which reports why it could not be read.

    Raises:
        VideoTooLarge: over ``MAX_VIDEO_PIXELS`` or ``MAX_VIDEO_SECONDS`` (HTTP 413).
    """
    try:
        streams = probe_streams(path)
    except VideoError:
        return
    try:
        check_media_limits(
            streams,
            max_pixels=settings.max_video_pixels,
            max_seconds=settings.max_video_seconds,
        )
    except VideoError:
        path.unlink(missing_ok=True)
        raise


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
    speech: Annotated[bool, Query(description="Transcribe and translate the speech.")] = True,
    hotwords: Annotated[
        str | None, Query(max_length=1024, description="Words to expect in the speech.")
    ] = None,
    max_fmr: Annotated[float, Query(gt=0, lt=1, description="Largest false match rate.")] = 1e-4,
    webhook: Annotated[
        str | None,
        Query(
            max_length=2048,
            description="http(s) URL to POST to when the job ends, signed with the "
            "webhook_secret of the answer (X-Faceledger-Signature).",
        ),
    ] = None,
    name: Annotated[
        str | None,
        Query(
            max_length=MAX_FILE_NAME,
            description="The video's file name in the media index (a plain file name; "
            "default: the multipart field's file name).",
        ),
    ] = None,
) -> JobAccepted:
    """Queue a video or audio file for indexing (raw body or multipart field ``video``);
    poll the job. The index holds people, on-screen text and the speech transcript."""
    await run_in_threadpool(service.check_video_request, collection, purpose)
    file_name = None if name is None else check_file_name(name)  # before the upload
    hook = None if webhook is None else Webhook.new(webhook)  # checked before the upload
    await run_in_threadpool(_jobs(request).check_queue, key.id)  # before the upload is kept
    settings = service.settings
    quota = _Quota(settings)
    path, file_name = await _save_upload(
        request, settings.data / "tmp", name=file_name, quota=quota
    )
    await run_in_threadpool(_check_headers, path, settings)  # before the job is queued
    options = IndexOptions(
        fps=None if every_frame else fps,
        ocr=ocr,
        max_fmr=max_fmr,
        time_budget=JOB_TIME_BUDGET,
        speech=speech,
        hotwords=hotwords or None,
        max_pixels=settings.max_video_pixels or None,
        max_seconds=settings.max_video_seconds or None,
    )
    job = await run_in_threadpool(
        partial(
            _jobs(request).submit,
            path,
            key_id=key.id,
            collection=collection,
            options=options,
            purpose=purpose,
            case_ref=case,
            actor=actor_of(key),
            webhook=hook,
            file_name=file_name,
        )
    )
    return JobAccepted(job=job.id, webhook_secret=None if hook is None else hook.secret)


@router.get("/v1/videos", response_model=list[JobPublic])
def list_video_jobs(
    request: Request,
    key: SearcherKey,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[JobPublic]:
    """Video jobs, newest first: the key's own (every job for an admin)."""
    jobs = _jobs(request).list(key_id=_owner(key), offset=offset, limit=limit)
    return [_public(j) for j in jobs]


@router.get("/v1/videos/{job}", response_model=JobPublic)
def get_video_job(job: str, request: Request, key: SearcherKey) -> JobPublic:
    """A video job: status, progress percentage, and the index or the error."""
    return _public(_jobs(request).get(job, key_id=_owner(key)))


@router.post("/v1/videos/{job}/retry", response_model=JobPublic)
def retry_video_job(job: str, request: Request, key: SearcherKey) -> JobPublic:
    """Queue a failed or interrupted job again."""
    return _public(_jobs(request).retry(job, key_id=_owner(key)))


@router.post("/v1/videos/{job}/cancel", response_model=JobPublic)
def cancel_video_job(job: str, request: Request, key: SearcherKey) -> JobPublic:
    """Cancel a queued or running job (a running one stops at its next frame)."""
    return _public(_jobs(request).cancel(job, key_id=_owner(key)))


@router.delete("/v1/videos/{job}", status_code=status.HTTP_204_NO_CONTENT)
def delete_video_job(job: str, request: Request, key: SearcherKey) -> None:
    """Delete a job that is not running, with its result and its video."""
    _jobs(request).delete(job, key_id=_owner(key))
