"""Ranking faces into candidate persons, with each similarity's false match rate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from faceledger.models.calibration import Calibration

Aggregate = Literal["max", "mean2"]
"""How a person's several face similarities become one: the best, or the mean of the best two."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A ranked candidate for human review: a person (or a face) and how likely a false match is."""

    person: str | None
    person_id: int | None
    face_id: int
    similarity: float
    fmr: float
    """Estimated false match rate of one comparison at this similarity."""


def rank_persons(
    face_ids: npt.NDArray[np.int64],
    scores: npt.NDArray[np.float32],
    owners: Mapping[int, tuple[int | None, str | None]],
    calibration: Calibration,
    *,
    top: int,
    min_similarity: float,
    aggregate: Aggregate = "max",
) -> list[Candidate]:
    """Group one query's nearest faces by person and rank persons by aggregated similarity.

    Faces without a person (face lists) and unknown ids are skipped. Only persons whose
    aggregated similarity reaches ``min_similarity`` are returned, best first.
    """
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
        best = hits[0][0]
        value = best if aggregate == "max" or len(hits) == 1 else (hits[0][0] + hits[1][0]) / 2
        if value >= min_similarity:
            ranked.append(
                Candidate(names[pid], pid, hits[0][1], round(value, 5), calibration.fmr_at(value))
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
    """The most similar faces themselves (Find Similar's matchFace mode)."""
    out = []
    for fid, score in zip(face_ids.tolist(), scores.tolist(), strict=True):
        if fid < 0 or fid not in owners or score < min_similarity:
            continue
        pid, name = owners[fid]
        out.append(Candidate(name, pid, fid, round(score, 5), calibration.fmr_at(score)))
        if len(out) == top:
            break
    return out
