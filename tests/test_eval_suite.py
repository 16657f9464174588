"""The evaluation suite: maths checked against independent computations, then real faces.

Every figure is recomputed here another way (scikit-learn's ``roc_curve``, ``roc_auc_score``,
``top_k_accuracy_score`` and ``pair_confusion_matrix``, or brute-force loops) on the same
scores. Embeddings of the shared faces are cached in the repository's ``.cache/`` so that
re-runs take seconds.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve, top_k_accuracy_score
from sklearn.metrics.cluster import pair_confusion_matrix
from typer.testing import CliRunner

from faceledger.cli.common import ExitCode
from faceledger.cli.main import app
from faceledger.cli.models import models_app
from faceledger.engine import Engine
from faceledger.eval.cache import EmbeddingCache, embed_images
from faceledger.eval.calibrate import check_calibration, check_trees
from faceledger.eval.clustering import cluster_labels, clustering_scores, evaluate_grouping
from faceledger.eval.dataset import (
    EmbeddedSet,
    embed_trees,
    list_tree,
    prefix_person,
    read_labels,
    score_pairs,
)
from faceledger.eval.fairness import differentials
from faceledger.eval.identification import (
    evaluate_identification,
    search_scores,
    split_gallery,
)
from faceledger.eval.pairs import read_csv_pairs
from faceledger.eval.report import ReportOptions, build_report
from faceledger.eval.report_html import write_report
from faceledger.eval.verification import (
    all_pair_scores,
    equal_error_rate,
    error_curve,
    evaluate_verification,
    tar_at_fmr,
)
from faceledger.models.calibration import calibrate
from faceledger.service import FaceService

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "embeddings"
GLINT_PER_PERSON = 40
OTHERS = (
    "deepface_tests/identities",
    "faceapi_bbt/identities",
    "dlib_examples/johns",
    "face_recognition_examples/identities",
)


# -- independent references -----------------------------------------------------------
def sklearn_tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> float:
    """Best TPR among sklearn's ROC points whose FPR is at most ``far``."""
    y = np.r_[np.ones(genuine.size), np.zeros(impostor.size)]
    fpr, tpr, _ = roc_curve(y, np.r_[genuine, impostor], drop_intermediate=False)
    return float(tpr[fpr <= far].max())


def sklearn_eer(genuine: np.ndarray, impostor: np.ndarray) -> float:
    y = np.r_[np.ones(genuine.size), np.zeros(impostor.size)]
    fpr, tpr, _ = roc_curve(y, np.r_[genuine, impostor], drop_intermediate=False)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2)


def brute_group_rates(
    emb: np.ndarray, persons: np.ndarray, mask: np.ndarray, threshold: float
) -> tuple[float, float]:
    e, p = emb[mask], persons[mask]
    iu = np.triu_indices(len(p), k=1)
    sims = (e @ e.T)[iu]
    same = p[iu[0]] == p[iu[1]]
    return float(np.mean(sims[~same] >= threshold)), float(np.mean(sims[same] < threshold))


# -- pure maths --------------------------------------------------------------------------
def synthetic(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    genuine = rng.normal(0.5, 0.15, 3000).astype(np.float32)
    impostor = rng.normal(0.0, 0.08, 200_000).astype(np.float32)
    return genuine, impostor


def test_verification_measures_match_sklearn() -> None:
    genuine, impostor = synthetic()
    v = evaluate_verification(genuine, impostor)
    y = np.r_[np.ones(genuine.size), np.zeros(impostor.size)]
    assert v.auc == pytest.approx(roc_auc_score(y, np.r_[genuine, impostor]), abs=1e-9)
    assert v.eer == pytest.approx(sklearn_eer(genuine, impostor), abs=1e-3)
    for point in v.at_fmr:
        assert point.target_fmr is not None and point.fmr <= point.target_fmr
        assert point.tar == pytest.approx(sklearn_tar_at_far(genuine, impostor, point.target_fmr))
    # 200,000 impostor pairs: 1e-5 has 2 expected above it, so only 1e-2..1e-4 are reported
    assert [p.target_fmr for p in v.at_fmr] == [1e-2, 1e-3, 1e-4]
    assert sum(v.genuine_histogram) == genuine.size and sum(v.impostor_histogram) == impostor.size


def test_error_curve_and_eer_on_a_hand_made_case() -> None:
    genuine = np.array([0.9, 0.8, 0.3], np.float32)
    impostor = np.array([0.5, 0.2, 0.1, 0.0], np.float32)
    curve = error_curve(genuine, impostor)
    assert curve.thresholds[0] == pytest.approx(0.9)
    eer, _ = equal_error_rate(curve)
    assert 0.25 <= eer <= 1 / 3  # one genuine below 0.5 (1/3), one impostor above 0.3 (1/4)
    point = tar_at_fmr(genuine, impostor, 0.25)  # one impostor (0.5) may pass: t just above 0.2
    assert point.false_matches == 1 and 0.2 < point.threshold < 0.3 and point.tar == 1.0
    point = tar_at_fmr(genuine, impostor, 0.1)  # none may pass: t just above 0.5
    assert point.false_matches == 0 and point.tar == pytest.approx(2 / 3)


def test_all_pair_scores_cover_every_pair_once() -> None:
    rng = np.random.default_rng(2)
    emb = rng.normal(size=(700, 16)).astype(np.float32)  # more than one 512-row block
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = rng.integers(0, 30, 700).astype(str)
    scores = all_pair_scores(emb, labels)
    iu = np.triu_indices(700, k=1)
    sims = (emb @ emb.T)[iu]
    same = labels[iu[0]] == labels[iu[1]]
    assert np.allclose(np.sort(scores.genuine), np.sort(sims[same]), atol=1e-6)
    assert np.allclose(np.sort(scores.impostor), np.sort(sims[~same]), atol=1e-6)


def test_identification_measures_match_independent_computation() -> None:
    rng = np.random.default_rng(3)
    k, p = 20, 400
    scores = rng.normal(0, 0.1, (p, k)).astype(np.float32)
    labels = rng.integers(0, 30, p)  # persons 20..29 are not enrolled
    mated = labels < k
    scores[np.flatnonzero(mated), labels[mated]] += rng.normal(0.4, 0.2, mated.sum()).astype(
        np.float32
    )
    names = np.array([f"p{i:02d}" for i in range(k)])
    probe_labels = np.array([f"p{i:02d}" for i in labels])
    from faceledger.eval.identification import SearchScores

    result = evaluate_identification(SearchScores(names, scores), probe_labels, fpirs=(0.05,))
    y_true = labels[mated]
    for r in (1, 3, 5):
        expected = top_k_accuracy_score(y_true, scores[mated], k=r, labels=np.arange(k))
        assert result.cmc[r - 1] == pytest.approx(expected)
    assert result.rank1 == pytest.approx(result.cmc[0])
    # FNIR at FPIR by brute force over thresholds
    top = scores.max(axis=1)
    point = result.at_fpir[0]
    assert np.mean(top[~mated] >= point.threshold) <= 0.05
    hit = (scores[mated].argmax(axis=1) == y_true) & (top[mated] >= point.threshold)
    assert point.fnir == pytest.approx(1 - hit.mean())
    lower = np.nextafter(np.float32(point.threshold), np.float32(-1))  # any lower threshold
    assert np.mean(top[~mated] >= lower) > 0.05


def test_search_scores_take_each_persons_best_face() -> None:
    gallery = np.eye(4, dtype=np.float32)
    labels = np.array(["b", "a", "b", "c"])
    probe = np.array([[0.1, 0.2, 0.9, 0.3]], np.float32)
    s = search_scores(probe, gallery, labels)
    assert s.identities.tolist() == ["a", "b", "c"]
    assert s.scores[0].tolist() == pytest.approx([0.2, 0.9, 0.3])


def test_split_gallery_enrols_chosen_persons_only() -> None:
    labels = np.repeat(np.array([f"p{i}" for i in range(6)]), 4)
    split = split_gallery(labels, enroll_persons=3, enroll_per_person=2, seed=1)
    assert len(split.enrolled_persons) == 3 and split.gallery.size == 6
    assert set(labels[split.gallery]) == set(split.enrolled_persons)
    assert np.intersect1d(split.gallery, split.probes).size == 0
    assert split.gallery.size + split.probes.size == labels.size


def naive_bcubed(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    precision = [np.mean(truth[pred == pred[i]] == truth[i]) for i in range(truth.size)]
    recall = [np.mean(pred[truth == truth[i]] == pred[i]) for i in range(truth.size)]
    return float(np.mean(precision)), float(np.mean(recall))


def test_clustering_scores_match_sklearn_and_naive_bcubed() -> None:
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 7, 300)
    pred = np.where(rng.random(300) < 0.8, truth, rng.integers(0, 10, 300))
    s = clustering_scores(truth, pred)
    (_, fp), (fn, tp) = pair_confusion_matrix(truth, pred)
    assert s.pairwise_precision == pytest.approx(tp / (tp + fp))
    assert s.pairwise_recall == pytest.approx(tp / (tp + fn))
    bp, br = naive_bcubed(truth, pred)
    assert s.bcubed_precision == pytest.approx(bp) and s.bcubed_recall == pytest.approx(br)
    assert s.bcubed_f1 == pytest.approx(2 * bp * br / (bp + br))
    assert cluster_labels(4, [[0, 2]], [1, 3]) == [0, 1, 0, 2]


def test_group_differentials_match_brute_force_and_flag() -> None:
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(16, 32))
    persons = np.repeat(np.arange(16), 12)
    emb = centres[persons] + rng.normal(scale=0.9, size=(persons.size, 32))
    group = np.where(persons < 8, "A", "B")
    emb[group == "A"] += 0.8  # group A's impostors look alike: a higher false match rate
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    labels = persons.astype(str)
    t = 0.45
    diffs = differentials(
        emb, labels, {"g": group.astype(np.str_)}, operating=[(1e-2, t)], bootstrap=300
    )
    (d,) = diffs
    for rates in d.groups:
        fmr, fnmr = brute_group_rates(emb, labels, group == rates.group, t)
        assert rates.fmr == pytest.approx(fmr) and rates.fnmr == pytest.approx(fnmr)
        assert rates.fmr_ci[0] <= rates.fmr <= rates.fmr_ci[1]
        assert rates.fnmr_ci[0] <= rates.fnmr <= rates.fnmr_ci[1]
        assert rates.identities == 8 and rates.flagged == (rates.fmr_ci[0] > 3e-2)
        assert rates.fmr_over_flag_level == (rates.fmr > 3e-2)
    a, b = d.groups
    assert a.fmr > b.fmr and d.fmr_ratio == pytest.approx(a.fmr / b.fmr)


def test_each_group_is_told_the_threshold_that_gives_it_the_stated_rate() -> None:
    # Operating guidance (#14): for every group, the lowest threshold at which that
    # group's own impostor pairs are falsely matched at most at the stated rate.
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(16, 32))
    persons = np.repeat(np.arange(16), 12)
    emb = centres[persons] + rng.normal(scale=0.9, size=(persons.size, 32))
    group = np.where(persons < 8, "A", "B")
    emb[group == "A"] += 0.8
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    labels = persons.astype(str)
    stated = [1e-2, 1e-1]
    diffs = differentials(
        emb,
        labels,
        {"g": group.astype(np.str_)},
        operating=[(f, 0.45) for f in stated],
        bootstrap=50,
    )
    for d in diffs:
        for rates in d.groups:
            t = rates.group_threshold
            mask = group == rates.group
            assert brute_group_rates(emb, labels, mask, t + 1e-6)[0] <= d.stated_fmr
            assert brute_group_rates(emb, labels, mask, t - 1e-6)[0] > d.stated_fmr
        a, b = d.groups
        assert a.group_threshold > b.group_threshold  # the look-alike group needs more
        assert d.to_dict()["groups"][0]["group_threshold"] == pytest.approx(a.group_threshold)
    few = differentials(
        emb[:24], labels[:24], {"g": group[:24].astype(np.str_)}, operating=[(1e-4, 0.45)]
    )
    assert np.isnan(few[0].groups[0].group_threshold)  # 1e-4 of 240 pairs: not measurable
    assert few[0].to_dict()["groups"][0]["group_threshold"] is None


def test_check_calibration_counts_pairs_at_each_threshold() -> None:
    genuine, impostor = synthetic(6)
    cal = calibrate(impostor, source="synthetic")
    other = np.random.default_rng(7).normal(0.0, 0.1, 50_000).astype(np.float32)  # wider tail
    for r in check_calibration(cal, other, genuine):
        assert r.false_matches == int(np.sum(other >= r.threshold))
        assert r.measured_fmr == pytest.approx(r.false_matches / other.size)
        assert r.measurable == (r.stated_fmr * other.size >= 10)
        if r.measurable and r.stated_fmr <= 1e-2:
            assert r.ratio > 1.0  # the wider impostor tail passes more than stated


def test_labels_and_prefix_layout(tmp_path: Path) -> None:
    assert prefix_person("Avinash_12") == "Avinash" and prefix_person("KatrinaKaif_3") == (
        "KatrinaKaif"
    )
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("Avinash_1.jpg", "Avinash_2.jpg", "Dileep_1.jpg"):
        (flat / name).write_bytes(b"x")
    assert [p for p, _ in list_tree(flat, layout="prefix")] == ["Avinash", "Avinash", "Dileep"]
    (tmp_path / "g.json").write_text(json.dumps({"Robert Downey Jr": "M", "Tina Fey": "F"}))
    table = read_labels(tmp_path / "g.json")
    assert table.columns == ("g",)
    assert table.lookup("robert_downey_jr", Path("x/1.png")) == {"g": "M"}
    (tmp_path / "l.csv").write_text("image,light\nrobert_downey_jr/1.png,dark\n")
    assert read_labels(tmp_path / "l.csv").lookup("x", Path("a/robert_downey_jr/1.png")) == {
        "light": "dark"
    }


# -- real faces ------------------------------------------------------------------------
@pytest.fixture(scope="session")
def cache(engine: Engine) -> Iterator[EmbeddingCache]:
    c = EmbeddingCache(CACHE, engine.model_id)
    yield c
    c.close()


@pytest.fixture(scope="session")
def glint(faces_dir: Path, engine: Engine, cache: EmbeddingCache) -> EmbeddedSet:
    root = faces_dir / "glint360k_celeb24" / "images"
    return embed_trees(engine, [root], aligned=True, per_person=GLINT_PER_PERSON, cache=cache)


@pytest.mark.integration
def test_cache_embeds_each_image_once(
    faces_dir: Path, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = [p for _, p in list_tree(faces_dir / "dlib_examples" / "johns", per_person=2)]
    cold = EmbeddingCache(tmp_path, engine.model_id)
    first = embed_images(engine, paths, mode="detected", cache=cold)
    assert len(cold) == len(paths)

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached image was embedded again")

    monkeypatch.setattr(engine, "embed", fail)
    seen: list[tuple[int, int]] = []
    again = embed_images(
        engine, paths, mode="detected", cache=cold, progress=lambda d, t: seen.append((d, t))
    )
    assert seen[-1] == (len(paths), len(paths))
    for a, b in zip(first, again, strict=True):
        assert a.embedding is not None and b.embedding is not None
        assert np.array_equal(a.embedding, b.embedding)
    cold.close()


def test_cache_misses_vectors_made_by_other_pipeline_code(
    faces_dir: Path, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # #11: the key names the code that made a vector, not only the model files, so a
    # change of decoding, detection or alignment code never passes on stale vectors.
    import hashlib
    import importlib.util

    from faceledger.eval import cache as cache_module

    digest = hashlib.sha256()
    for name in cache_module.PIPELINE_MODULES:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None
        digest.update(Path(spec.origin).read_bytes())
    assert cache_module.pipeline_code_version() == digest.hexdigest()[:12]
    assert {"faceledger.engine", "faceledger.imaging.decode", "faceledger.models.align"} <= set(
        cache_module.PIPELINE_MODULES
    )
    paths = [p for _, p in list_tree(faces_dir / "dlib_examples" / "johns", per_person=1)][:2]
    store = EmbeddingCache(tmp_path, engine.model_id)
    monkeypatch.setattr(cache_module, "pipeline_code_version", lambda: "old")
    embed_images(engine, paths, mode="detected", cache=store)
    monkeypatch.undo()
    calls: list[object] = []
    real = engine.embed

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(args)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "embed", counting)
    embed_images(engine, paths, mode="detected", cache=store)
    assert len(calls) == len(paths)  # the old code's vectors were not reused
    store.close()


@pytest.mark.integration
def test_verification_on_deepface_pairs(
    faces_dir: Path, engine: Engine, cache: EmbeddingCache
) -> None:
    pairs = read_csv_pairs(faces_dir / "deepface_tests" / "pairs" / "pairs_all.csv")
    scored = score_pairs(engine, pairs, cache=cache)
    genuine, impostor = scored.scores[scored.same], scored.scores[~scored.same]
    assert genuine.size == 140 and impostor.size == 380
    v = evaluate_verification(genuine, impostor, calibration=engine.pack.calibration)
    y = scored.same.astype(int)
    fpr, tpr, _ = roc_curve(y, scored.scores)
    assert v.auc == pytest.approx(np.trapezoid(tpr, fpr), abs=1e-9) and v.auc > 0.99
    assert v.eer == pytest.approx(sklearn_eer(genuine, impostor), abs=0.01)
    for p in v.at_fmr:
        assert p.target_fmr is not None
        assert p.tar == pytest.approx(sklearn_tar_at_far(genuine, impostor, p.target_fmr))
        assert not p.enough_impostors  # 380 impostor pairs cannot measure 1e-2 and below
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "verify",
            "--pairs",
            str(faces_dir / "deepface_tests/pairs/pairs_all.csv"),
            "--cache-dir",
            str(CACHE.parent),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["auc"] == pytest.approx(v.auc)


@pytest.mark.integration
def test_open_set_identification_on_glint(glint: EmbeddedSet, service: FaceService) -> None:
    split = split_gallery(glint.labels, enroll_persons=12, enroll_per_person=1, seed=0)
    probes = glint.labels[split.probes]
    assert np.unique(probes).size == 24 and len(split.enrolled_persons) == 12
    search = search_scores(
        glint.embeddings[split.probes],
        glint.embeddings[split.gallery],
        glint.labels[split.gallery],
    )
    result = evaluate_identification(search, probes)
    mated = np.isin(probes, split.enrolled_persons)
    assert result.mated_searches == mated.sum() and result.nonmated_searches == (~mated).sum()
    y = np.searchsorted(search.identities, probes[mated])
    assert result.rank1 == pytest.approx(top_k_accuracy_score(y, search.scores[mated], k=1))
    assert result.rank1 > 0.95
    top = search.scores.max(axis=1)
    for point in result.at_fpir:
        assert np.mean(top[~mated] >= point.threshold) <= point.target
        hit = (search.scores[mated].argmax(1) == y) & (top[mated] >= point.threshold)
        assert point.fnir == pytest.approx(1 - hit.mean())
    assert result.at_fpir[0].fnir < 0.1
    # the service, enrolled with the same crops, ranks the same person first
    service.create_collection("c")
    for i in split.gallery:
        service.enroll("c", str(glint.labels[i]), [glint.paths[i]], aligned=True, consent="test")
    ranked = service.identify_embeddings(
        "c", glint.embeddings[split.probes], top=1, max_fmr=0.5, purpose="test"
    )
    best = search.identities[search.scores.argmax(axis=1)]
    agree = [c[0].person == b for c, b in zip(ranked, best, strict=True) if c]
    assert len(agree) > 0.9 * len(ranked) and all(agree)


@pytest.mark.integration
def test_clustering_of_johns_is_the_services_grouping(
    faces_dir: Path, engine: Engine, cache: EmbeddingCache, service: FaceService
) -> None:
    root = faces_dir / "dlib_examples" / "johns"
    data = embed_trees(engine, [root], cache=cache)
    cal = engine.pack.require_calibration()
    scores = evaluate_grouping(data.embeddings, data.labels, cal, max_fmr=1e-3)
    grouped = service.group(data.paths, max_fmr=1e-3)
    index = {str(p): i for i, p in enumerate(data.paths)}
    pred = np.array(
        cluster_labels(
            len(data.paths),
            [[index[f.image] for f in g if f.face_index == 0] for g in grouped.groups],
            [index[f.image] for f in grouped.messy_group if f.face_index == 0],
        )
    )
    from_service = clustering_scores(data.labels, pred)
    assert from_service == scores
    (_, fp), (fn, tp) = pair_confusion_matrix(data.labels, pred)
    assert scores.pairwise_precision == pytest.approx(tp / (tp + fp))
    assert scores.pairwise_recall == pytest.approx(tp / (tp + fn))
    bp, br = naive_bcubed(data.labels, pred)
    assert scores.bcubed_precision == pytest.approx(bp) and scores.bcubed_recall == (
        pytest.approx(br)
    )
    assert scores.bcubed_f1 > 0.9 and scores.persons == 5


OPERATING_POINT = "target_fmr threshold tar fmr fnmr false_matches enough_impostors"
OPEN_SET_POINT = "target threshold fpir fnir enough_searches"
COUNTS = "images identities"
REPORT_KEYS = {
    "": "title created faceledger_version model data verification identification clustering "
    "fairness calibration_check verdict",
    "model": "pack model_id description license calibration_source aligned_input",
    "data": "datasets images embedded_images images_without_face identities groups layout",
    "data.datasets": "glint360k_celeb24",
    "data.datasets.glint360k_celeb24": COUNTS,
    "data.groups": "gender",
    "data.groups.gender": "F M",
    "data.groups.gender.F": COUNTS,
    "data.groups.gender.M": COUNTS,
    "verification": "genuine_pairs impostor_pairs eer eer_threshold auc tar_at_fmr at_stated_fmr "
    "curve histogram",
    "verification.tar_at_fmr[]": OPERATING_POINT,
    "verification.at_stated_fmr[]": OPERATING_POINT,
    "verification.curve": "threshold fmr fnmr",
    "verification.histogram": "edges genuine impostor",
    "identification": "enrolled_persons mated_searches nonmated_searches rank1 cmc fnir_at_fpir "
    "at_stated_fmr curve enrolled_images enrolled",
    "identification.fnir_at_fpir[]": OPEN_SET_POINT,
    "identification.at_stated_fmr[]": OPEN_SET_POINT,
    "identification.curve": "threshold fpir fnir",
    "clustering": "items persons clusters messy pairwise_precision pairwise_recall pairwise_f1 "
    "bcubed_precision bcubed_recall bcubed_f1 max_fmr",
    "fairness": "flag_factor bootstrap differentials",
    "fairness.differentials[]": "column stated_fmr threshold fmr_ratio_worst_to_best "
    "fnmr_ratio_worst_to_best flagged_groups unlabelled_images groups",
    "fairness.differentials[].groups[]": "group identities images impostor_pairs false_matches "
    "genuine_pairs false_non_matches fmr fmr_ci fnmr fnmr_ci enough_impostors flagged "
    "fmr_over_flag_level group_threshold",
    "calibration_check": "same_data_as_calibration rates",
    "calibration_check.rates[]": "stated_fmr threshold extrapolated measured_fmr false_matches "
    "impostor_pairs ratio fnmr measurable",
}
"""The published JSON figures of a report on glint by gender: each object's keys, in order."""


def json_keys(value: object, path: str = "", out: dict[str, str] | None = None) -> dict[str, str]:
    """Each JSON object's keys in order, by path (``[]``: every element of a list, which
    must all have the same keys)."""
    out = {} if out is None else out
    if isinstance(value, dict):
        keys = " ".join(value)
        assert out.setdefault(path, keys) == keys, f"{path}: {keys} != {out[path]}"
        for k, v in value.items():
            json_keys(v, f"{path}.{k}".lstrip("."), out)
    elif isinstance(value, list):
        for v in value:
            json_keys(v, f"{path}[]", out)
    return out


@pytest.mark.integration
def test_per_group_report_on_glint_by_gender(
    faces_dir: Path, engine: Engine, cache: EmbeddingCache, glint: EmbeddedSet, tmp_path: Path
) -> None:
    labels = read_labels(faces_dir / "glint360k_celeb24" / "meta" / "gender_distribution.json")
    options = ReportOptions(
        aligned=True, per_person=GLINT_PER_PERSON, enroll_persons=12, bootstrap=300
    )
    root = faces_dir / "glint360k_celeb24" / "images"
    report = build_report(engine, [root], labels=labels, options=options, cache=cache)
    assert report.data.groups["gender"]["F"].identities == 12
    assert report.data.groups["gender"]["M"].identities == 12
    gender = np.array([labels.lookup(str(p), Path()).get("gender", "") for p in glint.labels])
    for d in report.fairness.differentials:
        assert d.column == "gender" and d.unlabelled_images == 0
        for g in d.groups:
            fmr, fnmr = brute_group_rates(
                glint.embeddings, glint.labels, gender == g.group, d.threshold
            )
            assert g.fmr == pytest.approx(fmr) and g.fnmr == pytest.approx(fnmr)
            assert g.flagged == (g.fmr_ci[0] > 3 * d.stated_fmr)
            if np.isfinite(g.group_threshold):  # guidance: the group's own threshold
                own = g.group_threshold
                mask = gender == g.group
                assert (
                    brute_group_rates(glint.embeddings, glint.labels, mask, own + 1e-6)[0]
                    <= d.stated_fmr
                )
                assert f"{g.group} {own:.4f}" in " ".join(report.verdict)
    assert any(np.isfinite(g.group_threshold) for g in d.groups)
    scores = all_pair_scores(glint.embeddings, glint.labels)
    y = np.r_[np.ones(scores.genuine.size), np.zeros(scores.impostor.size)]
    auc = roc_auc_score(y, np.r_[scores.genuine, scores.impostor])
    assert report.verification.auc == pytest.approx(auc, abs=1e-9)
    assert report.calibration_check.same_data_as_calibration
    write_report(report, html_out=tmp_path / "r.html", json_out=tmp_path / "r.json")
    page = (tmp_path / "r.html").read_text()
    assert page.count("data:image/png;base64,") == 5 and "non-commercial" in page
    assert "threshold giving the stated FMR in this group" in page
    figures = json.loads((tmp_path / "r.json").read_text())
    assert figures["model"]["pack"] == "default"
    # the JSON figures keep their published keys, in order (users and the README read them)
    assert json_keys(figures) == REPORT_KEYS
    assert figures["verdict"] == list(report.verdict)
    assert figures["clustering"]["bcubed_f1"] == report.clustering.scores.bcubed_f1


@pytest.fixture(scope="session")
def others(faces_dir: Path) -> list[Path]:
    return [faces_dir / d for d in OTHERS]


@pytest.mark.integration
def test_per_group_report_imfdb_against_the_others(
    faces_dir: Path, engine: Engine, others: list[Path], tmp_path: Path
) -> None:
    imfdb = faces_dir / "imfdb_subset"
    persons = {p for p, _ in list_tree(imfdb, layout="prefix")}
    csv_path = tmp_path / "origin.csv"
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["person", "origin"])
        for root in others:
            writer.writerows([d.name, "other"] for d in root.iterdir() if d.is_dir())
        writer.writerows([p, "imfdb"] for p in sorted(persons))
    out = tmp_path / "report.html"
    figures = tmp_path / "report.json"
    args = [
        "eval",
        "report",
        str(imfdb),
        *map(str, others),
        "--labels",
        str(csv_path),
        "--out",
        str(out),
        "--json",
        str(figures),
        "--per-person",
        "40",
        "--bootstrap",
        "300",
        "--cache-dir",
        str(CACHE.parent),
        "--no-card",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(figures.read_text())
    assert set(report["data"]["groups"]["origin"]) == {"imfdb", "other"}
    assert report["data"]["groups"]["origin"]["imfdb"]["identities"] == 8
    assert "dataset" in report["data"]["groups"]  # several folders: one more group column
    # recompute the origin column's rates from the same embeddings
    cache = EmbeddingCache(CACHE, engine.model_id)
    data = embed_trees(engine, [imfdb, *others], per_person=40, cache=cache)
    cache.close()
    origin = np.where(np.isin(data.labels, sorted(persons)), "imfdb", "other")
    for d in (d for d in report["fairness"]["differentials"] if d["column"] == "origin"):
        for g in d["groups"]:
            fmr, fnmr = brute_group_rates(
                data.embeddings, data.labels, origin == g["group"], d["threshold"]
            )
            assert g["fmr"] == pytest.approx(fmr) and g["fnmr"] == pytest.approx(fnmr)
    assert "imfdb" in result.output and out.read_text().startswith("<!doctype html>")


@pytest.mark.integration
def test_default_calibration_holds_on_data_it_was_not_built_from(
    faces_dir: Path, engine: Engine, cache: EmbeddingCache, others: list[Path]
) -> None:
    cal = engine.pack.require_calibration()
    assert cal.source.startswith("glint360k_celeb24")
    roots = [*others, faces_dir / "imfdb_subset"]
    checked = check_trees(engine, roots, per_person=40, cache=cache)
    data = embed_trees(engine, roots, per_person=40, cache=cache)
    impostor = all_pair_scores(data.embeddings, data.labels).impostor
    assert checked.impostor_pairs == impostor.size > 100_000
    assert checked.datasets == sorted(
        ["deepface_tests", "faceapi_bbt", "johns", "face_recognition_examples", "imfdb_subset"]
    )
    for r in checked.rates:
        assert r.false_matches == int(np.sum(impostor >= r.threshold))
        if r.measurable and r.stated_fmr <= 1e-2:
            assert r.measured_fmr <= 3 * r.stated_fmr


@pytest.mark.integration
def test_cli_identify_cluster_calibrate_and_models_show(
    faces_dir: Path, engine: Engine, glint: EmbeddedSet, tmp_path: Path
) -> None:
    runner = CliRunner()
    cache = ["--cache-dir", str(CACHE.parent)]
    glint_root = str(faces_dir / "glint360k_celeb24" / "images")
    out = runner.invoke(
        app,
        [
            "eval",
            "identify",
            "--gallery",
            glint_root,
            "--probes",
            glint_root,
            "--aligned",
            "--enroll-persons",
            "12",
            "--per-person",
            str(GLINT_PER_PERSON),
            *cache,
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    ident = json.loads(out.stdout)
    assert ident["enrolled_persons"] == 12 and ident["rank1"] > 0.95
    out = runner.invoke(app, ["eval", "cluster", str(faces_dir / "dlib_examples/johns"), *cache])
    assert out.exit_code == 0 and "bcubed_f1" in out.stdout
    out = runner.invoke(
        app, ["eval", "calibrate", "--check", str(faces_dir / "faceapi_bbt/identities"), *cache]
    )
    assert out.exit_code == 0 and "stated FMR 1e-04" in out.stdout
    out = runner.invoke(app, ["eval", "verify", *cache])
    # a bad combination of options is bad input (exit code 7 in the README's table)
    assert out.exit_code == ExitCode.BAD_INPUT, out.output
    assert "exactly one of" in out.output and "Traceback" not in out.output
    # a report keeps the pack's figures; `models show` prints them as a model card
    (tmp_path / "embeddings").symlink_to(CACHE)  # cards go to tmp_path, embeddings are shared
    cards = ["--cache-dir", str(tmp_path)]
    out = runner.invoke(models_app, ["show", "default", *cards])
    assert out.exit_code == ExitCode.NOT_FOUND and "no evaluation stored" in out.output
    out = runner.invoke(
        app,
        [
            "eval",
            "report",
            str(faces_dir / "dlib_examples/johns"),
            str(faces_dir / "faceapi_bbt/identities"),
            "--json",
            str(tmp_path / "f.json"),
            "--card",
            *cards,
        ],
    )
    assert out.exit_code == 0, out.output
    out = runner.invoke(models_app, ["show", "default", *cards])
    assert out.exit_code == 0, out.output
    assert "Model card: default" in out.stdout and "non-commercial" in out.stdout
    assert "EER" in out.stdout and "rank-1" in out.stdout and "dataset at stated" in out.stdout
    assert "covers: 24 adult public figures of glint360k_celeb24" in out.stdout
    assert "does not cover: children;" in out.stdout  # the card says who it was not made on
    # where groups get uneven false match rates, the card says how to even them out
    figures = json.loads((tmp_path / "f.json").read_text())
    ratios = [d["fmr_ratio_worst_to_best"] or 0 for d in figures["fairness"]["differentials"]]
    assert ("--fair --labels" in out.stdout) == (max(ratios) > 1.5), ratios
    listed = runner.invoke(models_app, ["--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout)[0]["name"] == "default"


def test_verdict_flags_only_an_interval_wholly_above_the_flag_level() -> None:
    from faceledger.eval.fairness import Differential, GroupRates
    from faceledger.eval.report import CalibrationCheck, Fairness, verdict

    def group(name: str, fmr: float, lo: float) -> GroupRates:
        return GroupRates(
            group=name,
            identities=10,
            images=40,
            impostor_pairs=10_000,
            false_matches=round(fmr * 10_000),
            genuine_pairs=60,
            false_non_matches=0,
            fmr=fmr,
            fmr_ci=(lo, fmr * 2),
            fnmr=0.0,
            fnmr_ci=(0.0, 0.0),
            enough_impostors=True,
            flagged=lo > 3e-3,
            fmr_over_flag_level=True,
        )

    groups = [group("F", 5e-3, 4e-3), group("M", 3.5e-3, 1e-3)]
    fairness = Fairness(3.0, 100, [Differential("gender", 1e-3, 0.3, groups, 0)])
    lines = verdict(fairness, CalibrationCheck(same_data_as_calibration=False, rates=[]))
    assert lines[0].startswith("Verdict: 1 group") and "gender=F" in lines[0]
    assert "not established" in lines[1] and lines[1].endswith("M.")


@pytest.mark.integration
def test_report_states_the_verdict_first_and_keeps_no_card_unless_asked(
    faces_dir: Path, engine: Engine, tmp_path: Path
) -> None:
    (tmp_path / "embeddings").symlink_to(CACHE)
    args = ["eval", "report", str(faces_dir / "dlib_examples/johns")]
    args += [str(faces_dir / "faceapi_bbt/identities"), "--out", str(tmp_path / "r.html")]
    args += ["--bootstrap", "100", "--cache-dir", str(tmp_path)]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert out.stdout.startswith("Verdict: ")
    assert not (tmp_path / "model-cards").exists()
    page = (tmp_path / "r.html").read_text()
    assert page.index("<h2>Verdict</h2>") < page.index("<h2>Model pack</h2>")
