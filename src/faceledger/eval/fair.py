"""Label-free fairness calibration, fitted on some identities and measured on others.

No demographic label is used to fit or to apply either method; labels only measure.

* ``cohort`` (the default, and the one that measures best here): a comparison of faces
  ``a`` and ``b`` is corrected by how close each face lies to a *cohort*, the faces of
  the fitting identities (:mod:`faceledger.models.cohort`)::

      s' = s - (m(a) + m(b)) / 2

  where ``m(x)`` is the mean of the ``k`` highest similarities of ``x`` to the cohort.
  Faces in a crowded region of the embedding space (for this model, women's faces more
  than men's) get a higher bar, so the threshold table, fitted on normalised impostor
  scores of the fitting identities (each pair against the cohort without both its
  persons), states about the same rate for every region. The cohort travels with the
  calibration, so a search scores exactly as the check measured.
* ``fsn``: Fair Score Normalization (Terhörst et al., 2021): spherical k-means clusters of
  the embedding space, each cluster's threshold offset at a target FMR, a pair shifted by
  the mean offset of its two faces' clusters.

:func:`cross_fitted_check` fits the method and its threshold table on half the
identities, measures the other half, swaps, and pools the counts, so every identity is
measured once by a calibration that never saw it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from faceledger.errors import InvalidArgument
from faceledger.eval.verification import threshold_at_fmr
from faceledger.models.calibration import STANDARD_FMRS, Calibration, calibrate, impostor_scores
from faceledger.models.cohort import COHORT_K, Cohort, shifted
from faceledger.types import FloatArray

FairMethod = Literal["cohort", "fsn"]
CLUSTERS = 20
"""Default clusters of ``fsn`` (the paper uses 100 on far larger calibration sets)."""
TARGET_FMR = 1e-3
STATED = (1e-3, 1e-4)
TAR_FMR = 1e-3


class PairNormalizer(Protocol):
    """Normalised similarities ``(n, n)`` of every pair of rows."""

    def pair_scores(self, embeddings: FloatArray) -> FloatArray:
        """Of faces the normaliser was not fitted on."""
        ...

    def fit_scores(self, embeddings: FloatArray, persons: npt.NDArray[Any]) -> FloatArray:
        """Of the fitting identities' faces themselves (what their tables are built from)."""
        ...

    def to_dict(self) -> dict[str, Any]: ...


# -- cohort normalisation ----------------------------------------------------------------
def cohort_means(
    sims: FloatArray, persons: npt.NDArray[Any], k: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """Each row's person index and ``m (n, P)``: ``m[x, j]`` is the mean of the ``k``
    highest similarities of row ``x`` to rows of persons other than its own and ``j``.

    ``sims`` is the ``(n, n)`` similarity matrix of the rows. Fewer than ``k`` such rows:
    the mean of those there are (0 when there are none).
    """
    if k < 1:
        raise InvalidArgument(f"cohort size must be at least 1, got {k}")
    names, inv = np.unique(persons, return_inverse=True)
    inv = inv.astype(np.intp)
    n = inv.size
    largest = int(np.bincount(inv).max()) if n else 0
    take = min(k + largest, n)
    masked = np.where(inv[:, None] == inv[None, :], -np.inf, sims.astype(np.float64))
    if take < n:
        top = np.argpartition(-masked, take - 1, axis=1)[:, :take]
    else:
        top = np.broadcast_to(np.arange(n), (n, n))
    vals = np.take_along_axis(masked, top, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    vals = np.take_along_axis(vals, order, axis=1)
    owners = inv[np.take_along_axis(top, order, axis=1)]
    usable = np.isfinite(vals)
    out = np.zeros((n, names.size))
    for j in range(names.size):
        keep = usable & (owners != j)
        keep &= np.cumsum(keep, axis=1) <= k
        count = keep.sum(axis=1)
        out[:, j] = np.where(keep, vals, 0.0).sum(axis=1) / np.maximum(count, 1)
    return inv, out


@dataclass(frozen=True, slots=True)
class CohortNormalizer:
    """Cohort normalisation against the fitting identities' faces (nothing else to fit).

    ``persons`` labels the cohort's rows: a pair of fitting faces is normalised against
    the cohort without both its persons, so no face is compared with its own person.
    """

    cohort: Cohort
    persons: npt.NDArray[Any]

    def pair_scores(self, embeddings: FloatArray) -> FloatArray:
        return shifted(embeddings, self.cohort.offsets(embeddings))

    def fit_scores(self, embeddings: FloatArray, persons: npt.NDArray[Any]) -> FloatArray:
        x = self.cohort.embeddings
        if embeddings.shape != x.shape or not np.array_equal(persons, self.persons):
            raise InvalidArgument("fit_scores takes the cohort's own faces and persons")
        sims = x @ x.T
        inv, m = cohort_means(sims, self.persons, self.cohort.k)
        ma = m[:, inv]  # ma[a, b]: a's cohort mean without b's person
        return np.asarray(sims - (ma + ma.T) / 2, dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"method": "cohort", "k": self.cohort.k, "cohort_faces": self.cohort.size}


# -- fair score normalisation (FSN) ------------------------------------------------------
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
        return shifted(embeddings, self.shift(embeddings).astype(np.float32))

    def fit_scores(self, embeddings: FloatArray, persons: npt.NDArray[Any]) -> FloatArray:
        return self.pair_scores(embeddings)

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


def fit_normalizer(
    method: FairMethod,
    embeddings: FloatArray,
    persons: npt.NDArray[Any],
    *,
    clusters: int = CLUSTERS,
    cohort_k: int = COHORT_K,
    seed: int = 0,
) -> PairNormalizer:
    """The normaliser of ``method`` for the fitting identities (``cohort``: their faces)."""
    if method == "cohort":
        return CohortNormalizer(Cohort(embeddings, cohort_k), np.asarray(persons))
    if method == "fsn":
        return fit_fsn(embeddings, persons, clusters=clusters, seed=seed)
    raise InvalidArgument(f"unknown fairness method {method!r}: cohort or fsn")


def fair_calibration(
    normalizer: PairNormalizer,
    embeddings: FloatArray,
    labels: npt.NDArray[Any],
    *,
    source: str,
) -> Calibration:
    """The per-comparison table of normalised impostor scores of the fitting identities.
    A cohort normaliser's cohort goes with it, so searches under it would normalise."""
    return calibrate(
        impostor_scores(embeddings, labels, normalizer.fit_scores(embeddings, labels)),
        source=source,
        fmrs=STANDARD_FMRS,
        meta={"fair": normalizer.to_dict()},
        cohort=normalizer.cohort if isinstance(normalizer, CohortNormalizer) else None,
    )


# -- measurement -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Counts:
    """False matches among impostor pairs and false non-matches among genuine pairs."""

    false_matches: int = 0
    impostor_pairs: int = 0
    false_non_matches: int = 0
    genuine_pairs: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.false_matches + other.false_matches,
            self.impostor_pairs + other.impostor_pairs,
            self.false_non_matches + other.false_non_matches,
            self.genuine_pairs + other.genuine_pairs,
        )

    @property
    def fmr(self) -> float:
        return self.false_matches / self.impostor_pairs if self.impostor_pairs else 0.0

    @property
    def fnmr(self) -> float:
        return self.false_non_matches / self.genuine_pairs if self.genuine_pairs else 0.0


@dataclass(frozen=True, slots=True)
class GroupPoint:
    """One group's pairs (both faces in the group) at one stated FMR, without and with."""

    stated_fmr: float
    group: str
    plain: Counts
    fair: Counts


@dataclass(frozen=True, slots=True)
class FoldResult:
    """The measured identities of one fold (or of all folds pooled).

    ``tar_*``: genuine pairs accepted at the threshold giving FMR 1e-3 over all the
    measured impostor pairs (as :class:`Counts` of false non-matches).
    """

    fit_identities: int
    measured_identities: int
    points: tuple[GroupPoint, ...]
    tar_plain: Counts
    tar_fair: Counts

    def __add__(self, other: FoldResult) -> FoldResult:
        pooled = tuple(
            GroupPoint(a.stated_fmr, a.group, a.plain + b.plain, a.fair + b.fair)
            for a, b in zip(self.points, other.points, strict=True)
        )
        return FoldResult(
            self.fit_identities + other.fit_identities,
            self.measured_identities + other.measured_identities,
            pooled,
            self.tar_plain + other.tar_plain,
            self.tar_fair + other.tar_fair,
        )

    def fmr_ratio(self, stated: float, *, fair: bool) -> float | None:
        """Worst group's FMR over the best's at one stated rate (``None``: best is 0)."""
        rates = [(p.fair if fair else p.plain).fmr for p in self.points if p.stated_fmr == stated]
        return None if not rates or min(rates) == 0 else max(rates) / min(rates)


@dataclass(frozen=True, slots=True)
class FairCheck:
    """A method measured by cross-fitting: each fold, and the folds' counts pooled."""

    method: FairMethod
    folds: tuple[FoldResult, ...]

    @property
    def pooled(self) -> FoldResult:
        total = self.folds[0]
        for f in self.folds[1:]:
            total = total + f
        return total

    def to_dict(self) -> dict[str, Any]:
        def one(f: FoldResult) -> dict[str, Any]:
            return {
                **asdict(f),
                "fmr_ratio": {
                    f"{s:g}": {
                        "plain": f.fmr_ratio(s, fair=False),
                        "fair": f.fmr_ratio(s, fair=True),
                    }
                    for s in sorted({p.stated_fmr for p in f.points}, reverse=True)
                },
                "tar_at_fmr_1e-3": {
                    "plain": 1 - f.tar_plain.fnmr,
                    "fair": 1 - f.tar_fair.fnmr,
                },
            }

        return {
            "method": self.method,
            "folds": [one(f) for f in self.folds],
            "pooled": one(self.pooled),
        }


def _counts(
    scores: FloatArray, t: float, genuine: npt.NDArray[np.bool_], impostor: npt.NDArray[np.bool_]
) -> Counts:
    return Counts(
        int(np.sum(scores[impostor] >= t)),
        int(impostor.sum()),
        int(np.sum(scores[genuine] < t)),
        int(genuine.sum()),
    )


def measure_fold(
    plain: Calibration,
    fair: Calibration,
    normalizer: PairNormalizer,
    embeddings: FloatArray,
    labels: npt.NDArray[Any],
    groups: npt.NDArray[np.str_],
    *,
    fit_identities: int,
    stated: tuple[float, ...] = STATED,
) -> FoldResult:
    """Per-group FMR and FNMR at each stated rate of the ``plain`` and ``fair`` tables on
    identities neither has seen, and TAR at FMR 1e-3. ``groups`` only measure."""
    iu = np.triu_indices(len(labels), k=1)
    same = labels[iu[0]] == labels[iu[1]]
    raw = (embeddings @ embeddings.T)[iu]
    normed = normalizer.pair_scores(embeddings)[iu]
    points = []
    for f in stated:
        t, tf = plain.threshold_for(f), fair.threshold_for(f)
        for g in sorted(set(groups.tolist()) - {""}):
            inside = (groups[iu[0]] == g) & (groups[iu[1]] == g)
            points.append(
                GroupPoint(
                    f,
                    g,
                    _counts(raw, t, inside & same, inside & ~same),
                    _counts(normed, tf, inside & same, inside & ~same),
                )
            )
    none = np.zeros_like(same)
    return FoldResult(
        fit_identities,
        int(np.unique(labels).size),
        tuple(points),
        _counts(raw, threshold_at_fmr(raw[~same], TAR_FMR), same, none),
        _counts(normed, threshold_at_fmr(normed[~same], TAR_FMR), same, none),
    )


def cross_fitted_check(
    embeddings: FloatArray,
    labels: npt.NDArray[Any],
    groups: npt.NDArray[np.str_],
    *,
    method: FairMethod = "cohort",
    clusters: int = CLUSTERS,
    cohort_k: int = COHORT_K,
    stated: tuple[float, ...] = STATED,
    seed: int = 0,
) -> FairCheck:
    """Fit on half the identities (alternate names, sorted), measure on the other half,
    then swap. The plain table is fitted on the same half, so both sides are measured on
    identities neither has seen. ``groups`` (one per row) only measure."""
    names = np.unique(labels)
    if names.size < 4:
        raise InvalidArgument(f"a cross-fitted check needs at least 4 identities, got {names.size}")
    folds = []
    for fold in (0, 1):
        fit = np.isin(labels, names[fold::2])
        fe, fl = embeddings[fit], labels[fit]
        normalizer = fit_normalizer(method, fe, fl, clusters=clusters, cohort_k=cohort_k, seed=seed)
        plain = calibrate(impostor_scores(fe, fl), source="fit half")
        fair = fair_calibration(normalizer, fe, fl, source="fit half, normalised")
        folds.append(
            measure_fold(
                plain,
                fair,
                normalizer,
                embeddings[~fit],
                labels[~fit],
                groups[~fit],
                fit_identities=int(np.unique(fl).size),
                stated=stated,
            )
        )
    return FairCheck(method, tuple(folds))
