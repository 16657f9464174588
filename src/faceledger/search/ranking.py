"""Ranking faces into candidate persons, with the false match rate of each decision.

A candidate person is accepted when the aggregate of their faces' similarities (``max``
or ``mean2``) reaches that person's threshold: the threshold at which a person with
their number of enrolled faces ``k`` is a false match at the stated rate. The rate a
candidate reports is that per-person rate, not the rate of one face-to-face comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from faceledger.models.calibration import AGGREGATES, Aggregate, Calibration

__all__ = ["AGGREGATES", "Aggregate", "Candidate", "aggregate_hits", "rank_faces", "rank_persons"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A ranked candidate for human review: a person (or a face) and how likely a false match is."""

    person: str | None
    person_id: int | None
    face_id: int
    similarity: float
    fmr: float
    """Estimated false match rate of this decision: per person (for a person with ``faces``
    enrolled faces) in identify, per comparison for a face (Find Similar)."""
    faces: int = 1
    """Enrolled faces of the person the rate was computed for (1 for a face)."""
    fmr_per_comparison: float | None = None
    """The rate of one face-to-face comparison at this similarity, for reference."""
    threshold: float | None = None
    """The similarity this candidate had to reach."""


def aggregate_hits(scores: list[float], aggregate: Aggregate) -> float:
    """A person's similarities (best first) as one: the best, or the mean of the best two."""
    if aggregate == "max" or len(scores) == 1:
        return scores[0]
    return (scores[0] + scores[1]) / 2


def rank_persons(
    face_ids: npt.NDArray[np.int64],
    scores: npt.NDArray[np.float32],
    owners: Mapping[int, tuple[int | None, str | None]],
    calibration: Calibration,
    *,
    top: int,
    max_fmr: float,
    face_counts: Mapping[int, int] | Callable[[int], int],
    aggregate: Aggregate = "max",
) -> list[Candidate]:
    """Group one query's nearest faces by person and rank persons by aggregated similarity.

    Faces without a person (face lists) and unknown ids are skipped. A person is returned
    when their aggregate reaches ``calibration.person_threshold(max_fmr, k, aggregate)``
    for their ``k = face_counts[person id]`` enrolled faces; best first.
    """
    count = face_counts if callable(face_counts) else face_counts.__getitem__
    per_person: dict[int, list[tuple[float, int]]] = {}
    names: dict[int, str | None] = {}
    for fid, score in zip(face_ids.tolist(), scores.tolist(), strict=True):
        if fid < 0 or fid not in owners:
            continue
        pid, name = owners[fid]
        if pid is None:
            continue
        per_person.setdefault(pid, []).append((score, fid))
        names[pid] = name
    ranked: list[Candidate] = []
    for pid, hits in per_person.items():
        hits.sort(reverse=True)
        value = aggregate_hits([s for s, _ in hits], aggregate)
        k = max(int(count(pid)), len(hits))
        threshold = calibration.person_threshold(max_fmr, k, aggregate)
        if value >= threshold:
            ranked.append(
                Candidate(
                    names[pid],
                    pid,
                    hits[0][1],
                    round(value, 5),
                    calibration.person_fmr(value, k, aggregate),
                    faces=k,
                    fmr_per_comparison=calibration.fmr_at(value),
                    threshold=round(threshold, 5),
                )
            )
    ranked.sort(key=lambda c: c.similarity, reverse=True)
    return ranked[:top]


def rank_faces(
    face_ids: npt.NDArray[np.int64],
    scores: npt.NDArray[np.float32],
    owners: Mapping[int, tuple[int | None, str | None]],
    calibration: Calibration,
    *,
    top: int,
    min_similarity: float,
) -> list[Candidate]:
    """The most similar faces themselves (Find Similar's matchFace mode), rated per comparison."""
    out = []
    for fid, score in zip(face_ids.tolist(), scores.tolist(), strict=True):
        if fid < 0 or fid not in owners or score < min_similarity:
            continue
        pid, name = owners[fid]
        fmr = calibration.fmr_at(score)
        out.append(Candidate(name, pid, fid, round(score, 5), fmr, fmr_per_comparison=fmr))
        if len(out) == top:
            break
    return out
