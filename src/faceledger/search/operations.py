"""Search operations on embedded query faces: identify, verify against a person, similar, group."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from faceledger.models.calibration import Calibration
from faceledger.search.grouping import Grouping, chinese_whispers
from faceledger.search.ranking import Aggregate, Candidate, rank_faces, rank_persons
from faceledger.store import Store
from faceledger.store.repository import CollectionRecord
from faceledger.types import FloatArray

SimilarMode = Literal["matchPerson", "matchFace"]
FACES_PER_CANDIDATE = 8
"""Nearest faces fetched per requested candidate, so persons with many faces still rank."""


@dataclass(frozen=True, slots=True)
class PersonMatch:
    """Verification of a face against all faces of one person."""

    person: str
    similarity: float
    threshold: float
    max_fmr: float
    fmr: float
    same_person: bool
    faces_compared: int


def identify(
    store: Store,
    collection: CollectionRecord,
    queries: FloatArray,
    calibration: Calibration,
    *,
    top: int,
    max_fmr: float,
    aggregate: Aggregate = "max",
) -> list[list[Candidate]]:
    """For each query ``(q, d)``, persons whose similarity is within ``max_fmr``, best first."""
    if queries.shape[0] == 0:
        return []
    k = max(top * FACES_PER_CANDIDATE, 32)
    result = store.search(collection, queries, k)
    owners = store.face_owners(sorted({int(i) for i in result.ids.ravel() if i >= 0}))
    threshold = calibration.threshold_for(max_fmr)
    return [
        rank_persons(
            result.ids[q],
            result.scores[q],
            owners,
            calibration,
            top=top,
            min_similarity=threshold,
            aggregate=aggregate,
        )
        for q in range(queries.shape[0])
    ]


def similar(
    store: Store,
    collection: CollectionRecord,
    query: FloatArray,
    calibration: Calibration,
    *,
    mode: SimilarMode,
    top: int,
    max_fmr: float,
) -> list[Candidate]:
    """Find Similar: ``matchPerson`` ranks faces passing the threshold at ``max_fmr``;
    ``matchFace`` ranks the most similar faces whatever their similarity (each with its FMR)."""
    result = store.search(collection, query[None], max(top * 4, top + 16))
    owners = store.face_owners(sorted({int(i) for i in result.ids[0] if i >= 0}))
    min_sim = calibration.threshold_for(max_fmr) if mode == "matchPerson" else -1.0
    return rank_faces(
        result.ids[0], result.scores[0], owners, calibration, top=top, min_similarity=min_sim
    )


def verify_person(
    query: FloatArray, person: str, gallery: FloatArray, calibration: Calibration, *, max_fmr: float
) -> PersonMatch:
    """Compare a face with every face of a person; the best similarity decides."""
    sims = gallery @ query
    best = float(sims.max()) if sims.size else -1.0
    threshold = calibration.threshold_for(max_fmr)
    return PersonMatch(
        person=person,
        similarity=round(best, 5),
        threshold=round(threshold, 5),
        max_fmr=max_fmr,
        fmr=calibration.fmr_at(best),
        same_person=best >= threshold,
        faces_compared=int(sims.size),
    )


def group(
    embeddings: FloatArray, photo_ids: Sequence[int], calibration: Calibration, *, max_fmr: float
) -> Grouping:
    """Cluster faces into people at the threshold for ``max_fmr``.

    Faces with the same photo id never share a group.
    """
    return chinese_whispers(
        embeddings,
        threshold=calibration.threshold_for(max_fmr),
        photo_ids=np.asarray(photo_ids, dtype=np.int64),
    )
