"""What a cohort-normalised calibration costs a search: identify under the shipped
calibration and under a cohort one, side by side in one run.

The gallery is every face of ../shared/faces/imfdb_subset (8 persons) plus ``--filler``
persons of random unit vectors, so the index has a realistic size; the probes are further
imfdb faces. The cohort calibration is built from glint360k_celeb24 (2,259 faces, k=200)
with the same code as ``eval calibrate --fair --write``. Rounds alternate the two
calibrations (moved with ``use_calibration``, as an operator would) and time each
``identify_embeddings`` (the audited service call) and each ``identify_gallery`` (the
search alone). Prints JSON: p50/p99 per calibration and the ratios.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from faceledger.config import Settings
from faceledger.eval.cache import EmbeddingCache
from faceledger.eval.calibrate import build_calibration, save_calibration
from faceledger.eval.dataset import embed_trees
from faceledger.search import operations
from faceledger.service import FaceService
from faceledger.store import NewFace

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "embeddings"


def percentiles(times: list[float]) -> dict[str, float]:
    ms = np.array(times) * 1000
    return {
        "p50_ms": round(float(np.median(ms)), 3),
        "p99_ms": round(float(np.quantile(ms, 0.99)), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--filler", type=int, default=20000, help="random faces added")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--probes", type=int, default=40, help="probes timed per round")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        svc = FaceService(Settings(data=Path(tmp) / "data"))
        engine = svc.engine()
        cache = EmbeddingCache(CACHE, engine.model_id)
        try:
            glint = embed_trees(
                engine, [SHARED / "glint360k_celeb24" / "images"], aligned=True, cache=cache
            )
            imfdb = embed_trees(engine, [SHARED / "imfdb_subset"], layout="prefix", cache=cache)
        finally:
            cache.close()
        cohort = build_calibration(
            glint, sets=["glint360k_celeb24"], model_id=engine.model_id, aligned=True, cohort_k=200
        )
        save_calibration(cohort, Path(tmp) / "data" / "calibrations")

        svc.create_collection("bench", require_consent=False)
        rng = np.random.default_rng(0)
        enrolled = np.arange(imfdb.labels.size) % 4 != 0  # a quarter held out as probes
        faces = [
            (str(p), NewFace(embedding=e))
            for p, e in zip(imfdb.labels[enrolled], imfdb.embeddings[enrolled], strict=True)
        ]
        filler = rng.normal(size=(args.filler, engine.pack.embedding_dim)).astype(np.float32)
        filler /= np.linalg.norm(filler, axis=1, keepdims=True)
        faces += [(f"filler{i // 5}", NewFace(embedding=v)) for i, v in enumerate(filler)]
        svc.store.add_faces_bulk("bench", faces)
        probes = imfdb.embeddings[~enrolled][: args.probes]
        col = svc.store.get_collection("bench")

        modes: dict[str, str | None] = {"shipped": None, "cohort": cohort.calibration_id}
        service_times: dict[str, list[float]] = {m: [] for m in modes}
        search_times: dict[str, list[float]] = {m: [] for m in modes}
        for _ in range(args.rounds):
            for mode, cal_id in modes.items():
                svc.use_calibration("bench", cal_id)
                cal = svc.calibration("bench")
                for probe in probes:
                    start = time.perf_counter()
                    svc.identify_embeddings("bench", probe[None], purpose="benchmark")
                    service_times[mode].append(time.perf_counter() - start)
                    start = time.perf_counter()
                    operations.identify_gallery(
                        svc.store, col, probe[None], cal, top=5, max_fmr=1e-4
                    )
                    search_times[mode].append(time.perf_counter() - start)
        svc.close()

    out: dict[str, Any] = {
        "gallery_faces": len(faces),
        "cohort_faces": glint.labels.size,
        "probes_per_round": len(probes),
        "rounds": args.rounds,
        "identify_service": {m: percentiles(t) for m, t in service_times.items()},
        "identify_search_only": {m: percentiles(t) for m, t in search_times.items()},
    }
    for part in ("identify_service", "identify_search_only"):
        shipped, normed = out[part]["shipped"]["p50_ms"], out[part]["cohort"]["p50_ms"]
        out[part]["cohort_over_shipped_p50"] = round(normed / shipped, 2)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
