"""Search operations on embedded query faces: identify, verify against a person, similar, group.

Rates hold for the decision actually made: identify and verify judge a person by the
aggregate of their faces against the threshold for their number of enrolled faces, and
report that person's false match rate; identify also states the gallery's expected false
positive identification rate (FPIR). Find Similar ranks faces, each rated per comparison.

Under a cohort-normalised calibration (:mod:`faceledger.models.cohort`) every similarity
is normalised before it is ranked, aggregated or compared with a threshold, exactly as
the calibration's tables were built; the scores reported are the normalised ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from faceledger.index.base import SearchResult
from faceledger.models.calibration import Aggregate, Calibration
from faceledger.search.gallery import GalleryRates, gallery_rates
from faceledger.search.grouping import Grouping, GroupingOptions, group_faces
from faceledger.search.ranking import Candidate, aggregate_hits, rank_faces, rank_persons
from faceledger.store import Store
from faceledger.store.repository import CollectionRecord
from faceledger.types import FloatArray

SimilarMode = Literal["matchPerson", "matchFace"]
FACES_PER_CANDIDATE = 8
"""Nearest faces fetched per requested candidate, so persons with many faces still rank."""


@dataclass(frozen=True, slots=True)
class PersonMatch:
    """Verification of a face against all faces of one person.

    ``fmr`` and ``threshold`` are per person: for a person with ``faces_compared``
    enrolled faces, judged by ``aggregate``; ``fmr_per_comparison`` is the rate of one
    face-to-face comparison at the same similarity.
    """

    person: str
    similarity: float
    threshold: float
    max_fmr: float
    fmr: float
    same_person: bool
    faces_compared: int
    fmr_per_comparison: float = 1.0
    aggregate: str = "max"


@dataclass(frozen=True, slots=True)
class Identification:
    """Candidates of each query face, and what the search states for the whole gallery."""

    candidates: list[list[Candidate]]
    gallery: GalleryRates


def decision_fields(
    calibration: Calibration,
    *,
    model_id: str,
    max_fmr: float,
    threshold: float | None = None,
    gallery: GalleryRates | None = None,
) -> dict[str, Any]:
    """What a ledger entry records about how a search decided: model id, calibration id,
    the per-person (or per-comparison) ``max_fmr``, the threshold (for one comparison or,
    for persons, the threshold for k = 1; each candidate carries its own), and for a
    gallery search the persons searched, the expected FPIR and any ``max_fpir`` asked."""
    rate = gallery.max_fmr if gallery is not None else max_fmr
    if threshold is None:
        threshold = calibration.threshold_for(rate)
    fields: dict[str, Any] = {
        "model_id": model_id,
        "calibration_id": calibration.calibration_id,
        "max_fmr": rate,
        "threshold": round(threshold, 5),
    }
    if gallery is not None:
        fields.update(persons=gallery.persons, fpir=gallery.fpir, max_fpir=gallery.max_fpir)
    return fields


def scored(
    store: Store,
    collection: CollectionRecord,
    queries: FloatArray,
    calibration: Calibration,
    k: int,
) -> SearchResult:
    """The ``k`` nearest faces of each query, scored as ``calibration`` rates them, best
    first: cosine similarities, or cohort-normalised ones (re-sorted) under a cohort."""
    result = store.search(collection, queries, k)
    if calibration.cohort is None:
        return result
    found = result.ids >= 0
    ids = np.unique(result.ids[found])
    vectors = store.face_vectors(collection, ids)
    held = ~np.isnan(vectors[:, 0])  # erased since the index answered: no score
    offsets = np.full(ids.size, np.nan, dtype=np.float32)
    offsets[held] = calibration.face_offsets(vectors[held])
    faces = np.full(result.ids.shape, np.nan, dtype=np.float32)
    faces[found] = offsets[np.searchsorted(ids, result.ids[found])]
    scores = result.scores - calibration.face_offsets(queries)[:, None] - faces
    scores = np.where(np.isfinite(scores), scores, -np.inf).astype(np.float32)
    order = np.argsort(-scores, axis=1, kind="stable")
    ids_sorted = np.take_along_axis(np.where(np.isfinite(scores), result.ids, -1), order, axis=1)
    return SearchResult(ids_sorted, np.take_along_axis(scores, order, axis=1))


def _rank(
    store: Store,
    collection: CollectionRecord,
    queries: FloatArray,
    calibration: Calibration,
    *,
    top: int,
    max_fmr: float,
    aggregate: Aggregate,
) -> list[list[Candidate]]:
    k = max(top * FACES_PER_CANDIDATE, 32)
    result = scored(store, collection, queries, calibration, k)
    owners = store.face_owners(sorted({int(i) for i in result.ids.ravel() if i >= 0}))
    counts = store.face_counts([pid for pid, _ in owners.values() if pid is not None])
    return [
        rank_persons(
            result.ids[q],
            result.scores[q],
            owners,
            calibration,
            top=top,
            max_fmr=max_fmr,
            face_counts=lambda pid: counts.get(pid, 1),
            aggregate=aggregate,
        )
        for q in range(queries.shape[0])
    ]


def identify_gallery(
    store: Store,
    collection: CollectionRecord,
    queries: FloatArray,
    calibration: Calibration,
    *,
    top: int,
    max_fmr: float | None,
    max_fpir: float | None = None,
    aggregate: Aggregate = "max",
) -> Identification:
    """For each query ``(q, d)``, persons within the per-person rate, best first, and the
    gallery's expected FPIR.

    The per-person rate is ``max_fmr``, or the rate that gives the gallery an expected
    FPIR of ``max_fpir`` (the stricter when both are given); N of the gallery is the
    collection's persons with a face.
    """
    n = store.count_persons_with_faces(collection.name)
    rates = gallery_rates(n, max_fmr=max_fmr, max_fpir=max_fpir)
    if queries.shape[0] == 0:
        return Identification([], rates)
    ranked = _rank(
        store,
        collection,
        queries,
        calibration,
        top=top,
        max_fmr=rates.max_fmr,
        aggregate=aggregate,
    )
    return Identification(ranked, rates)


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
    """Candidates of each query within the per-person rate ``max_fmr`` (no gallery figures)."""
    if queries.shape[0] == 0:
        return []
    return _rank(
        store,
        collection,
        queries,
        calibration,
        top=top,
        max_fmr=max_fmr,
        aggregate=aggregate,
    )


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
    result = scored(store, collection, query[None], calibration, max(top * 4, top + 16))
    owners = store.face_owners(sorted({int(i) for i in result.ids[0] if i >= 0}))
    min_sim = calibration.threshold_for(max_fmr) if mode == "matchPerson" else -1.0
    return rank_faces(
        result.ids[0], result.scores[0], owners, calibration, top=top, min_similarity=min_sim
    )


def verify_person(
    query: FloatArray,
    person: str,
    gallery: FloatArray,
    calibration: Calibration,
    *,
    max_fmr: float,
    aggregate: Aggregate = "max",
) -> PersonMatch:
    """Compare a face with every face of a person ``(k, d)``; their aggregate decides.

    The threshold is the per-person one for k faces, so ``max_fmr`` is the rate of this
    decision, not of one of its k comparisons.
    """
    offset = calibration.face_offsets(query[None, :])[0]
    sims = np.sort(gallery @ query - offset - calibration.face_offsets(gallery))[::-1]
    k = int(sims.size)
    if k == 0:
        return PersonMatch(person, -1.0, 1.0, max_fmr, 1.0, False, 0, 1.0, aggregate)
    value = aggregate_hits(sims.tolist(), aggregate)
    threshold = calibration.person_threshold(max_fmr, k, aggregate)
    return PersonMatch(
        person=person,
        similarity=round(value, 5),
        threshold=round(threshold, 5),
        max_fmr=max_fmr,
        fmr=calibration.person_fmr(value, k, aggregate),
        same_person=value >= threshold,
        faces_compared=k,
        fmr_per_comparison=calibration.fmr_at(value),
        aggregate=aggregate,
    )


def group(
    embeddings: FloatArray,
    photo_ids: Sequence[int],
    calibration: Calibration,
    *,
    max_fmr: float,
    options: GroupingOptions | None = None,
) -> Grouping:
    """Cluster faces into people (see :func:`faceledger.search.grouping.group_faces`).

    Faces with the same photo id never share a group.
    """
    return group_faces(
        embeddings,
        calibration,
        photo_ids=np.asarray(photo_ids, dtype=np.int64),
        max_fmr=max_fmr,
        options=options,
    )
