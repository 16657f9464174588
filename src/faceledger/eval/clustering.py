"""Clustering measures: pairwise precision/recall/F1 and BCubed precision/recall/F1.

Pairwise: of all pairs of items put in one cluster, the fraction that are one person
(precision); of all pairs of one person, the fraction put in one cluster (recall).
BCubed (Bagga and Baldwin 1998; Amigó et al. 2009): per item, the fraction of its
cluster that is its person (precision) and the fraction of its person in its cluster
(recall), averaged over items. Singletons of the messy group are clusters of one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from faceledger.errors import InvalidArgument
from faceledger.models.calibration import Calibration
from faceledger.search import operations
from faceledger.types import FloatArray


@dataclass(frozen=True, slots=True)
class ClusteringScores:
    """Pairwise and BCubed figures with the cluster counts they came from."""

    items: int
    persons: int
    clusters: int
    messy: int
    pairwise_precision: float
    pairwise_recall: float
    pairwise_f1: float
    bcubed_precision: float
    bcubed_recall: float
    bcubed_f1: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def cluster_labels(n: int, groups: Sequence[Sequence[int]], messy: Sequence[int]) -> list[int]:
    """One cluster id per item from groups of indices and the messy group (one id each)."""
    labels = [-1] * n
    for cid, group in enumerate(groups):
        for i in group:
            labels[i] = cid
    for k, i in enumerate(messy):
        labels[i] = len(groups) + k
    if -1 in labels:
        raise InvalidArgument("every item must be in a group or in the messy group")
    return labels


def clustering_scores(
    truth: npt.NDArray[Any], predicted: npt.NDArray[Any], *, messy: int = 0
) -> ClusteringScores:
    """Pairwise and BCubed scores of predicted cluster ids against true person labels."""
    if truth.shape != predicted.shape or truth.ndim != 1 or truth.size == 0:
        raise InvalidArgument("truth and predicted must be equal-length, non-empty 1-d arrays")
    _, t = np.unique(truth, return_inverse=True)
    _, c = np.unique(predicted, return_inverse=True)
    table = np.zeros((t.max() + 1, c.max() + 1), dtype=np.int64)
    np.add.at(table, (t, c), 1)
    class_sizes = table.sum(axis=1)
    cluster_sizes = table.sum(axis=0)
    same_both = float((table * (table - 1) // 2).sum())
    same_cluster = float((cluster_sizes * (cluster_sizes - 1) // 2).sum())
    same_class = float((class_sizes * (class_sizes - 1) // 2).sum())
    pp = same_both / same_cluster if same_cluster else 1.0
    pr = same_both / same_class if same_class else 1.0
    n = truth.size
    squared = table.astype(np.float64) ** 2
    bp = float((squared / cluster_sizes[None, :]).sum() / n)
    br = float((squared / class_sizes[:, None]).sum() / n)
    return ClusteringScores(
        items=int(n),
        persons=int(class_sizes.size),
        clusters=int(cluster_sizes.size),
        messy=messy,
        pairwise_precision=pp,
        pairwise_recall=pr,
        pairwise_f1=_f1(pp, pr),
        bcubed_precision=bp,
        bcubed_recall=br,
        bcubed_f1=_f1(bp, br),
    )


def evaluate_grouping(
    embeddings: FloatArray,
    truth: npt.NDArray[Any],
    calibration: Calibration,
    *,
    max_fmr: float = 1e-3,
) -> ClusteringScores:
    """Group ``embeddings (n, d)`` as the service's ``group`` does, and score the grouping.

    Each row is its own photo, as when every image holds one face.
    """
    grouping = operations.group(
        embeddings, list(range(embeddings.shape[0])), calibration, max_fmr=max_fmr
    )
    predicted = np.array(cluster_labels(embeddings.shape[0], grouping.groups, grouping.messy_group))
    return clustering_scores(truth, predicted, messy=len(grouping.messy_group))
