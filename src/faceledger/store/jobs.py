"""Video jobs in the database: submitted, claimed, finished, listed, redacted, deleted.

The job runner of the service layer keeps its queue here, so jobs survive a restart: a
job that was running when the process died is marked ``interrupted`` (and can be retried),
a queued one runs once the server is back. Results that name a person are redacted when
that person is erased (:func:`redact_person`, run in the erasing transaction).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Engine, Row, delete, insert, select, update

from faceledger.errors import Conflict, NotFound
from faceledger.names import normalize
from faceledger.store.db import exclusive, read_transaction, try_lock, write_transaction
from faceledger.store.schema import video_jobs

JobStatus = Literal["queued", "running", "done", "failed", "interrupted", "cancelled"]
FINISHED: tuple[JobStatus, ...] = ("done", "failed", "interrupted", "cancelled")
ERASED_PERSON = "erased person"


@dataclass(frozen=True, slots=True)
class PersonRef:
    """An enrolled person as job results name them."""

    id: int
    name: str


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A video job as stored: what to index, for whom, and what became of it."""

    id: str
    key_id: str
    collection: str
    path: str
    options: dict[str, Any]
    purpose: str | None
    case_ref: str | None
    actor: dict[str, Any]
    status: JobStatus = "queued"
    progress: float = 0.0
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    webhook: dict[str, Any] | None = None
    """URL, signing secret and the last delivery's outcome (None: no webhook)."""
    file_name: str | None = None
    """The video's name as its submitter gave it (None: none given)."""


REPLICA_CLAIM_WINDOW = 100
"""Queued jobs a replica looks through for one whose upload it can read."""


def job_lock(job_id: str) -> int:
    """The advisory lock key of a job (56 bits of its id's SHA-256)."""
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:7], "big")


class JobStore:
    """The ``video_jobs`` table."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, job: JobRecord) -> None:
        with write_transaction(self._engine) as conn:
            conn.execute(insert(video_jobs).values(**_values(job)))

    def get(self, job_id: str, *, key_id: str | None = None) -> JobRecord:
        """A job, if ``key_id`` submitted it (``None``: any job)."""
        with read_transaction(self._engine) as conn:
            row = conn.execute(select(video_jobs).where(video_jobs.c.id == job_id)).first()
        if row is None or (key_id is not None and row.key_id != key_id):
            raise NotFound(f"video job {job_id!r} not found")
        return _job(row)

    def page(
        self, *, key_id: str | None = None, offset: int = 0, limit: int = 100
    ) -> list[JobRecord]:
        """Jobs newest first (one key's, or all with ``key_id=None``)."""
        query = select(video_jobs).order_by(video_jobs.c.created_at.desc(), video_jobs.c.id)
        if key_id is not None:
            query = query.where(video_jobs.c.key_id == key_id)
        with read_transaction(self._engine) as conn:
            return [_job(r) for r in conn.execute(query.offset(offset).limit(limit))]

    def claim_next(self) -> JobRecord | None:
        """Mark the oldest queued job running and return it (None: the queue is empty)."""
        with write_transaction(self._engine) as conn:
            queued = (
                select(video_jobs)
                .where(video_jobs.c.status == "queued")
                .order_by(video_jobs.c.created_at, video_jobs.c.id)
            )
            if conn.dialect.name == "sqlite":
                row = conn.execute(queued.limit(1)).first()
            else:  # replicas: each runs the uploads it can read (its own, or a shared volume's)
                rows = conn.execute(queued.limit(REPLICA_CLAIM_WINDOW))
                row = next((r for r in rows if Path(r.path).is_file()), None)
            if row is None:
                return None
            conn.execute(
                update(video_jobs)
                .where(video_jobs.c.id == row.id)
                .values(status="running", progress=0.0, error=None)
            )
        return _job(row)

    def set_progress(self, job_id: str, progress: float) -> None:
        with write_transaction(self._engine) as conn:
            conn.execute(
                update(video_jobs).where(video_jobs.c.id == job_id).values(progress=progress)
            )

    def status(self, job_id: str) -> JobStatus:
        return self.get(job_id).status

    def finish(
        self,
        job_id: str,
        status: JobStatus,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        with write_transaction(self._engine) as conn:
            conn.execute(
                update(video_jobs)
                .where(video_jobs.c.id == job_id)
                .values(
                    status=status,
                    result=result,
                    error=error,
                    finished_at=datetime.now(UTC),
                    progress=100.0 if status == "done" else video_jobs.c.progress,
                )
            )

    def set_webhook(self, job_id: str, webhook: dict[str, Any]) -> None:
        """Record a webhook's state (its last delivery) with the job."""
        with write_transaction(self._engine) as conn:
            conn.execute(
                update(video_jobs).where(video_jobs.c.id == job_id).values(webhook=webhook)
            )

    def requeue(self, job_id: str, *, key_id: str | None = None) -> JobRecord:
        """Queue a failed, interrupted or cancelled job again."""
        job = self.get(job_id, key_id=key_id)
        if job.status not in ("failed", "interrupted", "cancelled"):
            raise Conflict(
                f"video job {job_id!r} is {job.status}: only a finished, unsuccessful "
                "job can be retried"
            )
        with write_transaction(self._engine) as conn:
            conn.execute(
                update(video_jobs)
                .where(video_jobs.c.id == job_id)
                .values(status="queued", progress=0.0, error=None, finished_at=None)
            )
        return self.get(job_id)

    def cancel(self, job_id: str, *, key_id: str | None = None) -> JobRecord:
        """Cancel a queued or running job (a running one stops at its next frame)."""
        job = self.get(job_id, key_id=key_id)
        if job.status not in ("queued", "running"):
            raise Conflict(f"video job {job_id!r} is {job.status} and cannot be cancelled")
        self.finish(job_id, "cancelled", error={"code": "cancelled", "message": "cancelled"})
        return self.get(job_id)

    def delete(self, job_id: str, *, key_id: str | None = None) -> JobRecord:
        job = self.get(job_id, key_id=key_id)
        if job.status == "running":
            raise Conflict(f"video job {job_id!r} is running: cancel it first")
        with write_transaction(self._engine) as conn:
            conn.execute(delete(video_jobs).where(video_jobs.c.id == job_id))
        return job

    @contextmanager
    def hold(self, job_id: str) -> Iterator[None]:
        """Run a job under its lock: on PostgreSQL another replica starting meanwhile sees
        that a live process runs it (:meth:`interrupt_running`); nothing on SQLite."""
        with exclusive(self._engine, job_lock(job_id)):
            yield

    def interrupt_running(self) -> list[str]:
        """At start: jobs left running by a process that died are marked interrupted.

        On PostgreSQL a job another live replica runs (it holds the job's lock) is left
        alone.
        """
        with write_transaction(self._engine) as conn:
            ids = list(
                conn.scalars(select(video_jobs.c.id).where(video_jobs.c.status == "running"))
            )
            ids = [i for i in ids if try_lock(conn, job_lock(i))]
            if ids:
                conn.execute(
                    update(video_jobs)
                    .where(video_jobs.c.id.in_(ids))
                    .values(
                        status="interrupted",
                        finished_at=datetime.now(UTC),
                        error={
                            "code": "interrupted",
                            "message": "the server stopped while this job ran; retry it",
                        },
                    )
                )
        return ids

    def paths(self) -> set[str]:
        """The upload files jobs still refer to."""
        with read_transaction(self._engine) as conn:
            return set(conn.scalars(select(video_jobs.c.path)))


def redact_person(conn: Connection, collection: str, name: str) -> int:
    """In the caller's transaction: remove a person from every stored job result.

    Their appearances stay (someone was there) as "erased person", without name,
    thumbnail or candidates; other people's candidate lists lose them. Returns the number
    of jobs changed.
    """
    rows = conn.execute(
        select(video_jobs.c.id, video_jobs.c.result).where(
            video_jobs.c.collection == collection, video_jobs.c.result.is_not(None)
        )
    ).all()
    changed = 0
    for job_id, result in rows:
        redacted, touched = _redacted(result, {name})
        if touched:
            conn.execute(
                update(video_jobs).where(video_jobs.c.id == job_id).values(result=redacted)
            )
            changed += 1
    return changed


def move_person(conn: Connection, collection: str, source: str, into: PersonRef) -> int:
    """In the caller's transaction (a merge, before ``source`` is deleted): every stored
    job result naming ``source``, as a person or a candidate, names ``into`` instead, so
    the delete's redaction finds nothing of theirs to turn into "erased person". A
    candidate list naming both keeps the first (best) of them. Returns the jobs changed.
    """
    source = normalize(source)
    rows = conn.execute(
        select(video_jobs.c.id, video_jobs.c.result).where(
            video_jobs.c.collection == collection, video_jobs.c.result.is_not(None)
        )
    ).all()
    changed = 0
    for job_id, result in rows:
        moved, touched = _moved(result, source, into)
        if touched:
            conn.execute(update(video_jobs).where(video_jobs.c.id == job_id).values(result=moved))
            changed += 1
    return changed


def redact_collection(conn: Connection, collection: str) -> None:
    """In the caller's transaction: a deleted collection's job results are dropped."""
    conn.execute(
        update(video_jobs)
        .where(video_jobs.c.collection == collection)
        .values(result=None, error={"code": "erased", "message": "the collection was deleted"})
    )


def _redacted(result: dict[str, Any], names: set[str]) -> tuple[dict[str, Any], bool]:
    touched = False
    people: list[dict[str, Any]] = []
    for person in result.get("people", []):
        kept = [c for c in person.get("candidates", []) if c.get("person") not in names]
        if len(kept) != len(person.get("candidates", [])):
            touched = True
        if person.get("person") in names:
            touched = True
            person = {
                **person,
                "person": None,
                "label": ERASED_PERSON,
                "thumbnail": "",
                "box": None,
                "confidence": None,
                "fmr": None,
            }
            kept = []
        people.append({**person, "candidates": kept})
    return ({**result, "people": people} if touched else result), touched


def _moved(result: dict[str, Any], source: str, into: PersonRef) -> tuple[dict[str, Any], bool]:
    touched = False
    people: list[dict[str, Any]] = []
    for person in result.get("people", []):
        if person.get("person") == source:
            touched = True
            label = into.name if person.get("label") == source else person.get("label")
            person = {**person, "person": into.name, "label": label}
        candidates: list[dict[str, Any]] = []
        for c in person.get("candidates", []):
            if c.get("person") == source:
                touched = True
                c = {**c, "person": into.name, "person_id": into.id}
            if c.get("person") != into.name or all(
                k.get("person") != into.name for k in candidates
            ):
                candidates.append(c)
        people.append({**person, "candidates": candidates})
    return ({**result, "people": people} if touched else result), touched


def _values(job: JobRecord) -> dict[str, Any]:
    return {
        "id": job.id,
        "key_id": job.key_id,
        "collection": job.collection,
        "path": job.path,
        "options": job.options,
        "purpose": job.purpose,
        "case_ref": job.case_ref,
        "actor": job.actor,
        "status": job.status,
        "progress": job.progress,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "result": job.result,
        "error": job.error,
        "webhook": job.webhook,
        "file_name": job.file_name,
    }


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _job(row: Row[Any]) -> JobRecord:
    m = row._mapping
    return JobRecord(
        id=m["id"],
        key_id=m["key_id"],
        collection=m["collection"],
        path=m["path"],
        options=dict(m["options"]),
        purpose=m["purpose"],
        case_ref=m["case_ref"],
        actor=dict(m["actor"]),
        status=m["status"],
        progress=float(m["progress"]),
        created_at=_aware(m["created_at"]) or datetime.now(UTC),
        finished_at=_aware(m["finished_at"]),
        result=m["result"],
        error=m["error"],
        webhook=m["webhook"],
        file_name=m["file_name"],
    )


__all__: Sequence[str] = [
    "FINISHED",
    "JobRecord",
    "JobStatus",
    "JobStore",
    "PersonRef",
    "move_person",
    "redact_person",
]
