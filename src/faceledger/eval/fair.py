"""Label-free fairness calibration: Fair Score Normalization (Terhörst et al., 2021).

No demographic label is used to fit or to apply it. The embedding space of calibration
faces is split into ``clusters`` by spherical k-means; each cluster gets the threshold at
which impostor pairs involving its faces reach the target false match rate, and the
offset of that threshold from the global one. A pair's score is then shifted by the mean
of its two faces' offsets:

    s' = s - (d[c(a)] + d[c(b)]) / 2,   d[c] = t_c - t_global

so that regions of the face space where impostors score high (for this model, women's
faces more than men's) need a higher raw similarity to match. Fitted on one set of
identities, measured on a disjoint one (:func:`compare_by_group`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from faceledger.errors import InvalidArgument
from faceledger.eval.verification import all_pair_scores, threshold_at_fmr
from faceledger.models.calibration import STANDARD_FMRS, Calibration, calibrate
from faceledger.types import FloatArray

CLUSTERS = 20
"""Default clusters (the paper uses 100 on far larger calibration sets)."""
TARGET_FMR = 1e-3


@dataclass(frozen=True, slots=True)
class FairNormalizer:
    """Cluster centroids ``(c, d)`` float32 (unit rows) and each cluster's score offset."""

    centroids: FloatArray
    offsets: npt.NDArray[np.float64]
    target_fmr: float

    def assign(self, embeddings: FloatArray) -> npt.NDArray[np.intp]:
        """The nearest centroid (by cosine) of each row of ``embeddings (n, d)``."""
        return np.asarray(np.argmax(embeddings @ self.centroids.T, axis=1), dtype=np.intp)

    def shift(self, embeddings: FloatArray) -> npt.NDArray[np.float64]:
        """Half the offset of each face's cluster: what it subtracts from any pair score."""
        return self.offsets[self.assign(embeddings)] / 2

    def pair_scores(self, embeddings: FloatArray) -> FloatArray:
        """Normalised similarities ``(n, n)`` of every pair of rows."""
        h = self.shift(embeddings)
        return np.asarray(embeddings @ embeddings.T - h[:, None] - h[None, :], dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "fair score normalization (Terhörst et al. 2021)",
            "target_fmr": self.target_fmr,
            "offsets": [round(float(x), 5) for x in self.offsets],
            "centroids": [[round(float(v), 5) for v in row] for row in self.centroids],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FairNormalizer:
        c = np.asarray(data["centroids"], dtype=np.float32)
        c /= np.linalg.norm(c, axis=1, keepdims=True)
        return cls(c, np.asarray(data["offsets"], dtype=np.float64), float(data["target_fmr"]))


def spherical_kmeans(x: FloatArray, k: int, *, iterations: int = 50, seed: int = 0) -> FloatArray:
    """``k`` unit centroids of the unit rows of ``x (n, d)`` (k-means++ start, cosine)."""
    if not 1 <= k <= x.shape[0]:
        raise InvalidArgument(f"clusters must be in [1, {x.shape[0]}], got {k}")
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(x.shape[0])]]
    for _ in range(1, k):
        d = 1.0 - np.max(x @ np.stack(centres).T, axis=1)
        p = np.maximum(d, 0) ** 2
        centres.append(x[rng.choice(x.shape[0], p=p / p.sum())] if p.sum() > 0 else x[0])
    c = np.stack(centres).astype(np.float32)
    for _ in range(iterations):
        assign = np.argmax(x @ c.T, axis=1)
        new = np.stack(
            [x[assign == j].sum(axis=0) if np.any(assign == j) else c[j] for j in range(k)]
        )
        new /= np.linalg.norm(new, axis=1, keepdims=True)
        if np.allclose(new, c):
            break
        c = new.astype(np.float32)
    return c


def fit_fsn(
    embeddings: FloatArray,
    labels: npt.NDArray[Any],
    *,
    clusters: int = CLUSTERS,
    target_fmr: float = TARGET_FMR,
    seed: int = 0,
) -> FairNormalizer:
    """Fit cluster offsets on labelled identities (identity labels only, no groups).

    Impostor pairs with at least one face in a cluster give that cluster's threshold at
    ``target_fmr``; a cluster with fewer than ``10 / target_fmr`` such pairs keeps offset 0.
    """
    centroids = spherical_kmeans(embeddings, clusters, seed=seed)
    assign = np.argmax(embeddings @ centroids.T, axis=1)
    sims = embeddings @ embeddings.T
    iu = np.triu_indices(len(labels), k=1)
    cross = labels[iu[0]] != labels[iu[1]]
    a, b, s = iu[0][cross], iu[1][cross], sims[iu][cross]
    global_t = threshold_at_fmr(s, target_fmr)
    offsets = np.zeros(clusters)
    for c in range(clusters):
        mine = s[(assign[a] == c) | (assign[b] == c)]
        if mine.size * target_fmr >= 10:
            offsets[c] = threshold_at_fmr(mine, target_fmr) - global_t
    return FairNormalizer(centroids, offsets, target_fmr)


def fair_calibration(
    normalizer: FairNormalizer, embeddings: FloatArray, labels: npt.NDArray[Any], *, source: str
) -> Calibration:
    """The threshold table of normalised scores of the fitting identities."""
    scores = normalizer.pair_scores(embeddings)
    iu = np.triu_indices(len(labels), k=1)
    cross = labels[iu[0]] != labels[iu[1]]
    return calibrate(
        np.ascontiguousarray(scores[iu][cross]),
        source=source,
        fmrs=STANDARD_FMRS,
        meta={"fair": normalizer.to_dict()},
    )


@dataclass(frozen=True, slots=True)
class GroupPoint:
    """FMR and FNMR of one group at one stated rate, with and without normalisation."""

    stated_fmr: float
    group: str
    fmr: float
    fnmr: float
    fair_fmr: float
    fair_fnmr: float
    impostor_pairs: int


def compare_by_group(
    normalizer: FairNormalizer,
    plain: Calibration,
    fair: Calibration,
    embeddings: FloatArray,
    labels: npt.NDArray[Any],
    groups: npt.NDArray[np.str_],
    *,
    stated: tuple[float, ...] = (1e-3, 1e-4),
) -> dict[str, Any]:
    """Per-group FMR (pairs within the group) and FNMR at each stated rate, and overall TAR
    at FMR 1e-3, without (``plain`` table) and with normalisation (``fair`` table).

    ``groups`` are used only to measure, never to fit or to score.
    """
    raw = embeddings @ embeddings.T
    normed = normalizer.pair_scores(embeddings)
    iu = np.triu_indices(len(labels), k=1)
    same = labels[iu[0]] == labels[iu[1]]
    rows: list[GroupPoint] = []
    for f in stated:
        t, tf = plain.threshold_for(f), fair.threshold_for(f)
        for g in sorted(set(groups.tolist()) - {""}):
            inside = (groups[iu[0]] == g) & (groups[iu[1]] == g)
            imp, gen = inside & ~same, inside & same
            r, n = raw[iu], normed[iu]
            rows.append(
                GroupPoint(
                    f,
                    g,
                    float(np.mean(r[imp] >= t)),
                    float(np.mean(r[gen] < t)),
                    float(np.mean(n[imp] >= tf)),
                    float(np.mean(n[gen] < tf)),
                    int(imp.sum()),
                )
            )
    plain_scores = all_pair_scores(embeddings, labels)
    n_all = normed[iu]
    tar_plain = _tar(plain_scores.genuine, plain_scores.impostor, 1e-3)
    tar_fair = _tar(n_all[same], n_all[~same], 1e-3)
    return {"groups": rows, "tar_at_fmr_1e-3": {"plain": tar_plain, "fair": tar_fair}}


def _tar(genuine: FloatArray, impostor: FloatArray, fmr: float) -> float:
    t = threshold_at_fmr(impostor, fmr)
    return float(np.mean(genuine >= t))


def worst_to_best(rows: list[GroupPoint], stated: float, attr: str) -> float | None:
    """The worst group's rate over the best's at one stated FMR (``None``: best is 0)."""
    values = [getattr(r, attr) for r in rows if r.stated_fmr == stated]
    return None if not values or min(values) == 0 else float(max(values) / min(values))


def two_fold_check(
    embeddings: FloatArray,
    labels: npt.NDArray[Any],
    groups: npt.NDArray[np.str_],
    *,
    clusters: int = CLUSTERS,
    stated: tuple[float, ...] = (1e-3, 1e-4),
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Fit on half the identities (alternate names, sorted), measure on the other half,
    then swap. ``groups`` (one per row) only measure. The plain table is fitted on the
    same half, so both sides are compared on identities neither has seen."""
    names = np.unique(labels)
    out = []
    for fold in (0, 1):
        fit = np.isin(labels, names[fold::2])
        fe, fl = embeddings[fit], labels[fit]
        normalizer = fit_fsn(fe, fl, clusters=clusters, seed=seed)
        plain = calibrate(all_pair_scores(fe, fl).impostor, source="fit half")
        fair = fair_calibration(normalizer, fe, fl, source="fit half, normalised")
        found = compare_by_group(
            normalizer,
            plain,
            fair,
            embeddings[~fit],
            labels[~fit],
            groups[~fit],
            stated=stated,
        )
        rows: list[GroupPoint] = found["groups"]
        out.append(
            {
                "fold": fold,
                "fit_identities": int(np.unique(fl).size),
                "measured_identities": int(np.unique(labels[~fit]).size),
                "groups": [{f.name: getattr(r, f.name) for f in fields(GroupPoint)} for r in rows],
                "fmr_ratio": {
                    f"{f:g}": {
                        "plain": worst_to_best(rows, f, "fmr"),
                        "fair": worst_to_best(rows, f, "fair_fmr"),
                    }
                    for f in stated
                },
                "tar_at_fmr_1e-3": found["tar_at_fmr_1e-3"],
            }
        )
    return out
