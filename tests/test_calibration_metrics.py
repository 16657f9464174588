"""Threshold tables and verification metrics, checked against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from faceledger.errors import InvalidArgument
from faceledger.eval.metrics import best_threshold, kfold_accuracy, tar_at_far
from faceledger.models.calibration import Calibration, calibrate, impostor_scores


def test_calibrated_thresholds_give_the_stated_rate() -> None:
    rng = np.random.default_rng(1)
    impostors = rng.normal(0.0, 0.07, 2_000_000).astype(np.float32)
    cal = calibrate(impostors, source="synthetic")
    for fmr in (1e-2, 1e-3, 1e-4):
        measured = float(np.mean(impostors >= cal.threshold_for(fmr)))
        assert measured <= fmr * 1.05 and measured >= fmr * 0.8
    assert list(cal.thresholds) == sorted(cal.thresholds)
    assert cal.extrapolated[-1] and not cal.extrapolated[cal.fmrs.index(1e-4)]
    # fmr_at inverts threshold_for
    assert cal.fmr_at(cal.threshold_for(1e-3)) == pytest.approx(1e-3, rel=1e-6)
    assert Calibration.from_dict(cal.to_dict()).thresholds == pytest.approx(
        cal.thresholds, abs=1e-5
    )


def test_calibration_refuses_too_little_data_and_bad_rates() -> None:
    with pytest.raises(InvalidArgument):
        calibrate(np.zeros(10, np.float32), source="x")
    cal = calibrate(np.random.default_rng(0).normal(size=5000).astype(np.float32), source="x")
    with pytest.raises(InvalidArgument):
        cal.threshold_for(0.0)


def test_impostor_scores_are_cross_identity_pairs_only() -> None:
    emb = np.eye(4, dtype=np.float32)
    labels = np.array(["a", "a", "b", "c"])
    assert impostor_scores(emb, labels).size == 5  # 6 pairs minus the one a-a pair


def test_tar_at_far_matches_sklearn_roc() -> None:
    rng = np.random.default_rng(2)
    genuine = rng.normal(0.6, 0.1, 3000)
    impostor = rng.normal(0.0, 0.1, 20000)
    scores = np.concatenate([genuine, impostor]).astype(np.float32)
    labels = np.concatenate([np.ones(3000, bool), np.zeros(20000, bool)])
    fpr, tpr, _ = roc_curve(labels, scores)
    for far in (1e-2, 1e-3):
        expected = float(tpr[np.searchsorted(fpr, far, side="right") - 1])
        assert tar_at_far(scores, labels, far) == pytest.approx(expected, abs=1e-3)


def test_best_threshold_and_kfold() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9], np.float32)
    labels = np.array([0, 0, 0, 1, 1, 1], bool)
    t = best_threshold(scores, labels)
    assert 0.3 < t < 0.7
    result = kfold_accuracy(scores, labels, np.array([0, 1, 0, 1, 0, 1]))
    assert result.accuracy == 1.0 and len(result.thresholds) == 2
