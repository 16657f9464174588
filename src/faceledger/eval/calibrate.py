"""Calibrate a model pack (threshold versus false match rate) and check a table on other data.

A table is built from every impostor pair of a labelled tree; checking it measures the
false match rate at each of its thresholds on data it was not built from.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faceledger.engine import Engine
from faceledger.errors import InvalidArgument
from faceledger.eval.cache import EmbeddingCache
from faceledger.eval.dataset import Layout, Progress, embed_tree, embed_trees, list_tree
from faceledger.eval.verification import all_pair_scores
from faceledger.models.calibration import MIN_EXCEEDANCES, Calibration, calibrate
from faceledger.models.packs import PACK_FILE
from faceledger.types import FloatArray


def calibrate_tree(
    engine: Engine,
    root: Path,
    *,
    aligned: bool = False,
    per_person: int | None = None,
    cache: EmbeddingCache | None = None,
    progress: Progress | None = None,
) -> Calibration:
    """Calibrate ``engine``'s pack on every cross-identity pair of a ``<person>/<images>`` tree."""
    data = embed_tree(
        engine,
        list_tree(root, per_person=per_person),
        aligned=aligned,
        cache=cache,
        progress=progress,
    )
    scores = all_pair_scores(data.embeddings, data.labels)
    genuine, impostors = scores.genuine, scores.impostor
    meta: dict[str, Any] = {
        "images": len(data.paths),
        "identities": int(np.unique(data.labels).size),
        "skipped_images": len(data.skipped),
        "genuine_pairs": int(genuine.size),
        "genuine_mean": round(float(genuine.mean()), 4) if genuine.size else None,
        "impostor_mean": round(float(impostors.mean()), 4),
        "impostor_std": round(float(impostors.std()), 4),
        "aligned_input": aligned,
        "model_id": engine.model_id,
    }
    name = root.parent.name if root.name == "images" else root.name
    return calibrate(impostors, source=f"{name}: all cross-identity pairs", meta=meta)


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
) -> dict[str, Any]:
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
    scores = all_pair_scores(data.embeddings, data.labels)
    return {
        "calibration_source": cal.source,
        "model_id": engine.model_id,
        "datasets": sorted(set(data.sources)),
        "images": len(data.paths),
        "images_without_face": len(data.skipped),
        "identities": int(np.unique(data.labels).size),
        "genuine_pairs": int(scores.genuine.size),
        "impostor_pairs": int(scores.impostor.size),
        "rates": [asdict(r) for r in check_calibration(cal, scores.impostor, scores.genuine)],
    }


def write_calibration(pack_json: Path, calibration: Calibration) -> None:
    """Store a calibration in a pack's JSON file (a built-in spec or ``faceledger-pack.json``)."""
    spec: dict[str, Any] = json.loads(pack_json.read_text()) if pack_json.is_file() else {}
    spec["calibration"] = calibration.to_dict()
    tmp = pack_json.with_suffix(".tmp")
    tmp.write_text(json.dumps(spec, indent=2) + "\n")
    tmp.replace(pack_json)


def pack_json_for(engine: Engine) -> Path:
    """Where ``engine``'s pack keeps its calibration."""
    home = engine.pack.home
    if engine.pack.name in ("default", "dlib") or home is None:
        return (
            Path(__file__).resolve().parents[1] / "models" / "packdata" / f"{engine.pack.name}.json"
        )
    return home / PACK_FILE
