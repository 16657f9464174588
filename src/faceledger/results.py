"""Result types of the service facade, and the small helpers that shape them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceledger.engine import ImageInput
from faceledger.errors import InvalidArgument
from faceledger.search.gallery import GalleryRates
from faceledger.search.ranking import Candidate
from faceledger.types import Face


@dataclass(frozen=True, slots=True)
class EnrolledImage:
    """What enrolment did with one image: the stored face id, or why it was refused."""

    source: str
    face_id: int | None = None
    refused: str | None = None
    reason: str | None = None
    quality: str | None = None
    faces_in_image: int = 0


@dataclass(frozen=True, slots=True)
class FaceResult:
    """One detected face of a query image and its ranked candidates.

    ``gallery`` (identify only) states what the search of the whole collection means:
    persons searched, the per-person rate applied and the expected FPIR.
    """

    face: Face
    candidates: list[Candidate]
    gallery: GalleryRates | None = None


@dataclass(frozen=True, slots=True)
class GroupedFace:
    image: str
    face_index: int
    box: list[float]
    person: str | None = None
    face_id: int | None = None


@dataclass(frozen=True, slots=True)
class GroupResult:
    groups: list[list[GroupedFace]]
    messy_group: list[GroupedFace]
    threshold: float
    max_fmr: float


@dataclass
class EnrollSummary:
    enrolled: list[EnrolledImage] = field(default_factory=list)
    refused: list[EnrolledImage] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        reasons: dict[str, int] = {}
        for r in self.refused:
            reasons[r.refused or "error"] = reasons.get(r.refused or "error", 0) + 1
        return {"enrolled": len(self.enrolled), "refused": len(self.refused), **reasons}


def image_sha256(image: ImageInput) -> str | None:
    """SHA-256 of the submitted bytes or file (the ledger keeps this, never the image)."""
    if isinstance(image, bytes):
        return hashlib.sha256(image).hexdigest()
    if isinstance(image, str | Path):
        digest = hashlib.sha256()
        with open(image, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()
    if isinstance(image, np.ndarray):
        return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()
    return None


def source_name(image: ImageInput, index: int) -> str:
    return str(image) if isinstance(image, str | Path) else f"upload-{index}"


def check_search_args(top: int, max_fmr: float) -> None:
    if not 1 <= top <= 1000:
        raise InvalidArgument("top must be between 1 and 1000")
    if not 0.0 < max_fmr < 1.0:
        raise InvalidArgument("max_fmr must be in (0, 1)")


def candidates_json(
    candidates: Sequence[Candidate], pseudonyms: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Candidates as the ledger records them: persons by pseudonym, never by name."""
    return [
        {
            "person": None if c.person is None else pseudonyms.get(c.person, "p_unknown"),
            "face_id": c.face_id,
            "similarity": c.similarity,
            "fmr": c.fmr,
        }
        for c in candidates
    ]


def candidate_names(groups: Iterable[Sequence[Candidate]]) -> set[str]:
    """The person names among candidates (to look up their pseudonyms)."""
    return {c.person for cands in groups for c in cands if c.person is not None}
