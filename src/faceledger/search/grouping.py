"""Grouping unknown faces into people: Chinese Whispers on a sparse similarity graph.

A per-pair false match rate means little when n faces make n(n-1)/2 pairs: at 1e-3,
10,000 faces give about 50,000 false edges, enough to chain different people together.
So the edge threshold comes from the number of pairs: the rate of an edge is at most
``false_edges_per_face * n / pairs`` (and at most the caller's ``max_fmr``), so that the
expected false edges stay a fixed fraction of the faces however many there are (0.01 per
face by default). Labels then propagate (Biemann 2006); faces from the same photo never
share a label. Clusters with fewer than ``min_size`` faces form the "messy group", as in
Azure Face's Group.

Measured (``benchmarks/grouping.py``): on 10,000 face-like synthetic faces of about two
per person, a fixed 1e-3 per pair gave BCubed precision 0.50 (recall 0.995); 0.01 false
edges per face gives 0.99 (recall 0.99). Three refinements were measured and are off by
default because they did not help: edges only between mutual 10-nearest neighbours (same
precision on the synthetic gallery, recall 0.37 instead of 0.98 on the real labelled
union, whose persons have up to 100 faces), edge weights from calibrated false match
rates (same result, slower), a minimum group of 3 (recall 0.87 instead of 0.99).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from faceledger.errors import InvalidArgument
from faceledger.models.calibration import Calibration
from faceledger.types import FloatArray

BLOCK_CELLS = 1 << 25
"""Similarities computed at once (128 MiB of float32): rows per block = this / n."""


@dataclass(frozen=True, slots=True)
class GroupingOptions:
    """How the graph is built; the defaults are the measured ones (``benchmarks/grouping.py``).

    ``false_edges_per_face``: expected false edges per face that the edge threshold allows
    (``None``: use ``max_fmr`` as the per-pair rate, the old behaviour).
    ``neighbours``: keep an edge only if each face is among the other's nearest this many
    (0: every edge over the threshold). ``min_size``: smallest group; smaller clusters go
    to the messy group.
    """

    false_edges_per_face: float | None = 0.01
    neighbours: int = 0
    min_size: int = 2
    calibrated_weights: bool = False
    """Weigh edges by ``-log10`` of their false match rate instead of the similarity."""
    iterations: int = 30
    seed: int = 0


@dataclass(frozen=True, slots=True)
class Grouping:
    """Groups of face indices (largest first), the messy group, and the edge threshold used."""

    groups: list[list[int]]
    messy_group: list[int]
    threshold: float = 0.0
    edge_fmr: float = 0.0


def edge_rate(n: int, max_fmr: float, false_edges_per_face: float | None) -> float:
    """The per-pair false match rate of an edge among ``n`` faces."""
    if false_edges_per_face is None or n < 2:
        return max_fmr
    pairs = n * (n - 1) / 2
    return min(max_fmr, false_edges_per_face * n / pairs)


def similarity_edges(
    embeddings: FloatArray,
    threshold: float,
    *,
    neighbours: int = 0,
    offsets: FloatArray | None = None,
) -> list[list[tuple[int, float]]]:
    """Neighbours at or above ``threshold`` of each row, optionally mutual k-nearest only.

    ``offsets (n,)``, when given, are subtracted from every score a row takes part in (a
    cohort-normalised calibration's :meth:`~Calibration.face_offsets`). Cost O(n^2 d)
    time in blocks of about ``BLOCK_CELLS / n`` rows (128 MiB at a time).
    """
    n = embeddings.shape[0]
    block = max(64, BLOCK_CELLS // max(n, 1))
    adjacency: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    knn: list[set[int]] = []
    for start in range(0, n, block):
        sims = embeddings[start : start + block] @ embeddings.T
        if offsets is not None:
            sims -= offsets[start : start + block, None] + offsets[None, :]
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf
        if neighbours > 0:
            kk = min(neighbours, n - 1)
            top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk] if kk > 0 else sims[:, :0]
            knn.extend(set(row.tolist()) for row in top)
        r_idx, c_idx = np.nonzero(sims >= threshold)
        for r, c in zip(r_idx.tolist(), c_idx.tolist(), strict=True):
            adjacency[start + r].append((c, float(sims[r, c])))
    if neighbours > 0:
        adjacency = [[(j, s) for j, s in adj if i in knn[j]] for i, adj in enumerate(adjacency)]
    return adjacency


def chinese_whispers(
    embeddings: FloatArray,
    *,
    threshold: float,
    photo_ids: npt.NDArray[np.int64] | None = None,
    iterations: int = 30,
    seed: int = 0,
    neighbours: int = 0,
    calibration: Calibration | None = None,
    min_size: int = 2,
    offsets: FloatArray | None = None,
) -> Grouping:
    """Cluster ``embeddings (n, d)``; faces sharing a ``photo_ids`` value never share a group.

    Edge weights are the similarity, or ``-log10`` of its false match rate when a
    ``calibration`` is given. ``offsets`` normalise every score first (see
    :func:`similarity_edges`; ``threshold`` is then of normalised scores).
    """
    n = embeddings.shape[0]
    if n == 0:
        return Grouping([], [], threshold)
    if min_size < 1:
        raise InvalidArgument(f"min_size must be at least 1, got {min_size}")
    adjacency = similarity_edges(embeddings, threshold, neighbours=neighbours, offsets=offsets)
    if calibration is not None:
        thr = np.asarray(calibration.thresholds)
        logs = np.log10(np.asarray(calibration.fmrs))
        adjacency = [
            list(zip([j for j, _ in adj], _evidence(adj, thr, logs), strict=True))
            for adj in adjacency
        ]
    labels = list(range(n))
    photos = photo_ids.tolist() if photo_ids is not None else list(range(n))
    # How many faces of each photo hold each label: a face may not join a label that a
    # face of its own photo already holds.
    held: dict[tuple[int, int], int] = {(i, photos[i]): 1 for i in range(n)}
    rng = np.random.default_rng(seed)
    for _ in range(iterations):
        changed = 0
        for i in rng.permutation(n).tolist():
            weights: dict[int, float] = {}
            for j, w in adjacency[i]:
                weights[labels[j]] = weights.get(labels[j], 0.0) + w
            for label in sorted(weights, key=lambda lb: (-weights[lb], lb)):
                if label == labels[i]:
                    break
                if held.get((label, photos[i]), 0) == 0:
                    held[(labels[i], photos[i])] -= 1
                    held[(label, photos[i])] = held.get((label, photos[i]), 0) + 1
                    labels[i] = label
                    changed += 1
                    break
        if changed == 0:
            break
    clusters: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        clusters.setdefault(label, []).append(i)
    keep = max(min_size, 2)
    groups = sorted((c for c in clusters.values() if len(c) >= keep), key=lambda c: (-len(c), c[0]))
    messy = sorted(i for c in clusters.values() if len(c) < keep for i in c)
    return Grouping(groups, messy, threshold)


def group_faces(
    embeddings: FloatArray,
    calibration: Calibration,
    *,
    photo_ids: npt.NDArray[np.int64] | None = None,
    max_fmr: float = 1e-3,
    options: GroupingOptions | None = None,
) -> Grouping:
    """Group faces ``(n, d)`` at an edge threshold chosen from the number of pairs
    (of cohort-normalised scores under a calibration with a cohort)."""
    opts = options or GroupingOptions()
    rate = edge_rate(embeddings.shape[0], max_fmr, opts.false_edges_per_face)
    threshold = calibration.threshold_for(rate)
    found = chinese_whispers(
        embeddings,
        threshold=threshold,
        photo_ids=photo_ids,
        iterations=opts.iterations,
        seed=opts.seed,
        neighbours=opts.neighbours,
        calibration=calibration if opts.calibrated_weights else None,
        min_size=opts.min_size,
        offsets=calibration.face_offsets(embeddings) if calibration.cohort is not None else None,
    )
    return Grouping(found.groups, found.messy_group, threshold, rate)


def _evidence(
    adj: list[tuple[int, float]], thresholds: FloatArray, log_fmrs: FloatArray
) -> list[float]:
    """``-log10`` of the false match rate of each edge's similarity."""
    return (-np.interp([s for _, s in adj], thresholds, log_fmrs)).tolist()
