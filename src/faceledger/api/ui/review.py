"""The review queue: items, the probe beside the candidate's faces, and decisions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from faceledger.api.deps import ServiceDep, actor_of
from faceledger.api.ui.console import (
    AdminPost,
    ConsoleRoute,
    ReviewerImages,
    SearcherPage,
    SearcherPost,
    page,
    see_other,
)
from faceledger.api.ui.timeline import Span, read_timeline
from faceledger.api.ui.videos import LISTED
from faceledger.errors import NotFound
from faceledger.ledger.keys import Role
from faceledger.service.jobs import JobRecord, VideoJobs
from faceledger.service.review import ConsoleSession
from faceledger.store.review import STATUSES, ReviewItem, ReviewSettings

router = APIRouter(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)
JPEG = "image/jpeg"


@router.get("/review")
def queue(
    request: Request,
    service: ServiceDep,
    session: SearcherPage,
    collection: str | None = None,
    status: str | None = None,
    done: int | None = None,
) -> Response:
    statuses = (status,) if status in STATUSES else ("open", "disputed")
    items = service.review_queue(collection=collection or None, statuses=statuses)
    return page(
        request,
        "queue.html",
        {
            "items": items,
            "status": status or "",
            "statuses": STATUSES,
            "collection": collection or "",
            "collections": [c.name for c in service.store.list_collections()],
            "done": done,
        },
        session=session,
    )


@dataclass(frozen=True, slots=True)
class SeenIn:
    """The video a ``video.identify`` item came from: its job (when this key may see one)
    and the candidate's intervals there, each a link that starts the job's player."""

    job: JobRecord | None
    spans: list[Span]


def seen_in(request: Request, session: ConsoleSession, item: ReviewItem) -> SeenIn | None:
    """Where a video item's person was seen, from the newest job of that video in the
    item's collection among the :data:`LISTED` newest this key may see (an item from a
    video indexed outside the server has no job: no links)."""
    if item.operation != "video.identify" or not item.source_sha256:
        return None
    owner = None if session.key.role == Role.ADMIN else session.key.id
    jobs: VideoJobs = request.app.state.video_jobs
    for job in jobs.list(key_id=owner, limit=LISTED):
        result = job.result or {}
        if job.collection == item.collection and result.get("video_sha256") == item.source_sha256:
            people = read_timeline(result).people
            spans = [s for p in people if p.identified and p.label == item.person for s in p.spans]
            return SeenIn(job, spans)
    return SeenIn(None, [])


@router.get("/review/{item_id}")
def item(request: Request, item_id: int, service: ServiceDep, session: SearcherPage) -> Response:
    it = service.review_item(item_id)
    faces = service.store.list_faces(it.collection, it.person, limit=6)
    rule = service.review_settings(it.collection)
    return page(
        request,
        "item.html",
        {
            "item": it,
            "faces": faces,
            "rule": rule,
            "me": session.key.id,
            "seen": seen_in(request, session, it),
        },
        session=session,
    )


@router.post("/review/{item_id}")
def decide(
    item_id: int,
    service: ServiceDep,
    session: SearcherPost,
    decision: Annotated[str, Form(max_length=16)] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    service.decide(item_id, decision, note=note, actor=actor_of(session.key))
    return see_other(f"/ui/review?done={item_id}")


@router.get("/review/{item_id}/probe.jpg")
def probe(item_id: int, service: ServiceDep, _: SearcherPage) -> Response:
    data = service.review_crop(item_id)
    if data is None:
        raise NotFound("this probe crop has been erased (decided and past its retention)")
    return Response(data, media_type=JPEG)


@router.get("/faces/{face_id}.jpg")
def face(face_id: int, service: ServiceDep, _: ReviewerImages) -> Response:
    data, _collection, _person = service.face_crop(face_id)
    if data is None:
        raise NotFound("this collection does not keep enrolment images")
    return Response(data, media_type=JPEG)


@router.post("/collections/{collection}/review")
def settings(
    collection: str,
    service: ServiceDep,
    session: AdminPost,
    mode: Annotated[str, Form(max_length=16)] = "always",
    max_fmr: Annotated[float | None, Form()] = None,
    reviewers: Annotated[int, Form()] = 1,
    retain_days: Annotated[int, Form()] = 30,
) -> Response:
    value = ReviewSettings(mode, max_fmr, reviewers, retain_days)
    service.set_review_settings(collection, value, actor=actor_of(session.key))
    return see_other(f"/ui/people/{collection}")
