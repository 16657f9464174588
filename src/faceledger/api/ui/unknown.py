"""Unknown faces: group uploaded photos into clusters, then name a cluster (or part of it).

Nothing is kept on the server between the two steps: the clusters page carries each
face's photo back in its naming form, so photos that are never named are never stored.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile

from faceledger.api.deps import ServiceDep, actor_of
from faceledger.api.ui.console import (
    ConsoleRoute,
    EnrollerPost,
    SearcherPage,
    SearcherPost,
    page,
)
from faceledger.errors import InvalidArgument
from faceledger.results import EnrolledImage, GroupedFace
from faceledger.service.review import face_crop

router = APIRouter(prefix="/ui/unknown", route_class=ConsoleRoute, include_in_schema=False)
MAX_PHOTOS = 200


@router.get("")
def form(request: Request, session: SearcherPage) -> Response:
    return page(request, "unknown.html", {"groups": None}, session=session)


@router.post("")
def group(
    request: Request,
    service: ServiceDep,
    session: SearcherPost,
    photos: Annotated[list[UploadFile], File()],
    purpose: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    """Cluster the faces of the uploaded photos (the ledger records a ``group``)."""
    if len(photos) > MAX_PHOTOS:
        raise InvalidArgument(f"at most {MAX_PHOTOS} photos at once")
    images = [p.file.read() for p in photos]
    # numbered: two uploads may share a file name
    names = [f"{i + 1}. {p.filename or 'photo'}" for i, p in enumerate(photos)]
    result = service.group(
        images, sources=names, purpose=purpose or None, actor=actor_of(session.key)
    )
    index = {name: i for i, name in enumerate(names)}
    engine = service.engine()

    def shown(faces: Sequence[GroupedFace]) -> list[dict[str, object]]:
        out = []
        for f in faces:
            i = index[f.image]
            crop = face_crop(engine.load(images[i]), f.box)
            out.append(
                {
                    "source": f.image,
                    "face_index": f.face_index,
                    "photo": base64.b64encode(images[i]).decode(),
                    "crop": base64.b64encode(crop).decode(),
                }
            )
        return out

    groups = [shown(g) for g in result.groups]
    return page(
        request,
        "unknown.html",
        {
            "groups": groups,
            "messy": shown(result.messy_group),
            "collections": [c.name for c in service.store.list_collections()],
        },
        session=session,
    )


@router.post("/name")
async def name_cluster(
    request: Request,
    service: ServiceDep,
    session: EnrollerPost,
    collection: Annotated[str, Form(max_length=128)],
    name: Annotated[str, Form(max_length=256)],
    consent: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    """Enrol the kept faces of a cluster as a new or existing person."""
    posted = await request.form()
    kept = [str(k) for k in posted.getlist("keep")]
    if not kept:
        raise InvalidArgument("keep at least one face of the cluster")
    by_index: dict[int, list[tuple[bytes, str]]] = {}
    for k in kept:
        try:
            photo = base64.b64decode(str(posted[f"photo_{k}"]), validate=True)
            index = int(str(posted[f"index_{k}"]))
        except (KeyError, ValueError, binascii.Error):
            raise InvalidArgument("the cluster form was altered: reload it") from None
        by_index.setdefault(index, []).append((photo, str(posted.get(f"source_{k}", k))))
    outcome: list[EnrolledImage] = []
    for index, items in sorted(by_index.items()):
        outcome += service.enroll(
            collection,
            name.strip(),
            [photo for photo, _ in items],
            consent=consent.strip() or None,
            face_index=index,
            sources=[source for _, source in items],
            actor=actor_of(session.key),
        )
    return page(
        request,
        "enrolled.html",
        {"collection": collection, "name": name.strip(), "outcome": outcome},
        session=session,
    )
