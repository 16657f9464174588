"""Persons and their faces: create, list, get, update (rename), merge, delete, enrol,
move, export."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from prometheus_client import Counter
from pydantic import BaseModel, Field

from faceledger.api.deps import AdminKey, EnrollerKey, ServiceDep, actor_of
from faceledger.api.routes.audit import CheckpointOut, InclusionProofOut
from faceledger.api.schemas import (
    MAX_ID,
    EmbeddingModel,
    EnrolledFace,
    ExportedFacePublic,
    FacePublic,
    FacesMove,
    MediaAppearancePublic,
    PersonCreate,
    PersonMerge,
    PersonPage,
    PersonPublic,
    PersonUpdate,
)
from faceledger.api.uploads import IMAGE_BODY, ImageBytes

router = APIRouter(prefix="/v1/collections/{collection}", tags=["persons"])
FACES_ENROLLED = Counter("faceledger_faces_enrolled_total", "Faces enrolled over HTTP")


class PersonExportOut(BaseModel):
    """Everything stored about a person, and the ledger entries that name them, proven."""

    person: PersonPublic = Field(description="Record, metadata, consent and retention.")
    model: EmbeddingModel
    faces: list[ExportedFacePublic]
    media: list[MediaAppearancePublic] = Field(
        description="Every interval of an indexed video in which the person appears."
    )
    ledger: list[InclusionProofOut] = Field(
        description="Each entry naming the person's pseudonym, with its inclusion proof."
    )
    checkpoint: CheckpointOut | None = Field(
        description="The signed checkpoint the proofs lead to (null when there is no entry)."
    )


@router.post("/persons", response_model=PersonPublic, status_code=status.HTTP_201_CREATED)
def create_person(
    collection: str, body: PersonCreate, service: ServiceDep, key: EnrollerKey
) -> PersonPublic:
    person = service.create_person(
        collection,
        body.name,
        consent=body.consent,
        metadata=body.metadata,
        retain_until=body.retain_until,
        actor=actor_of(key),
    )
    return PersonPublic.model_validate(person)


@router.get("/persons", response_model=PersonPage)
def list_persons(
    collection: str,
    service: ServiceDep,
    _: EnrollerKey,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> PersonPage:
    persons = service.store.list_persons(collection, offset=offset, limit=limit)
    return PersonPage(
        persons=[PersonPublic.model_validate(p) for p in persons], offset=offset, limit=limit
    )


@router.get("/persons/{person}", response_model=PersonPublic)
def get_person(collection: str, person: str, service: ServiceDep, _: EnrollerKey) -> PersonPublic:
    return PersonPublic.model_validate(service.store.get_person(collection, person))


@router.patch("/persons/{person}", response_model=PersonPublic)
def update_person(
    collection: str, person: str, body: PersonUpdate, service: ServiceDep, key: EnrollerKey
) -> PersonPublic:
    updated = service.update_person(
        collection,
        person,
        new_name=body.name,
        metadata=body.metadata,
        consent=body.consent,
        retain_until=body.retain_until,
        actor=actor_of(key),
    )
    return PersonPublic.model_validate(updated)


@router.post("/persons/{person}/merge", response_model=PersonPublic)
def merge_person(
    collection: str, person: str, body: PersonMerge, service: ServiceDep, key: EnrollerKey
) -> PersonPublic:
    """Move every face of this person to ``into`` and remove this person (one audited
    change); returns ``into``."""
    merged = service.merge_persons(collection, person, body.into, actor=actor_of(key))
    return PersonPublic.model_validate(merged)


@router.delete("/persons/{person}", status_code=status.HTTP_204_NO_CONTENT)
def delete_person(collection: str, person: str, service: ServiceDep, key: EnrollerKey) -> None:
    service.delete_person(collection, person, actor=actor_of(key))


@router.get("/persons/{person}/export", response_model=PersonExportOut)
def export_person(
    collection: str, person: str, service: ServiceDep, key: AdminKey
) -> PersonExportOut:
    """Subject access request: everything stored about the person, embeddings included,
    and the ledger entries about them with inclusion proofs (the export is audited)."""
    data = service.export_person(collection, person, actor=actor_of(key))
    return PersonExportOut.model_validate(data.as_document())


@router.post(
    "/persons/{person}/faces",
    response_model=EnrolledFace,
    status_code=status.HTTP_201_CREATED,
    openapi_extra=IMAGE_BODY,
)
def enroll_face(
    collection: str,
    person: str,
    image: ImageBytes,
    service: ServiceDep,
    key: EnrollerKey,
    face_index: Annotated[int | None, Query(ge=0, le=1000)] = None,
    largest: bool = False,
    allow_low_quality: bool = False,
    allow_duplicates: Annotated[
        bool, Query(description="Enrol an image already enrolled for this person again.")
    ] = False,
) -> EnrolledFace:
    """Enrol the face of an uploaded image for an existing person.

    The person must exist when the face is stored (checked in the storing transaction):
    an enrolment racing the person's erasure fails with 404, it never brings them back.
    """
    service.store.get_person(collection, person)  # 404 before any work
    [result] = service.enroll(
        collection,
        person,
        [image],
        create_person=False,
        face_index=face_index,
        largest=largest,
        allow_low_quality=allow_low_quality,
        allow_duplicates=allow_duplicates,
        sources=["upload"],
        strict=True,
        actor=actor_of(key),
    )
    assert result.face_id is not None  # strict: a refusal was raised
    FACES_ENROLLED.inc()
    return EnrolledFace(face_id=result.face_id, person=person, quality=result.quality)


@router.get("/persons/{person}/faces", response_model=list[FacePublic])
def list_faces(
    collection: str, person: str, service: ServiceDep, _: EnrollerKey
) -> list[FacePublic]:
    return [FacePublic.model_validate(f) for f in service.store.list_faces(collection, person)]


@router.delete("/faces/{face_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_face(
    collection: str,
    face_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    service: ServiceDep,
    key: EnrollerKey,
) -> None:
    service.delete_face(collection, face_id, actor=actor_of(key))


@router.post("/faces/move", response_model=PersonPublic)
def move_faces(
    collection: str, body: FacesMove, service: ServiceDep, key: EnrollerKey
) -> PersonPublic:
    """Move faces to another person of the collection (one audited change); returns them."""
    person = service.move_faces(collection, body.face_ids, body.to, actor=actor_of(key))
    return PersonPublic.model_validate(person)
