"""People: collections, persons and their faces; enrol, split, merge and erase."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Request, Response, UploadFile

from faceledger.api.deps import ServiceDep, actor_of
from faceledger.api.ui.console import (
    AnyKeyPage,
    ConsoleRoute,
    EnrollerPage,
    EnrollerPost,
    page,
    see_other,
)
from faceledger.errors import InvalidArgument, NotFound

router = APIRouter(prefix="/ui/people", route_class=ConsoleRoute, include_in_schema=False)
Text = Annotated[str, Form(max_length=256)]


def _person_url(collection: str, name: str) -> str:
    return f"/ui/people/{quote(collection, safe='')}/person?name={quote(name, safe='')}"


@router.get("")
def collections(request: Request, service: ServiceDep, session: AnyKeyPage) -> Response:
    return page(
        request,
        "collections.html",
        {"collections": service.store.list_collections()},
        session=session,
    )


@router.get("/{collection}")
def persons(
    request: Request, collection: str, service: ServiceDep, session: EnrollerPage
) -> Response:
    col = service.store.get_collection(collection)
    return page(
        request,
        "persons.html",
        {
            "col": col,
            "persons": service.store.list_persons(collection, limit=1000),
            "rule": service.review_settings(collection),
        },
        session=session,
    )


@router.get("/{collection}/person")
def person(
    request: Request, collection: str, name: str, service: ServiceDep, session: EnrollerPage
) -> Response:
    record = service.store.get_person(collection, name)
    return page(
        request,
        "person.html",
        {
            "col": service.store.get_collection(collection),
            "person": record,
            "rejected": service.reviews.rejection_count(record.id),
            "faces": service.store.list_faces(collection, name),
            "others": [
                p.name for p in service.store.list_persons(collection, limit=1000) if p.name != name
            ],
        },
        session=session,
    )


@router.post("/{collection}/enrol")
def enrol(
    request: Request,
    collection: str,
    service: ServiceDep,
    session: EnrollerPost,
    name: Text,
    photos: Annotated[list[UploadFile], File()],
    consent: Text = "",
    face: Annotated[int | None, Form(ge=1, le=100)] = None,
) -> Response:
    """Enrol one face of each uploaded photo (the n-th face when there are several)."""
    images = [p.file.read() for p in photos]
    outcome = service.enroll(
        collection,
        name.strip(),
        images,
        consent=consent.strip() or None,
        face_index=None if face is None else face - 1,
        sources=[p.filename or f"photo {i + 1}" for i, p in enumerate(photos)],
        actor=actor_of(session.key),
    )
    return page(
        request,
        "enrolled.html",
        {"collection": collection, "name": name.strip(), "outcome": outcome},
        session=session,
    )


@router.post("/{collection}/merge")
def merge(
    collection: str, service: ServiceDep, session: EnrollerPost, source: Text, into: Text
) -> Response:
    service.merge_persons(collection, source, into, actor=actor_of(session.key))
    return see_other(_person_url(collection, into))


@router.post("/{collection}/move")
def move(
    collection: str,
    service: ServiceDep,
    session: EnrollerPost,
    face_id: Annotated[int, Form()],
    to: Text,
    consent: Text = "",
) -> Response:
    """Move a face to another person (split), creating that person if new."""
    actor = actor_of(session.key)
    target = to.strip()
    if not target:
        raise InvalidArgument("name the person the face moves to")
    try:
        service.store.get_person(collection, target)
    except NotFound:
        service.create_person(collection, target, consent=consent.strip() or None, actor=actor)
    service.move_faces(collection, [face_id], target, actor=actor)
    return see_other(_person_url(collection, target))


@router.post("/{collection}/delete-face")
def delete_face(
    collection: str,
    service: ServiceDep,
    session: EnrollerPost,
    face_id: Annotated[int, Form()],
    person: Text,
    confirm: Text = "",
) -> Response:
    if confirm != "yes":
        raise InvalidArgument("tick the confirmation to erase this face")
    service.delete_face(collection, face_id, actor=actor_of(session.key))
    return see_other(_person_url(collection, person))


@router.post("/{collection}/delete-person")
def delete_person(
    collection: str, service: ServiceDep, session: EnrollerPost, name: Text, confirm: Text = ""
) -> Response:
    """Erase a person: the name must be typed again to confirm."""
    if confirm != name:
        raise InvalidArgument("type the person's name to confirm the erasure")
    service.delete_person(collection, name, actor=actor_of(session.key))
    return see_other(f"/ui/people/{quote(collection, safe='')}")
