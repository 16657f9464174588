"""Identification (1:N) measures: closed-set rank-1 and CMC, open-set FNIR at FPIR.

The terms are NIST FRTE 1:N's. A *mated* search is a probe whose person is enrolled, a
*non-mated* search one whose person is not. A search returns the enrolled persons
ranked by their best face's similarity (the service's ``max`` aggregation).

- Closed set (mated searches only): the rank of the mate; CMC(r) is the fraction of
  mated searches whose mate ranks r or better, rank-1 is CMC(1).
- Open set at threshold T: FPIR(T) is the fraction of non-mated searches returning
  anyone at or above T; FNIR(T) the fraction of mated searches whose mate is not
  returned at rank 1 with a similarity at or above T.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from faceledger.errors import InvalidArgument
from faceledger.eval.verification import threshold_at_fmr
from faceledger.models.calibration import MIN_EXCEEDANCES, Calibration
from faceledger.types import FloatArray

OPEN_SET_FPIRS: tuple[float, ...] = (1e-2, 1e-3)
BLOCK = 1024


@dataclass(frozen=True, slots=True)
class SearchScores:
    """The best similarity ``(p, k)`` float32 of each probe to each of ``k`` enrolled persons."""

    identities: npt.NDArray[np.str_]
    scores: FloatArray


def search_scores(
    probes: FloatArray, gallery: FloatArray, gallery_labels: npt.NDArray[Any]
) -> SearchScores:
    """Score probes ``(p, d)`` against a gallery ``(g, d)``; each person by their best face."""
    if gallery.shape[0] == 0 or gallery_labels.shape != (gallery.shape[0],):
        raise InvalidArgument("the gallery needs at least one face and one label per face")
    if probes.ndim != 2 or probes.shape[1] != gallery.shape[1]:
        raise InvalidArgument(f"probes must be (p, {gallery.shape[1]}), got {probes.shape}")
    identities, inverse = np.unique(gallery_labels, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[order], np.arange(identities.size))
    ordered = gallery[order]
    out = np.empty((probes.shape[0], identities.size), dtype=np.float32)
    for start in range(0, probes.shape[0], BLOCK):
        sims = probes[start : start + BLOCK] @ ordered.T
        out[start : start + BLOCK] = np.maximum.reduceat(sims, starts, axis=1)
    return SearchScores(identities.astype(np.str_), out)


@dataclass(frozen=True, slots=True)
class OpenSetPoint:
    """FNIR and FPIR at one threshold (``target`` is the FPIR or stated FMR it was set for)."""

    target: float | None
    threshold: float
    fpir: float
    fnir: float
    enough_searches: bool


@dataclass(frozen=True, slots=True)
class Identification:
    """Closed- and open-set figures of one gallery and probe set."""

    enrolled: int
    mated_searches: int
    nonmated_searches: int
    rank1: float
    cmc: npt.NDArray[np.float64]
    at_fpir: list[OpenSetPoint]
    stated: list[OpenSetPoint]
    curve_threshold: FloatArray
    curve_fpir: npt.NDArray[np.float64]
    curve_fnir: npt.NDArray[np.float64]
    mate_ranks: npt.NDArray[np.int64]

    def thinned(self, points: int = 200) -> npt.NDArray[np.intp]:
        """Indices of at most ``points`` FNIR/FPIR curve points, evenly spread."""
        n = self.curve_threshold.size
        return np.unique(np.linspace(0, n - 1, min(n, points)).astype(np.intp))

    def to_dict(self) -> dict[str, object]:
        """JSON-ready figures; the FNIR/FPIR curve thinned to at most 200 points."""
        keep = self.thinned()
        return {
            "enrolled_persons": self.enrolled,
            "mated_searches": self.mated_searches,
            "nonmated_searches": self.nonmated_searches,
            "rank1": self.rank1,
            "cmc": self.cmc.tolist(),
            "fnir_at_fpir": [_point(p) for p in self.at_fpir],
            "at_stated_fmr": [_point(p) for p in self.stated],
            "curve": {
                "threshold": self.curve_threshold[keep].tolist(),
                "fpir": self.curve_fpir[keep].tolist(),
                "fnir": self.curve_fnir[keep].tolist(),
            },
        }


def _point(p: OpenSetPoint) -> dict[str, object]:
    return {
        "target": p.target,
        "threshold": p.threshold,
        "fpir": p.fpir,
        "fnir": p.fnir,
        "enough_searches": p.enough_searches,
    }


def evaluate_identification(
    search: SearchScores,
    probe_labels: npt.NDArray[Any],
    *,
    fpirs: tuple[float, ...] = OPEN_SET_FPIRS,
    calibration: Calibration | None = None,
    max_rank: int = 50,
) -> Identification:
    """Rank-1, CMC, FNIR at each FPIR, and FPIR/FNIR at the pack's stated thresholds.

    Ties favour the mate: its rank is 1 + the number of persons scoring strictly higher.
    """
    p = search.scores.shape[0]
    if probe_labels.shape != (p,):
        raise InvalidArgument(f"probe labels must be ({p},), got {probe_labels.shape}")
    column = {str(name): i for i, name in enumerate(search.identities.tolist())}
    mate_col = np.array([column.get(str(lb), -1) for lb in probe_labels.tolist()], dtype=np.int64)
    mated = mate_col >= 0
    if not mated.any() or mated.all():
        raise InvalidArgument("open-set evaluation needs both enrolled and unenrolled probes")
    scores = search.scores
    mate_score = scores[np.flatnonzero(mated), mate_col[mated]]
    ranks = 1 + np.count_nonzero(scores[mated] > mate_score[:, None], axis=1)
    top = scores.max(axis=1)
    nonmated_top = top[~mated]
    hit = ranks == 1
    cmc = np.array(
        [float(np.mean(ranks <= r)) for r in range(1, min(max_rank, scores.shape[1]) + 1)]
    )

    def at(threshold: float, target: float | None, enough: bool) -> OpenSetPoint:
        return OpenSetPoint(
            target=target,
            threshold=threshold,
            fpir=float(np.mean(nonmated_top >= threshold)),
            fnir=1.0 - float(np.mean(hit & (mate_score >= threshold))),
            enough_searches=enough,
        )

    n_nm = nonmated_top.size
    at_fpir = [at(threshold_at_fmr(nonmated_top, f), f, f * n_nm >= MIN_EXCEEDANCES) for f in fpirs]
    stated = (
        [
            at(t, f, True)
            for f, t in zip(calibration.fmrs, calibration.thresholds, strict=True)
            if f <= 1e-2
        ]
        if calibration is not None
        else []
    )
    thresholds = np.unique(np.concatenate([nonmated_top, mate_score[hit]]))[::-1]
    nm_sorted = np.sort(nonmated_top)
    hits_sorted = np.sort(mate_score[hit])
    fpir_curve = (n_nm - np.searchsorted(nm_sorted, thresholds, side="left")) / n_nm
    found = hits_sorted.size - np.searchsorted(hits_sorted, thresholds, side="left")
    fnir_curve = 1.0 - found / mate_score.size
    return Identification(
        enrolled=int(search.identities.size),
        mated_searches=int(mated.sum()),
        nonmated_searches=int(n_nm),
        rank1=float(np.mean(hit)),
        cmc=cmc,
        at_fpir=at_fpir,
        stated=stated,
        curve_threshold=thresholds.astype(np.float32),
        curve_fpir=fpir_curve,
        curve_fnir=fnir_curve,
        mate_ranks=ranks.astype(np.int64),
    )


@dataclass(frozen=True, slots=True)
class Split:
    """Which rows of a dataset are enrolled (gallery) and which search (probes)."""

    gallery: npt.NDArray[np.intp]
    probes: npt.NDArray[np.intp]
    enrolled_persons: list[str]


def split_gallery(
    labels: npt.NDArray[Any],
    *,
    enroll_persons: int | None = None,
    enroll_per_person: int = 1,
    seed: int = 0,
) -> Split:
    """Split a labelled set into gallery and probes.

    The first ``enroll_per_person`` images of ``enroll_persons`` persons (chosen at random
    with ``seed``; default half of them) are enrolled; every other image is a probe.
    """
    persons = np.unique(labels)
    k = persons.size // 2 if enroll_persons is None else enroll_persons
    if not 1 <= k < persons.size:
        raise InvalidArgument(f"enrol between 1 and {persons.size - 1} of {persons.size} persons")
    if enroll_per_person < 1:
        raise InvalidArgument("enrol at least one image per person")
    chosen = sorted(np.random.default_rng(seed).permutation(persons)[:k].tolist())
    gallery: list[int] = []
    for person in chosen:
        gallery.extend(np.flatnonzero(labels == person)[:enroll_per_person].tolist())
    mask = np.zeros(labels.size, dtype=bool)
    mask[gallery] = True
    return Split(
        np.array(sorted(gallery), np.intp), np.flatnonzero(~mask), [str(c) for c in chosen]
    )


@dataclass(frozen=True, slots=True)
class SplitIdentification:
    """Identification within one labelled set: which persons were enrolled, and the figures."""

    result: Identification
    enrolled_images: int
    enrolled: list[str]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready figures (those of :meth:`Identification.to_dict`, then the enrolment)."""
        return {
            **self.result.to_dict(),
            "enrolled_images": self.enrolled_images,
            "enrolled": self.enrolled,
        }


@dataclass(frozen=True, slots=True)
class GalleryIdentification:
    """Identification of a probe set against a separate gallery."""

    result: Identification
    enrolled_images: int
    probes_left_out_as_gallery_copies: int

    def to_dict(self) -> dict[str, object]:
        """JSON-ready figures (those of :meth:`Identification.to_dict`, then the gallery)."""
        return {
            **self.result.to_dict(),
            "enrolled_images": self.enrolled_images,
            "probes_left_out_as_gallery_copies": self.probes_left_out_as_gallery_copies,
        }


def evaluate_split(
    embeddings: FloatArray,
    labels: npt.NDArray[Any],
    *,
    enroll_persons: int | None = None,
    enroll_per_person: int = 1,
    seed: int = 0,
    calibration: Calibration | None = None,
    fpirs: tuple[float, ...] = OPEN_SET_FPIRS,
) -> SplitIdentification:
    """Open-set identification within one labelled set.

    Some persons are enrolled and every other image searches (see :func:`split_gallery`).
    """
    split = split_gallery(
        labels, enroll_persons=enroll_persons, enroll_per_person=enroll_per_person, seed=seed
    )
    search = search_scores(
        embeddings[split.probes], embeddings[split.gallery], labels[split.gallery]
    )
    result = evaluate_identification(
        search, labels[split.probes], calibration=calibration, fpirs=fpirs
    )
    return SplitIdentification(result, int(split.gallery.size), split.enrolled_persons)


def evaluate_gallery_probes(
    gallery: FloatArray,
    gallery_labels: npt.NDArray[Any],
    probes: FloatArray,
    probe_labels: npt.NDArray[Any],
    *,
    calibration: Calibration | None = None,
    fpirs: tuple[float, ...] = OPEN_SET_FPIRS,
) -> GalleryIdentification:
    """Open-set identification of a probe set against a separate gallery.

    Probes identical to a gallery image (similarity 1) are left out: they are not searches.
    """
    search = search_scores(probes, gallery, gallery_labels)
    fresh = (probes @ gallery.T).max(axis=1) < 1.0 - 1e-5
    result = evaluate_identification(
        SearchScores(search.identities, search.scores[fresh]),
        probe_labels[fresh],
        calibration=calibration,
        fpirs=fpirs,
    )
    return GalleryIdentification(result, int(gallery.shape[0]), int((~fresh).sum()))
