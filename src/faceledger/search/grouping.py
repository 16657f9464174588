"""Grouping unknown faces into people: Chinese Whispers on the similarity graph.

Edges join faces whose similarity reaches a threshold (from the pack's calibration);
labels then propagate (Biemann 2006). Faces from the same photo are never given the same
label: a face cannot adopt a label already held by another face of its photo.
Clusters of one face form the "messy group", as in Azure Face's Group.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from faceledger.types import FloatArray

BLOCK = 2048


@dataclass(frozen=True, slots=True)
class Grouping:
    """Groups of face indices (largest first) and the messy group of singletons."""

    groups: list[list[int]]
    messy_group: list[int]


def similarity_edges(embeddings: FloatArray, threshold: float) -> list[list[tuple[int, float]]]:
    """Neighbours at or above ``threshold`` of each row; cost O(n^2 d) in blocks of 2,048 rows."""
    n = embeddings.shape[0]
    adjacency: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    for start in range(0, n, BLOCK):
        sims = embeddings[start : start + BLOCK] @ embeddings.T
        rows, cols = np.nonzero(sims >= threshold)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i = start + r
            if i != c:
                adjacency[i].append((c, float(sims[r, c])))
    return adjacency


def chinese_whispers(
    embeddings: FloatArray,
    *,
    threshold: float,
    photo_ids: npt.NDArray[np.int64] | None = None,
    iterations: int = 30,
    seed: int = 0,
) -> Grouping:
    """Cluster ``embeddings (n, d)``; faces sharing a ``photo_ids`` value never share a group."""
    n = embeddings.shape[0]
    if n == 0:
        return Grouping([], [])
    adjacency = similarity_edges(embeddings, threshold)
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
    groups = sorted((c for c in clusters.values() if len(c) > 1), key=lambda c: (-len(c), c[0]))
    messy = sorted(c[0] for c in clusters.values() if len(c) == 1)
    return Grouping(groups, messy)
