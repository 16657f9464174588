"""Searches: detect, verify/compare, identify, find similar, group."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request

from faceledger.api.convert import detected
from faceledger.api.deps import SearcherKey, ServiceDep, actor_of
from faceledger.api.schemas import (
    CandidatePublic,
    DetectResponse,
    GalleryPublic,
    GroupResponse,
    IdentifiedFace,
    IdentifyResponse,
    SimilarResponse,
    VerifyResponse,
)
from faceledger.api.uploads import IMAGE_BODY, ImageBytes
from faceledger.errors import InvalidArgument

router = APIRouter(tags=["search"])
Purpose = Annotated[
    str | None, Query(max_length=1024, description="Why this search is made (required).")
]
Case = Annotated[str | None, Query(alias="case", max_length=256, description="Case reference.")]
MaxFmr = Annotated[float, Query(gt=0, lt=1, description="Largest false match rate of a candidate.")]
OptionalMaxFmr = Annotated[
    float | None,
    Query(gt=0, lt=1, description="Largest per-person false match rate of a candidate."),
]
MaxFpir = Annotated[
    float | None,
    Query(
        gt=0,
        lt=1,
        description="Largest expected false positive identification rate of the whole "
        "gallery: the per-person rate is derived from it and the number of persons.",
    ),
]

MULTI_IMAGE_BODY = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "image": {"type": "string", "format": "binary"},
                        "other": {"type": "string", "format": "binary"},
                    },
                }
            }
        }
    }
}


@router.post("/v1/detect", response_model=DetectResponse, openapi_extra=IMAGE_BODY)
def detect(image: ImageBytes, service: ServiceDep, key: SearcherKey) -> DetectResponse:
    """Faces with boxes, landmarks, scores and quality."""
    return DetectResponse(faces=[detected(f) for f in service.detect(image, actor=actor_of(key))])


@router.post(
    "/v1/collections/{collection}/identify",
    response_model=IdentifyResponse,
    openapi_extra=IMAGE_BODY,
)
def identify(
    collection: str,
    image: ImageBytes,
    service: ServiceDep,
    key: SearcherKey,
    purpose: Purpose = None,
    case: Case = None,
    top: Annotated[int, Query(ge=1, le=100)] = 5,
    max_fmr: OptionalMaxFmr = None,
    max_fpir: MaxFpir = None,
) -> IdentifyResponse:
    """Every face with its ranked candidate persons, each judged at the per-person rate
    ``max_fmr`` (the server's default when neither rate is given) or at the rate that gives
    the gallery an expected FPIR of ``max_fpir``."""
    results = service.identify(
        collection,
        image,
        top=top,
        max_fmr=max_fmr,
        max_fpir=max_fpir,
        purpose=purpose,
        case_ref=case,
        actor=actor_of(key),
    )
    rates = results[0].gallery if results else None
    applied = rates.max_fmr if rates is not None else service.max_fmr(max_fmr)
    return IdentifyResponse(
        faces=[
            IdentifiedFace(
                **detected(r.face).model_dump(),
                candidates=[CandidatePublic.model_validate(c) for c in r.candidates],
            )
            for r in results
        ],
        max_fmr=applied,
        threshold=round(service.threshold(collection, applied), 5),
        gallery=GalleryPublic.model_validate(rates) if rates is not None else None,
    )


@router.post(
    "/v1/collections/{collection}/similar", response_model=SimilarResponse, openapi_extra=IMAGE_BODY
)
def similar(
    collection: str,
    image: ImageBytes,
    service: ServiceDep,
    key: SearcherKey,
    purpose: Purpose = None,
    case: Case = None,
    mode: Literal["matchPerson", "matchFace"] = "matchPerson",
    top: Annotated[int, Query(ge=1, le=1000)] = 20,
    max_fmr: MaxFmr = 1e-4,
) -> SimilarResponse:
    """Faces most like the image's largest face (Find Similar)."""
    result = service.similar(
        collection,
        image,
        mode=mode,
        top=top,
        max_fmr=max_fmr,
        purpose=purpose,
        case_ref=case,
        actor=actor_of(key),
    )
    return SimilarResponse(
        face=detected(result.face),
        similar=[CandidatePublic.model_validate(c) for c in result.candidates],
        mode=mode,
    )


async def _two_images(request: Request) -> tuple[bytes, bytes | None]:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        body = await request.body()
        if not body:
            raise InvalidArgument("the request has no image")
        return body, None
    form = await request.form(max_files=2, max_fields=10)
    files = []
    for field in ("image", "other"):
        item = form.get(field)
        files.append(await item.read() if item is not None and not isinstance(item, str) else None)
    await form.close()
    if not files[0]:
        raise InvalidArgument("multipart upload needs a file field named 'image'")
    return files[0], files[1]


TwoImages = Annotated[tuple[bytes, bytes | None], Depends(_two_images)]


@router.post("/v1/verify", response_model=VerifyResponse, openapi_extra=MULTI_IMAGE_BODY)
def verify(
    images: TwoImages,
    service: ServiceDep,
    key: SearcherKey,
    collection: str | None = None,
    person: str | None = None,
    purpose: Purpose = None,
    case: Case = None,
    max_fmr: MaxFmr = 1e-4,
) -> VerifyResponse:
    """Face to person (``collection`` and ``person``; purpose required) or face to face
    (multipart fields ``image`` and ``other``)."""
    image, other = images
    if person is not None:
        if collection is None:
            raise InvalidArgument("verifying against a person needs the collection")
        match = service.verify(
            collection,
            image,
            person,
            max_fmr=max_fmr,
            purpose=purpose,
            case_ref=case,
            actor=actor_of(key),
        )
        return VerifyResponse.model_validate(match)
    if other is None:
        raise InvalidArgument(
            "face-to-face verification needs multipart fields 'image' and 'other'"
        )
    result = service.compare(image, other, max_fmr=max_fmr, actor=actor_of(key))
    return VerifyResponse.model_validate(result)


async def _many_images(request: Request) -> list[bytes]:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        return []
    form = await request.form(max_files=100, max_fields=110)
    out = [await item.read() for _, item in form.multi_items() if not isinstance(item, str)]
    await form.close()
    return out


ManyImages = Annotated[list[bytes], Depends(_many_images)]


@router.post("/v1/group", response_model=GroupResponse)
def group(
    images: ManyImages,
    service: ServiceDep,
    key: SearcherKey,
    collection: str | None = None,
    max_fmr: MaxFmr = 1e-3,
    purpose: Purpose = None,
    case: Case = None,
) -> GroupResponse:
    """Cluster the faces of uploaded images (multipart, up to 100 files) or of a collection.

    Grouping a collection shows its persons' names, so like identify it needs a purpose,
    and its ledger entry records the pseudonyms of the persons shown."""
    if collection is None and not images:
        raise InvalidArgument("upload images (multipart) or name a collection")
    names = [f"image-{i}" for i in range(len(images))]
    result = service.group(
        images,
        collection=collection,
        max_fmr=max_fmr,
        sources=names,
        purpose=purpose,
        case_ref=case,
        actor=actor_of(key),
    )
    return GroupResponse.model_validate(result)
