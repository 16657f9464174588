"""Grouping that holds at scale: the edge threshold follows the number of pairs."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from faceledger.engine import Engine
from faceledger.eval.cache import EmbeddingCache
from faceledger.eval.clustering import ClusteringScores, cluster_labels, clustering_scores
from faceledger.eval.dataset import EmbeddedSet, embed_trees
from faceledger.models.calibration import Calibration, calibrate
from faceledger.search.grouping import Grouping, GroupingOptions, edge_rate, group_faces

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "faces"
CACHE = ROOT / ".cache" / "embeddings"
SETS = (
    "deepface_tests/identities",
    "faceapi_bbt/identities",
    "dlib_examples/johns",
    "face_recognition_examples/identities",
    "facenet_pytorch/identities",
)


def real_faces() -> Path:
    """``../shared/faces``; missing it fails under CI instead of skipping."""
    if not SHARED.is_dir():
        if os.environ.get("CI"):
            pytest.fail("../shared/faces is required under CI")
        pytest.skip("../shared/faces is not present")
    return SHARED


def test_edge_rate_keeps_false_edges_per_face_fixed() -> None:
    assert edge_rate(10, 1e-3, 0.01) == 1e-3  # few pairs: the caller's rate holds
    for n in (10_000, 100_000, 1_000_000):
        rate = edge_rate(n, 1e-3, 0.01)
        assert rate * n * (n - 1) / 2 == pytest.approx(0.01 * n)
    assert edge_rate(10_000, 1e-3, None) == 1e-3


def test_a_large_face_like_gallery_keeps_its_precision() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from search import Synthetic  # type: ignore[import-not-found]  # the benchmark generator

    rng = np.random.default_rng(3)
    counts = np.minimum(rng.geometric(0.5, size=1500), 50)
    gen = Synthetic(counts.size + 600, 3)
    truth = np.repeat(np.arange(counts.size), counts)
    faces = gen.faces(truth, 4)
    held = np.repeat(np.arange(counts.size, counts.size + 600), 2)
    c = gen.faces(held, 5)
    sims = c @ c.T
    iu = np.triu_indices(held.size, 1)
    cal = calibrate(sims[iu][held[iu[0]] != held[iu[1]]], source="synthetic")
    scores = {}
    for name, opts in (
        ("per pair", GroupingOptions(false_edges_per_face=None)),
        ("per face", GroupingOptions()),
    ):
        found = group_faces(faces, cal, max_fmr=1e-3, options=opts)
        predicted = np.array(cluster_labels(truth.size, found.groups, found.messy_group))
        scores[name] = clustering_scores(truth, predicted)
    print({k: (round(v.bcubed_precision, 3), round(v.bcubed_recall, 3)) for k, v in scores.items()})
    assert scores["per face"].bcubed_precision >= 0.95 > scores["per pair"].bcubed_precision
    assert scores["per face"].bcubed_recall >= 0.9


@dataclass(frozen=True)
class Labelled:
    """The labelled sets of ../shared/faces, embedded: glint, and every other set."""

    glint: EmbeddedSet
    others: list[EmbeddedSet]
    calibration: Calibration
    model_id: str


@pytest.fixture(scope="module")
def labelled(engine: Engine, glint: EmbeddedSet) -> Labelled:
    faces = real_faces()
    cache = EmbeddingCache(CACHE, engine.model_id)
    try:
        others = [
            embed_trees(engine, [faces / "imfdb_subset"], layout="prefix", cache=cache),
            embed_trees(engine, [faces / d for d in SETS], cache=cache),
        ]
    finally:
        cache.close()
    return Labelled(glint, others, engine.pack.require_calibration(), engine.model_id)


def bcubed(parts: list[EmbeddedSet], cal: Calibration) -> tuple[ClusteringScores, Grouping]:
    """BCubed scores of ``group`` over the faces of ``parts`` (labels are the truth)."""
    x = np.concatenate([p.embeddings for p in parts])
    truth = np.concatenate([p.labels for p in parts])
    found = group_faces(x, cal, max_fmr=1e-3)
    labels = np.array(cluster_labels(len(truth), found.groups, found.messy_group))
    return clustering_scores(truth, labels), found


@pytest.mark.integration
def test_group_the_union_of_the_labelled_sets(labelled: Labelled) -> None:
    parts = [labelled.glint, *labelled.others]
    faces = sum(p.labels.size for p in parts)
    persons = np.unique(np.concatenate([p.labels for p in parts])).size
    assert faces > 3000 and persons > 60
    s, found = bcubed(parts, labelled.calibration)
    print(
        f"{faces} faces of {persons} persons: BCubed precision "
        f"{s.bcubed_precision:.3f}, recall {s.bcubed_recall:.3f} (edge FMR {found.edge_fmr:.1e})"
    )
    assert s.bcubed_precision >= 0.95 and s.bcubed_recall >= 0.90


@pytest.mark.integration
def test_group_under_a_cohort_calibration(labelled: Labelled) -> None:
    """`group` of a collection under a cohort calibration normalises its edges: on the
    labelled sets outside the glint cohort it still keeps precision and recall."""
    from faceledger.eval.calibrate import build_calibration

    cal = build_calibration(
        labelled.glint,
        sets=["glint360k_celeb24"],
        model_id=labelled.model_id,
        aligned=True,
        cohort_k=200,
    )
    s, found = bcubed(labelled.others, cal)
    p, plain = bcubed(labelled.others, labelled.calibration)
    faces = sum(part.labels.size for part in labelled.others)
    print(
        f"\n{faces} faces, BCubed precision / recall: cohort {s.bcubed_precision:.3f} / "
        f"{s.bcubed_recall:.3f}, shipped {p.bcubed_precision:.3f} / {p.bcubed_recall:.3f}"
    )
    assert s.bcubed_precision >= 0.95 and s.bcubed_recall >= 0.90
    assert found.threshold < plain.threshold  # normalised scores, a normalised threshold
