"""Which aggregation of a person's several faces identifies best: max or mean of the top two?

Open-set 1:N on the aligned crops of ../shared/faces/glint360k_celeb24: half the
identities are enrolled with N faces each, probes are further faces of enrolled
(mated) and unenrolled (non-mated) identities. Reports rank-1 and FNIR at FPIR 1e-2 and
5e-2 for each aggregation, as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from faceledger.engine import Engine
from faceledger.eval.dataset import embed_tree, list_tree

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "faces"


def person_scores(
    gallery: np.ndarray, owners: np.ndarray, probe: np.ndarray, how: str
) -> dict[str, float]:
    sims = gallery @ probe
    out: dict[str, float] = {}
    for person in np.unique(owners):
        s = np.sort(sims[owners == person])[::-1]
        out[str(person)] = float(s[0]) if how == "max" or s.size == 1 else float(s[:2].mean())
    return out


def fnir_at_fpir(
    mated: list[tuple[str, dict[str, float]]], nonmated: list[float], fpir: float
) -> float:
    threshold = float(np.quantile(np.array(nonmated), 1 - fpir))
    misses = 0
    for truth, scores in mated:
        best = max(scores, key=lambda k: scores[k])
        misses += not (best == truth and scores[best] > threshold)
    return misses / len(mated)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--enrol", type=int, default=5, help="faces enrolled per identity")
    args = parser.parse_args()
    engine = Engine()
    data = embed_tree(engine, list_tree(SHARED / "glint360k_celeb24" / "images"), aligned=True)
    people = sorted(set(data.labels.tolist()))
    enrolled = set(people[::2])
    gallery_rows, probe_rows = [], []
    seen: dict[str, int] = {}
    for i, person in enumerate(data.labels.tolist()):
        seen[person] = seen.get(person, 0) + 1
        if person in enrolled and seen[person] <= args.enrol:
            gallery_rows.append(i)
        elif seen[person] > args.enrol:
            probe_rows.append(i)
    gallery, owners = data.embeddings[gallery_rows], data.labels[gallery_rows]
    result: dict[str, Any] = {
        "enrolled_identities": len(enrolled),
        "faces_per_identity": args.enrol,
    }
    for how in ("max", "mean2"):
        mated, nonmated = [], []
        for i in probe_rows:
            scores = person_scores(gallery, owners, data.embeddings[i], how)
            if data.labels[i] in enrolled:
                mated.append((str(data.labels[i]), scores))
            else:
                nonmated.append(max(scores.values()))
        rank1 = float(np.mean([max(s, key=lambda k: s[k]) == t for t, s in mated]))
        result[how] = {
            "rank1": round(rank1, 4),
            "fnir_at_fpir_1e-2": round(fnir_at_fpir(mated, nonmated, 1e-2), 4),
            "fnir_at_fpir_5e-2": round(fnir_at_fpir(mated, nonmated, 5e-2), 4),
            "mated_probes": len(mated),
            "nonmated_probes": len(nonmated),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
