"""The searchable media index: where a person appears, a word is said or shown, in the
videos indexed against a collection (``GET /v1/media/search``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from faceledger.api.deps import SearcherKey, ServiceDep, actor_of

router = APIRouter(prefix="/v1/media", tags=["media"])
MAX_WORDS_LENGTH = 1024


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PersonSpanPublic(_Out):
    """The person's appearance interval the hit lies in."""

    label: str
    start: float
    end: float


class SpeechSpanPublic(_Out):
    """The transcript segment whose words matched (original language and English)."""

    start: float
    end: float
    text: str
    text_en: str | None
    language: str | None
    confidence: float | None


class TextSpanPublic(_Out):
    """An interval in which the matching line was on screen."""

    start: float
    end: float
    text: str
    confidence: float | None


class MediaHitPublic(_Out):
    """Where everything asked for holds at once: ``[start, end]`` seconds of one video."""

    video_sha256: str
    file_name: str
    start: float
    end: float
    person: PersonSpanPublic | None
    said: SpeechSpanPublic | None
    shown: TextSpanPublic | None


class MediaSearchResponse(_Out):
    """One page of hits, by video then time; ``total`` counts them all."""

    hits: list[MediaHitPublic]
    total: int
    offset: int
    limit: int


Seconds = Annotated[float | None, Query(ge=0, description="Seconds from the video's start.")]


@router.get("/search", response_model=MediaSearchResponse)
def search_media(
    collection: str,
    service: ServiceDep,
    key: SearcherKey,
    person: Annotated[
        str | None, Query(max_length=256, description="An enrolled person (needs a purpose).")
    ] = None,
    said: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_WORDS_LENGTH,
            description="Words said (all of them, in one transcript segment).",
        ),
    ] = None,
    shown: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_WORDS_LENGTH,
            description="Words shown on screen (all of them, in one line).",
        ),
    ] = None,
    start: Seconds = None,
    end: Seconds = None,
    video: Annotated[
        str | None, Query(max_length=1024, description="Only this video: SHA-256 or file name.")
    ] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    purpose: Annotated[
        str | None, Query(max_length=1024, description="Why this search is made.")
    ] = None,
    case: Annotated[str | None, Query(max_length=256, description="Case reference.")] = None,
) -> MediaSearchResponse:
    """Times in the collection's indexed videos where the person appears, the words are
    said and the words are shown (every criterion given, at once), within ``[start, end]``.
    A search by person needs a purpose and is recorded in the audit ledger like identify."""
    page = service.search_media(
        collection,
        person=person,
        said=said,
        shown=shown,
        start=start,
        end=end,
        video=video,
        offset=offset,
        limit=limit,
        purpose=purpose,
        case_ref=case,
        actor=actor_of(key),
    )
    return MediaSearchResponse.model_validate(page)
