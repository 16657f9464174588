"""Calibrate a model pack (threshold versus false match rate) and check a table on other data.

A calibration is built from every impostor pair of labelled folders (per comparison) and
from impostor persons of k faces (per person); checking it measures the false match rate
at each of its thresholds on data it was not built from. A new calibration is saved as a
new version in a store outside the installed package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from faceledger.engine import Engine
from faceledger.errors import InvalidArgument
from faceledger.eval.cache import EmbeddingCache
from faceledger.eval.dataset import EmbeddedSet, Layout, Progress, dataset_name, embed_trees
from faceledger.eval.person import person_tables
from faceledger.eval.verification import all_pair_scores
from faceledger.models.calibration import (
    MIN_EXCEEDANCES,
    PERSON_KS,
    Calibration,
    calibrate,
    impostor_scores,
)
from faceledger.models.calibration_store import CalibrationStore
from faceledger.models.cohort import Cohort
from faceledger.types import FloatArray


def calibrate_tree(
    engine: Engine,
    root: Path | Sequence[Path],
    *,
    aligned: bool = False,
    layout: Layout = "tree",
    per_person: int | None = None,
    cache: EmbeddingCache | None = None,
    progress: Progress | None = None,
    person_ks: tuple[int, ...] = PERSON_KS,
    created: str | None = None,
    cohort_k: int | None = None,
) -> Calibration:
    """Calibrate ``engine``'s pack on labelled folders of ``<person>/<images>``.

    The per-comparison table comes from every cross-identity pair, the per-person tables
    from impostor persons of k faces (:mod:`faceledger.eval.person`). The provenance names
    the sets, identities and pair counts, the model id and the date (``created``, ISO
    8601; default now, UTC). With ``cohort_k``, the calibration is cohort-normalised
    (:mod:`faceledger.eval.fair`): these faces are its cohort, every table is of
    normalised scores, and searches under it normalise.
    """
    roots = [root] if isinstance(root, Path) else list(root)
    data = embed_trees(
        engine,
        roots,
        aligned=aligned,
        layout=layout,
        per_person=per_person,
        cache=cache,
        progress=progress,
    )
    return build_calibration(
        data,
        sets=sorted({dataset_name(r) for r in roots}),
        model_id=engine.model_id,
        aligned=aligned,
        person_ks=person_ks,
        created=created,
        cohort_k=cohort_k,
    )


def build_calibration(
    data: EmbeddedSet,
    *,
    sets: list[str],
    model_id: str,
    aligned: bool = False,
    person_ks: tuple[int, ...] = PERSON_KS,
    created: str | None = None,
    cohort_k: int | None = None,
) -> Calibration:
    """The calibration of embedded labelled faces (see :func:`calibrate_tree`).

    Costs O(n^2) memory for the pair scores of n faces (more with ``cohort_k``).
    """
    scores = all_pair_scores(data.embeddings, data.labels)
    genuine, impostors = scores.genuine, scores.impostor
    identities = sorted(str(x) for x in np.unique(data.labels))
    meta: dict[str, Any] = {
        "images": len(data.paths),
        "identities": len(identities),
        "skipped_images": len(data.skipped),
        "genuine_pairs": int(genuine.size),
        "genuine_mean": round(float(genuine.mean()), 4) if genuine.size else None,
        "impostor_mean": round(float(impostors.mean()), 4),
        "impostor_std": round(float(impostors.std()), 4),
        "aligned_input": aligned,
        "model_id": model_id,
    }
    source = f"{' + '.join(sets)}: all cross-identity pairs"
    cohort, normalised = None, None
    if cohort_k is not None:
        from faceledger.eval.fair import CohortNormalizer

        normalizer = CohortNormalizer(Cohort(data.embeddings, cohort_k), data.labels)
        normalised = normalizer.fit_scores(data.embeddings, data.labels)
        impostors = impostor_scores(data.embeddings, data.labels, normalised)
        cohort = normalizer.cohort
        meta["fair"] = normalizer.to_dict()
        source += ", cohort-normalised"
    tables = person_tables(data.embeddings, data.labels, ks=person_ks, scores=normalised)
    provenance: dict[str, Any] = {
        "model_id": model_id,
        "created": created or datetime.now(UTC).replace(microsecond=0).isoformat(),
        "sets": sets,
        "identities": identities,
        "images": len(data.paths),
        "impostor_pairs": int(impostors.size),
        "genuine_pairs": int(genuine.size),
        "person_impostors": {
            a: {str(k): t.impostor_scores for k, t in zip(pt.ks, pt.tables, strict=True)}
            for a, pt in tables.items()
        },
    }
    return calibrate(
        impostors, source=source, meta=meta, per_person=tables, provenance=provenance, cohort=cohort
    )


@dataclass(frozen=True, slots=True)
class CheckedRate:
    """A stated rate of a table next to the rate measured at its threshold on other data.

    ``measurable`` when the stated rate times the impostor pairs is at least 10 (below
    that the measured rate is mostly noise); ``fnmr`` is measured on the genuine pairs.
    """

    stated_fmr: float
    threshold: float
    extrapolated: bool
    measured_fmr: float
    false_matches: int
    impostor_pairs: int
    ratio: float
    fnmr: float | None
    measurable: bool


def check_calibration(
    calibration: Calibration, impostor: FloatArray, genuine: FloatArray | None = None
) -> list[CheckedRate]:
    """Measure the false match rate at each threshold of ``calibration`` on impostor scores."""
    if impostor.size == 0:
        raise InvalidArgument("checking a calibration needs impostor pairs")
    ordered = np.sort(impostor)
    out = []
    for f, t, extrapolated in zip(
        calibration.fmrs, calibration.thresholds, calibration.extrapolated, strict=True
    ):
        false_matches = int(ordered.size - np.searchsorted(ordered, t, side="left"))
        measured = false_matches / ordered.size
        out.append(
            CheckedRate(
                stated_fmr=f,
                threshold=t,
                extrapolated=extrapolated,
                measured_fmr=measured,
                false_matches=false_matches,
                impostor_pairs=int(ordered.size),
                ratio=measured / f,
                fnmr=float(np.mean(genuine < t)) if genuine is not None and genuine.size else None,
                measurable=f * ordered.size >= MIN_EXCEEDANCES,
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class TreeCheck:
    """A table checked on every pair of faces of some folders (one dataset)."""

    calibration_source: str
    model_id: str
    datasets: list[str]
    images: int
    images_without_face: int
    identities: int
    genuine_pairs: int
    impostor_pairs: int
    rates: list[CheckedRate]


def check_trees(
    engine: Engine,
    roots: Sequence[Path],
    *,
    calibration: Calibration | None = None,
    aligned: bool = False,
    layout: Layout = "tree",
    per_person: int | None = None,
    cache: EmbeddingCache | None = None,
    progress: Progress | None = None,
) -> TreeCheck:
    """Check a table (default: the pack's) on every pair of faces of the given folders.

    The folders form one dataset, so pairs across folders are impostor pairs too (the
    same person name in two folders is one person).
    """
    cal = calibration or engine.pack.require_calibration()
    data = embed_trees(
        engine,
        roots,
        aligned=aligned,
        layout=layout,
        per_person=per_person,
        cache=cache,
        progress=progress,
    )
    offsets = cal.face_offsets(data.embeddings) if cal.cohort is not None else None
    scores = all_pair_scores(data.embeddings, data.labels, offsets)
    return TreeCheck(
        calibration_source=cal.source,
        model_id=engine.model_id,
        datasets=sorted(set(data.sources)),
        images=len(data.paths),
        images_without_face=len(data.skipped),
        identities=int(np.unique(data.labels).size),
        genuine_pairs=int(scores.genuine.size),
        impostor_pairs=int(scores.impostor.size),
        rates=check_calibration(cal, scores.impostor, scores.genuine),
    )


def save_calibration(calibration: Calibration, root: Path) -> Path:
    """Write a calibration as a new version in the store at ``root`` (never into a package)."""
    return CalibrationStore(root).save(calibration)
