"""Calibrate a model pack: threshold versus false match rate from impostor pairs of real faces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from faceledger.engine import Engine
from faceledger.eval.dataset import Progress, embed_tree, list_tree
from faceledger.models.calibration import Calibration, calibrate, impostor_scores
from faceledger.models.packs import PACK_FILE


def calibrate_tree(
    engine: Engine,
    root: Path,
    *,
    aligned: bool = False,
    per_person: int | None = None,
    progress: Progress | None = None,
) -> Calibration:
    """Calibrate ``engine``'s pack on every cross-identity pair of a ``<person>/<images>`` tree."""
    data = embed_tree(
        engine, list_tree(root, per_person=per_person), aligned=aligned, progress=progress
    )
    impostors = impostor_scores(data.embeddings, data.labels)
    genuine_mask = data.labels[:, None] == data.labels[None, :]
    iu = np.triu_indices(len(data.labels), k=1)
    genuine = (data.embeddings @ data.embeddings.T)[iu][genuine_mask[iu]]
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
