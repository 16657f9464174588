"""Pure verification metrics over similarity scores and same/different labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Scores = npt.NDArray[np.float32]
Labels = npt.NDArray[np.bool_]


def best_threshold(scores: Scores, labels: Labels) -> float:
    """The threshold maximising accuracy of ``score >= t`` (midpoints between sorted scores)."""
    order = np.sort(np.unique(scores))
    candidates = np.concatenate(
        [[order[0] - 1e-6], (order[:-1] + order[1:]) / 2, [order[-1] + 1e-6]]
    )
    pos = labels.astype(bool)
    # accuracy(t) = (#pos >= t + #neg < t) / n, computed for all candidates at once
    pos_sorted = np.sort(scores[pos])
    neg_sorted = np.sort(scores[~pos])
    tp = pos_sorted.size - np.searchsorted(pos_sorted, candidates, side="left")
    tn = np.searchsorted(neg_sorted, candidates, side="left")
    return float(candidates[int(np.argmax(tp + tn))])


def accuracy_at(scores: Scores, labels: Labels, threshold: float) -> float:
    """Fraction of pairs classified correctly by ``score >= threshold``."""
    return float(np.mean((scores >= threshold) == labels.astype(bool)))


@dataclass(frozen=True, slots=True)
class FoldResult:
    """K-fold verification accuracy with thresholds chosen on the other folds."""

    accuracy: float
    accuracy_std: float
    thresholds: list[float]
    fold_accuracies: list[float]


def kfold_accuracy(scores: Scores, labels: Labels, folds: npt.NDArray[np.int_]) -> FoldResult:
    """LFW-style accuracy: each fold is tested at the best threshold of the remaining folds.

    With a single fold the threshold is chosen on that same fold (no held-out data exists).
    """
    fold_ids = np.unique(folds)
    accs, thresholds = [], []
    for k in fold_ids:
        test = folds == k
        train = ~test if fold_ids.size > 1 else test
        t = best_threshold(scores[train], labels[train])
        thresholds.append(t)
        accs.append(accuracy_at(scores[test], labels[test], t))
    return FoldResult(
        accuracy=float(np.mean(accs)),
        accuracy_std=float(np.std(accs)),
        thresholds=thresholds,
        fold_accuracies=accs,
    )


def tar_at_far(scores: Scores, labels: Labels, far: float) -> float:
    """True accept rate at the threshold where the false accept rate is at most ``far``.

    The threshold is the smallest score strictly above all but ``floor(far * n_neg)`` impostors.
    """
    pos = labels.astype(bool)
    neg_scores = np.sort(scores[~pos])[::-1]
    if neg_scores.size == 0 or not pos.any():
        return float("nan")
    allowed = int(np.floor(far * neg_scores.size))
    threshold = (
        np.nextafter(neg_scores[allowed], np.float32(np.inf))
        if allowed < neg_scores.size
        else -np.inf
    )
    return float(np.mean(scores[pos] >= threshold))
