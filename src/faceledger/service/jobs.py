"""Video jobs: indexing runs in the background, one job at a time, kept in the database.

A job's upload is moved to ``DATA/jobs/<id>.video`` when it is submitted and deleted when
the job is done (unless ``KEEP_VIDEOS``: then the console can play it), cancelled or
deleted (a failed or interrupted job keeps it, to be retried). Jobs survive a restart: a
job that was running when the process died is marked ``interrupted``; queued jobs run
once the server is back. A failing job is marked failed and never stops the server.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from faceledger.errors import Conflict, FaceledgerError, RateLimited
from faceledger.ledger.audit import Actor
from faceledger.service.media import MediaOps
from faceledger.service.webhooks import Delivery, Webhook, deliver
from faceledger.store.jobs import JobRecord, JobStatus, JobStore
from faceledger.store.mediatypes import check_file_name

if TYPE_CHECKING:
    from faceledger.video import IndexOptions, TextReader

log = logging.getLogger("faceledger.jobs")
POLL_SECONDS = 1.0
QUEUE_RETRY_SECONDS = 10
"""How often an idle runner looks for queued jobs (a submission wakes it at once)."""

__all__ = ["JobRecord", "JobStatus", "VideoJobs"]


class _Cancelled(Exception):
    pass


class VideoJobs:
    """Submits, runs and manages video jobs over one service."""

    def __init__(self, service: MediaOps, *, start: bool = True) -> None:
        self.service = service
        self.store = JobStore(service.store.engine)
        self.directory = service.settings.data / "jobs"
        self.directory.mkdir(parents=True, exist_ok=True)
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._text_reader: TextReader | None = None
        for job_id in self.store.interrupt_running():
            log.warning("video job %s was interrupted by a restart", job_id)
        self._sweep(service.settings.data / "tmp")
        self._thread = threading.Thread(
            target=self._work, name="faceledger-video-jobs", daemon=True
        )
        if start:
            self._thread.start()

    def _sweep(self, tmp: Path) -> None:
        """At start: remove uploads a dead process left half-written in ``DATA/tmp`` and
        upload files in ``DATA/jobs`` no job refers to (the folder has one owner, so
        nothing else is writing them)."""
        freed = 0
        if tmp.is_dir():
            for left in tmp.iterdir():
                if left.is_file():
                    freed += left.stat().st_size
                    left.unlink(missing_ok=True)
        kept = {Path(p).name for p in self.store.paths()}
        for upload in self.directory.glob("*.video"):
            if upload.name not in kept:
                freed += upload.stat().st_size
                upload.unlink(missing_ok=True)
        if freed:
            log.warning("removed %d bytes of uploads left by a stopped server", freed)

    # -- what the fronts call --------------------------------------------------------------
    def check_queue(self, key_id: str) -> None:
        """Refuse a key that already has ``MAX_QUEUED_VIDEOS`` jobs queued or running.

        Raises:
            RateLimited: with ``retry_after`` seconds (HTTP 429).
        """
        cap = self.service.settings.max_queued_videos
        if cap <= 0:
            return
        waiting = sum(
            1
            for job in self.store.page(key_id=key_id, limit=cap + 100)
            if job.status in ("queued", "running")
        )
        if waiting >= cap:
            raise RateLimited(
                f"this key has {waiting} video jobs queued or running (MAX_QUEUED_VIDEOS "
                f"{cap}): wait for one to finish",
                retry_after=QUEUE_RETRY_SECONDS,
            )

    def submit(
        self,
        upload: Path,
        *,
        key_id: str,
        collection: str,
        options: IndexOptions,
        purpose: str | None,
        case_ref: str | None,
        actor: Actor,
        webhook: Webhook | None = None,
        file_name: str | None = None,
    ) -> JobRecord:
        """Queue ``upload`` (moved into the jobs folder) for indexing against ``collection``.

        With ``webhook``, the job's end (done or failed) is announced by a signed POST to
        its URL (:mod:`faceledger.service.webhooks`). ``file_name`` (a plain file name, as
        the user calls the video) names it in the media index; without it the upload's
        name in the jobs folder (``<job>.video``) does.

        Raises:
            InvalidArgument: ``file_name`` is not a plain file name.
        """
        self.service.check_video_request(collection, purpose)
        name = None if file_name is None else check_file_name(file_name)
        job_id = uuid.uuid4().hex
        path = self.directory / f"{job_id}.video"
        os.replace(upload, path)
        job = JobRecord(
            id=job_id,
            key_id=key_id,
            collection=collection,
            path=str(path),
            options=asdict(options),
            purpose=purpose,
            case_ref=case_ref,
            actor={"key_id": actor.key_id, "role": actor.role, "name": actor.name},
            webhook=None if webhook is None else {"url": webhook.url, "secret": webhook.secret},
            file_name=name,
        )
        try:
            self.store.add(job)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        self._wake.set()
        return job

    def get(self, job_id: str, *, key_id: str | None) -> JobRecord:
        """A job, if ``key_id`` submitted it (``None``: any job, for an administrator)."""
        return self.store.get(job_id, key_id=key_id)

    def list(self, *, key_id: str | None, offset: int = 0, limit: int = 100) -> list[JobRecord]:
        return self.store.page(key_id=key_id, offset=offset, limit=limit)

    def retry(self, job_id: str, *, key_id: str | None) -> JobRecord:
        """Queue a failed or interrupted job again (its upload is still kept)."""
        job = self.store.get(job_id, key_id=key_id)
        if not Path(job.path).is_file():
            raise Conflict(f"video job {job_id!r} no longer has its video: submit it again")
        job = self.store.requeue(job_id, key_id=key_id)
        self._wake.set()
        return job

    def cancel(self, job_id: str, *, key_id: str | None) -> JobRecord:
        job = self.store.cancel(job_id, key_id=key_id)
        Path(job.path).unlink(missing_ok=True)
        return job

    def delete(self, job_id: str, *, key_id: str | None) -> None:
        job = self.store.delete(job_id, key_id=key_id)
        Path(job.path).unlink(missing_ok=True)

    def close(self) -> None:
        """Stop; a running job notices at its next frame and is left interrupted."""
        self._closing.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    # -- the runner ------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._closing.is_set():
            try:
                job = self.store.claim_next()
            except FaceledgerError:
                log.exception("cannot read the video job queue")
                job = None
            if job is None:
                self._wake.wait(POLL_SECONDS)
                self._wake.clear()
                continue
            self._run_one(job)

    def _run_one(self, job: JobRecord) -> None:
        status: JobStatus = "failed"
        result: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        try:
            with self.store.hold(job.id):  # replicas: a live process runs this job
                result, error = self._index(job)
            status = "done"
        except _Cancelled:
            if self._closing.is_set():  # left for the next start to mark interrupted
                return
            return  # cancelled through the API: already recorded
        except FaceledgerError as exc:
            error = exc.to_dict()
        except Exception:  # a job's failure must never reach the server
            log.exception("video job %s failed", job.id)
            error = {"code": "internal_error", "message": "indexing failed unexpectedly"}
        self.store.finish(job.id, status, result=result, error=error)
        if status == "done" and not self.service.settings.keep_videos:
            Path(job.path).unlink(missing_ok=True)
        if job.webhook is not None:
            threading.Thread(
                target=self._announce,
                args=(job, status, error),
                name=f"faceledger-webhook-{job.id}",
                daemon=True,
            ).start()

    def _announce(self, job: JobRecord, status: JobStatus, error: dict[str, Any] | None) -> None:
        """POST the job's end to its webhook (retried) and keep the outcome with the job."""
        assert job.webhook is not None
        hook = Webhook(str(job.webhook["url"]), str(job.webhook["secret"]))
        payload = {
            "job": job.id,
            "status": status,
            "collection": job.collection,
            "error": None if error is None else error.get("code"),
        }
        try:
            outcome = deliver(hook, "video.finished", payload, stop=self._closing)
        except Exception as exc:  # a webhook must never reach the runner
            log.exception("webhook of video job %s failed", job.id)
            outcome = Delivery(None, 0, f"{type(exc).__name__}: {exc}", "")
        if not outcome.delivered:
            log.warning("webhook of video job %s not delivered: %s", job.id, outcome.error)
        try:
            self.store.set_webhook(
                job.id,
                {
                    **job.webhook,
                    "delivered": outcome.delivered,
                    "status": outcome.status,
                    "attempts": outcome.attempts,
                    "error": outcome.error,
                    "at": outcome.at,
                },
            )
        except FaceledgerError:  # the job may have been deleted meanwhile
            log.warning("webhook outcome of video job %s not recorded", job.id)

    def _index(self, job: JobRecord) -> tuple[dict[str, Any], dict[str, Any] | None]:
        from faceledger.video import IndexOptions, TextReader, VideoIndex

        last = [0.0]

        def progress(done: int, total: int) -> None:
            if self._closing.is_set() or self.store.status(job.id) == "cancelled":
                raise _Cancelled
            percent = round(100.0 * done / max(total, 1), 1)
            if percent - last[0] >= 1.0:
                last[0] = percent
                self.store.set_progress(job.id, percent)

        options = IndexOptions(**job.options)
        if options.ocr and self._text_reader is None:
            self._text_reader = TextReader()
        index = self.service.index_video(
            job.collection,
            job.path,
            options=options,
            purpose=job.purpose,
            case_ref=job.case_ref,
            actor=Actor(**job.actor),
            progress=progress,
            text_reader=self._text_reader,
            file_name=job.file_name,
        )
        return TypeAdapter(VideoIndex).dump_python(index, mode="json"), index.error
