"""Grouping at scale: BCubed and pairwise precision/recall of ``group``; JSON on stdout.

Two kinds of data:

* ``union``: every labelled face of ../shared/faces (glint360k_celeb24 aligned crops,
  imfdb_subset, deepface_tests, faceapi_bbt, dlib johns, face_recognition_examples,
  facenet_pytorch), one face per image, the same name in two sets being one person;
  the default pack's calibration.
* ``synthetic``: face-like galleries of N faces (the generator of ``benchmarks/search.py``:
  identities sharing a low-rank component, faces as noisy copies, same-person cosine
  about 0.5) whose identities have 1, 2, 3... faces (geometric, mean 2, capped at 50),
  the shape of a large labelled set with about two images per person. The calibration
  is built from impostor pairs of 2,000 further synthetic identities, as a pack's is
  built from calibration identities.

Each variant is a :class:`GroupingOptions`; ``per_pair_1e-3`` is the old behaviour (a
fixed per-pair rate of 1e-3).

    python benchmarks/grouping.py --union --sizes 10000 30000 100000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from faceledger.eval.clustering import cluster_labels, clustering_scores
from faceledger.models.calibration import Calibration, calibrate
from faceledger.search.grouping import GroupingOptions, group_faces
from search import Synthetic

SHARED = Path(__file__).resolve().parents[2] / "shared" / "faces"
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "embeddings"
OTHERS = (
    "deepface_tests/identities",
    "faceapi_bbt/identities",
    "dlib_examples/johns",
    "face_recognition_examples/identities",
    "facenet_pytorch/identities",
)
VARIANTS: dict[str, GroupingOptions] = {
    "per_pair_1e-3": GroupingOptions(false_edges_per_face=None, calibrated_weights=False),
    "edges_1_per_face": GroupingOptions(false_edges_per_face=1.0),
    "edges_0.1_per_face": GroupingOptions(false_edges_per_face=0.1),
    "default": GroupingOptions(),
    "default_calibrated_weights": GroupingOptions(calibrated_weights=True),
    "default_mutual_knn_10": GroupingOptions(neighbours=10),
    "default_min_size_3": GroupingOptions(min_size=3),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_variants(
    embeddings: npt.NDArray[np.float32],
    truth: npt.NDArray[Any],
    cal: Calibration,
    names: list[str],
) -> list[dict[str, Any]]:
    out = []
    for name in names:
        opts = VARIANTS[name]
        t0 = time.perf_counter()
        found = group_faces(embeddings, cal, max_fmr=1e-3, options=opts)
        seconds = time.perf_counter() - t0
        predicted = np.array(cluster_labels(len(truth), found.groups, found.messy_group))
        scores = clustering_scores(truth, predicted, messy=len(found.messy_group))
        row = {
            "variant": name,
            "options": asdict(opts),
            "edge_fmr": found.edge_fmr,
            "threshold": round(found.threshold, 4),
            "seconds": round(seconds, 2),
            **{k: round(v, 4) if isinstance(v, float) else v for k, v in scores.to_dict().items()},
        }
        log(
            f"{name}: P {row['bcubed_precision']} R {row['bcubed_recall']} "
            f"({row.get('groups', scores.clusters)} clusters, {seconds:.1f} s)"
        )
        out.append(row)
    return out


def union(names: list[str]) -> dict[str, Any]:
    from faceledger.engine import Engine
    from faceledger.eval.cache import EmbeddingCache
    from faceledger.eval.dataset import embed_trees

    engine = Engine("default")
    cache = EmbeddingCache(CACHE, engine.model_id)
    parts = [
        embed_trees(engine, [SHARED / "glint360k_celeb24" / "images"], aligned=True, cache=cache),
        embed_trees(engine, [SHARED / "imfdb_subset"], layout="prefix", cache=cache),
        embed_trees(engine, [SHARED / d for d in OTHERS], cache=cache),
    ]
    cache.close()
    x = np.concatenate([p.embeddings for p in parts])
    truth = np.concatenate([p.labels for p in parts])
    log(f"union: {len(truth)} faces, {np.unique(truth).size} persons")
    cal = engine.pack.require_calibration()
    return {
        "data": "union of the labelled sets of ../shared/faces",
        "faces": len(truth),
        "persons": int(np.unique(truth).size),
        "calibration": cal.calibration_id,
        "results": run_variants(x, truth, cal, names),
    }


def synthetic(n: int, names: list[str], seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    counts: list[int] = []
    while sum(counts) < n:
        counts.append(int(min(rng.geometric(0.5), 50)))
    n_ids = len(counts)
    gen = Synthetic(n_ids + 2000, seed)
    truth = np.repeat(np.arange(n_ids), counts)[:n]
    x = gen.faces(truth, seed + 4)
    held = np.repeat(np.arange(n_ids, n_ids + 2000), 2)
    c = gen.faces(held, seed + 7)
    sims = c @ c.T
    iu = np.triu_indices(held.size, 1)
    cal = calibrate(sims[iu][held[iu[0]] != held[iu[1]]], source="synthetic held-out identities")
    log(f"synthetic: {n} faces, {n_ids} persons")
    return {
        "data": "synthetic face-like gallery, geometric faces per person (mean 2)",
        "faces": n,
        "persons": n_ids,
        "results": run_variants(x, truth, cal, names),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--union", action="store_true", help="Group the real labelled union.")
    parser.add_argument("--sizes", type=int, nargs="*", default=[10000], help="Synthetic sizes.")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out: dict[str, Any] = {"benchmark": "grouping", "runs": []}
    if args.union:
        out["runs"].append(union(args.variants))
    for n in args.sizes:
        out["runs"].append(synthetic(n, args.variants, args.seed))
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
