"""Request and response models, separate per audience (create, update, public)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from faceledger.ledger.keys import Role
from faceledger.metadata import problem as metadata_problem
from faceledger.names import normalize, problem

MAX_ID = 2**53
"""Largest id or offset accepted (SQLite integers are 64-bit; JSON numbers exact to 2**53)."""


def _identifier(value: str) -> str:
    nfc = normalize(value)
    why = problem(nfc)
    if why is not None:
        raise ValueError(f"not a valid name: {why}")
    return nfc


Name = Annotated[str, AfterValidator(_identifier)]
"""A collection or person name (:mod:`faceledger.names`): stored in NFC."""


def _bounded_metadata(value: dict[str, Any]) -> dict[str, Any]:
    why = metadata_problem(value)
    if why is not None:
        raise ValueError(why)
    return value


Metadata = Annotated[dict[str, Any], AfterValidator(_bounded_metadata)]
"""Person metadata (:mod:`faceledger.metadata`): finite JSON of bounded depth and size."""


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class CollectionCreate(BaseModel):
    name: Name = Field(min_length=1, max_length=128, pattern=r"^[^/\s][^/]*$")
    model: str = "default"
    require_consent: bool = True
    store_images: bool = False


class CollectionPublic(Out):
    name: str
    model_pack: str
    model_id: str
    embedding_dim: int
    require_consent: bool
    store_images: bool
    created_at: datetime
    calibration_id: str | None = Field(
        default=None, description="The calibration its searches use; null: the pack's shipped one."
    )


class CalibrationChoice(BaseModel):
    calibration_id: str | None = Field(
        description="A calibration version of the collection's model (`cal-` and 16 hex "
        "digits, shipped or written by `eval calibrate --write`); null for the shipped one.",
        pattern=r"^cal-[0-9a-f]{16}$",
    )


class PersonCreate(BaseModel):
    name: Name = Field(min_length=1, max_length=256)
    consent: str | None = Field(default=None, max_length=1024)
    metadata: Metadata = Field(default_factory=dict)
    retain_until: datetime | None = None


class PersonUpdate(BaseModel):
    name: Name | None = Field(default=None, min_length=1, max_length=256, description="Rename.")
    consent: str | None = Field(default=None, max_length=1024)
    metadata: Metadata | None = None
    retain_until: datetime | None = None


class PersonMerge(BaseModel):
    into: Name = Field(
        min_length=1, max_length=256, description="The person who receives every face."
    )


class FacesMove(BaseModel):
    face_ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(min_length=1, max_length=1000)
    to: Name = Field(min_length=1, max_length=256, description="The person who receives them.")


class PersonPublic(Out):
    id: int
    name: str
    pseudonym: str = Field(description="How the audit ledger names this person.")
    metadata: dict[str, Any]
    consent: str | None
    retain_until: datetime | None
    created_at: datetime
    face_count: int


class PersonPage(BaseModel):
    persons: list[PersonPublic]
    offset: int
    limit: int


class FacePublic(Out):
    id: int
    person: str | None
    box: list[float] | None
    quality: dict[str, Any] | None
    source: str | None
    image_sha256: str | None
    created_at: datetime


class ExportedFacePublic(FacePublic):
    """A face in a subject access export: its record, embedding and stored image."""

    embedding: str = Field(
        description="The stored embedding: base64 of its little-endian float32 values."
    )
    image: str | None = Field(
        description="The enrolled image, base64 (null unless the collection stores images)."
    )


class MediaAppearancePublic(BaseModel):
    """An interval of an indexed video in which the media index names the person."""

    collection: str
    video_sha256: str
    file_name: str
    start: float = Field(description="Seconds from the start of the video.")
    end: float


class EmbeddingModel(BaseModel):
    """What the exported embeddings are: decode with numpy.frombuffer(b64decode(e), '<f4')."""

    model_pack: str
    model_id: str = Field(description="The recogniser that computed them (its hash included).")
    dimension: int
    dtype: str = "float32"
    encoding: str = "base64, little-endian"


class QualityPublic(Out):
    face_size: float
    sharpness: float
    exposure: float
    yaw: float
    pitch: float
    roll: float
    grade: str


class DetectedFace(BaseModel):
    box: list[float]
    landmarks: list[list[float]]
    score: float
    quality: QualityPublic


class DetectResponse(BaseModel):
    faces: list[DetectedFace]


class EnrolledFace(BaseModel):
    face_id: int
    person: str
    quality: str | None


class CandidatePublic(Out):
    person: str | None
    face_id: int
    similarity: float = Field(
        description="The score compared with the threshold: cosine similarity to the "
        "person's faces (aggregated) or to the face, cohort-normalised when the "
        "collection's calibration carries a cohort."
    )
    fmr: float = Field(
        description="Estimated false match rate of this decision: per person (for a person "
        "with `faces` enrolled faces) in identify, per comparison for a face."
    )
    faces: int = Field(default=1, description="Enrolled faces the per-person rate is for.")
    fmr_per_comparison: float | None = Field(
        default=None, description="The rate of one face-to-face comparison, for reference."
    )


class IdentifiedFace(DetectedFace):
    candidates: list[CandidatePublic]


class GalleryPublic(Out):
    """What an identify states for the whole collection searched."""

    persons: int = Field(description="Persons with at least one face: N of the gallery.")
    max_fmr: float = Field(description="Per-person false match rate each person is judged at.")
    fpir: float = Field(
        description="Expected false positive identification rate: the chance that a search "
        "for someone not enrolled returns a candidate (an upper estimate)."
    )
    max_fpir: float | None = Field(
        default=None, description="The gallery target the per-person rate was derived from."
    )
    max_fmr_for_fpir: dict[str, float] = Field(
        default_factory=dict,
        description="The per-person max_fmr a caller would need for an expected FPIR of "
        "0.1, 0.01 and 0.001 on this gallery.",
    )


class IdentifyResponse(BaseModel):
    faces: list[IdentifiedFace]
    max_fmr: float = Field(description="Per-person false match rate applied.")
    threshold: float = Field(description="Similarity threshold at that rate for a one-face person.")
    gallery: GalleryPublic | None = None
    note: str = "Candidates are ranked for human review, not a decision."


class SimilarResponse(BaseModel):
    face: DetectedFace
    similar: list[CandidatePublic]
    mode: str


class VerifyResponse(Out):
    similarity: float
    threshold: float
    max_fmr: float
    fmr: float
    same_person: bool
    person: str | None = None
    faces_compared: int | None = None


class GroupedFacePublic(Out):
    image: str
    face_index: int
    box: list[float]
    person: str | None = None
    face_id: int | None = None


class GroupResponse(Out):
    groups: list[list[GroupedFacePublic]]
    messy_group: list[GroupedFacePublic]
    threshold: float
    max_fmr: float


class KeyCreate(BaseModel):
    role: Role
    name: str | None = Field(default=None, max_length=256)


class KeyPublic(Out):
    id: str
    role: Role
    name: str | None
    created_at: datetime
    revoked_at: datetime | None


class KeyIssued(KeyPublic):
    key: str = Field(description="The secret, shown only this once.")


class AuditPage(BaseModel):
    entries: list[dict[str, Any]]
    next_after: int | None


class AuditVerify(BaseModel):
    ok: bool
    entries: int
    problems: list[dict[str, Any]]
    root_hash: str = Field("", description="Merkle root (RFC 9162) of the entries, hex.")
    checkpoints: int = Field(0, description="Signed checkpoints the entries were checked against.")
    latest_checkpoint: int = Field(0, description="Entries covered by the latest checkpoint.")
    uncovered: int = Field(0, description="Newer entries no checkpoint vouches for yet.")


class LedgerHealth(BaseModel):
    entries: int
    checkpoint_size: int = Field(description="Entries covered by the latest signed checkpoint.")
    uncovered: int
    undelivered_checkpoints: int = Field(description="Summed over witnesses; retried.")
    failing_witnesses: int = Field(description="Witnesses whose last delivery failed.")


class Health(BaseModel):
    status: str = Field(description="ok, or degraded while a witness is not taking checkpoints.")
    version: str
    ledger: LedgerHealth | None = None
