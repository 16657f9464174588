"""Per-group differentials: false match and false non-match rates within each group.

As in NIST FRTE's demographic reports (NIST IR 8280), the false match rate of a group
is measured on impostor pairs whose two images both belong to that group, at one fixed
threshold: the pack's threshold for a stated operating rate. The false non-match rate of
a group is measured on its genuine pairs. Confidence intervals come from a bootstrap
over identities (resampling persons, not pairs, since one person's pairs are not
independent). A group is flagged only when the lower bound of its FMR's interval exceeds
``FLAG_FACTOR`` times the stated rate: the data then show, not merely allow, a group
falsely matched that much more often. A point estimate over that level whose interval
reaches below it is reported (``fmr_over_flag_level``) but not flagged.

Operating guidance: each group is also told the threshold that would give it the stated
rate among its own impostor pairs (``group_threshold``). It is reported, never applied:
the operator chooses a threshold, and a search records the one it used.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from faceledger.errors import InvalidArgument
from faceledger.models.calibration import MIN_EXCEEDANCES
from faceledger.types import FloatArray

FLAG_FACTOR = 3.0
BLOCK = 1024
Counts = npt.NDArray[np.float64]


def pair_counts(
    embeddings: FloatArray, identity: npt.NDArray[np.intp], thresholds: list[float]
) -> tuple[Counts, Counts]:
    """Pairs at or above each threshold between and within identities.

    Returns ``(accepted (t, k, k), pairs (k, k))``: off the diagonal, unordered
    cross-identity pairs of persons ``a`` and ``b`` (each counted at ``[a, b]`` and at
    ``[b, a]``); on it, twice the genuine pairs of ``a``. Cost O(n^2 d).
    """
    n = embeddings.shape[0]
    k = int(identity.max()) + 1 if n else 0
    onehot = np.zeros((n, k), dtype=np.float64)
    onehot[np.arange(n), identity] = 1.0
    accepted = np.zeros((len(thresholds), k, k), dtype=np.float64)
    for start in range(0, n, BLOCK):
        sims = embeddings[start : start + BLOCK] @ embeddings.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf  # an image is no pair with itself
        for ti, t in enumerate(thresholds):
            hits = (sims >= t).astype(np.float64)
            accepted[ti] += onehot[start : start + BLOCK].T @ (hits @ onehot)
    sizes = onehot.sum(axis=0)
    pairs = np.outer(sizes, sizes)
    pairs[np.diag_indices(k)] = sizes * (sizes - 1)
    return accepted, pairs


def highest_impostor_scores(
    embeddings: FloatArray, identity: npt.NDArray[np.intp], count: int
) -> FloatArray:
    """The ``count`` highest scores of cross-identity pairs (each unordered pair once),
    in descending order. Cost O(n^2 d / 2), memory O(count + BLOCK n)."""
    n = embeddings.shape[0]
    top = np.empty(0, dtype=np.float32)
    if count <= 0:
        return top
    for start in range(0, n, BLOCK):
        sims = embeddings[start : start + BLOCK] @ embeddings[start:].T
        rows = np.arange(sims.shape[0])
        upper = np.arange(sims.shape[1])[None, :] > rows[:, None]  # j > i only
        impostor = identity[start : start + BLOCK, None] != identity[None, start:]
        scores = sims[upper & impostor].astype(np.float32)
        top = np.concatenate([top, scores])
        if top.size > count:
            top = np.partition(top, top.size - count)[-count:]
    return np.sort(top)[::-1]


def threshold_for_rate(top: FloatArray, impostor_pairs: int, rate: float) -> float:
    """The lowest threshold at which at most ``rate`` of ``impostor_pairs`` score at or
    above it, from the highest impostor scores ``top`` (descending); NaN when the rate
    allows no false match among the pairs (nothing to measure it by)."""
    allowed = int(np.floor(rate * impostor_pairs))
    if allowed < 1 or allowed >= top.size:
        return float("nan")
    return float(np.nextafter(np.float32(top[allowed]), np.float32(np.inf)))


@dataclass(frozen=True, slots=True)
class GroupRates:
    """FMR and FNMR of one group with bootstrap intervals.

    ``flagged`` when the interval's lower bound exceeds ``FLAG_FACTOR`` x the stated FMR;
    ``fmr_over_flag_level`` when the point estimate does.
    """

    group: str
    identities: int
    images: int
    impostor_pairs: int
    false_matches: int
    genuine_pairs: int
    false_non_matches: int
    fmr: float
    fmr_ci: tuple[float, float]
    fnmr: float
    fnmr_ci: tuple[float, float]
    enough_impostors: bool
    flagged: bool
    fmr_over_flag_level: bool = False
    group_threshold: float = float("nan")
    """The lowest threshold at which this group's own impostor pairs are falsely matched
    at most at the stated rate (NaN when too few pairs to tell): guidance, never applied."""


def _rates(w: Counts, acc: Counts, pairs: Counts) -> tuple[Counts, Counts]:
    """FMR and FNMR for identity weights ``w (b, k)`` (bootstrap counts or ones)."""
    off = ~np.eye(acc.shape[0], dtype=bool)
    fm = np.einsum("bi,ij,bj->b", w, np.where(off, acc, 0.0), w)
    imp = np.einsum("bi,ij,bj->b", w, np.where(off, pairs, 0.0), w)
    gen = np.diag(pairs) / 2
    fnm = gen - np.diag(acc) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return fm / imp, (w @ fnm) / (w @ gen)


def group_rates(
    embeddings: FloatArray,
    persons: npt.NDArray[Any],
    *,
    group: str,
    thresholds: list[float],
    stated_fmrs: list[float],
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[GroupRates]:
    """The rates of one group's images ``(m, d)`` at each threshold (one per stated rate)."""
    names, identity = np.unique(persons, return_inverse=True)
    accepted, pairs = pair_counts(embeddings, identity.astype(np.intp), thresholds)
    k = names.size
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(k, np.full(k, 1.0 / k), size=bootstrap).astype(np.float64)
    lo, hi = 50 * (1 - confidence), 50 * (1 + confidence)
    impostor_pairs = int((pairs.sum() - np.trace(pairs)) / 2)
    genuine_pairs = int(np.trace(pairs) / 2)
    needed = max(int(np.floor(f * impostor_pairs)) + 1 for f in stated_fmrs)
    top = highest_impostor_scores(embeddings, identity.astype(np.intp), min(needed, impostor_pairs))
    out = []
    for acc, stated in zip(accepted, stated_fmrs, strict=True):
        fmr, fnmr = (float(x[0]) for x in _rates(np.ones((1, k)), acc, pairs))
        boot_fmr, boot_fnmr = _rates(weights, acc, pairs)
        false_matches = round(float(acc.sum() - np.trace(acc)) / 2)

        def ci(values: Counts) -> tuple[float, float]:
            if np.all(np.isnan(values)):
                return (float("nan"), float("nan"))
            return (float(np.nanpercentile(values, lo)), float(np.nanpercentile(values, hi)))

        fmr_ci = ci(boot_fmr)
        level = FLAG_FACTOR * stated
        out.append(
            GroupRates(
                group=group,
                identities=int(k),
                images=int(embeddings.shape[0]),
                impostor_pairs=impostor_pairs,
                false_matches=false_matches,
                genuine_pairs=genuine_pairs,
                false_non_matches=round(genuine_pairs - float(np.trace(acc)) / 2),
                fmr=fmr,
                fmr_ci=fmr_ci,
                fnmr=fnmr,
                fnmr_ci=ci(boot_fnmr),
                enough_impostors=stated * impostor_pairs >= MIN_EXCEEDANCES,
                flagged=bool(not np.isnan(fmr_ci[0]) and fmr_ci[0] > level),
                fmr_over_flag_level=bool(fmr > level),
                group_threshold=threshold_for_rate(top, impostor_pairs, stated),
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class Differential:
    """One group column at one stated rate: every group's rates and worst/best ratios."""

    column: str
    stated_fmr: float
    threshold: float
    groups: list[GroupRates]
    unlabelled_images: int

    def _ratio(self, attr: str) -> float | None:
        values = [getattr(g, attr) for g in self.groups if not np.isnan(getattr(g, attr))]
        if len(values) < 2 or min(values) == 0:
            return None
        return float(max(values) / min(values))

    @property
    def fmr_ratio(self) -> float | None:
        """Worst group's FMR over the best's (``None`` when the best has no false match)."""
        return self._ratio("fmr")

    @property
    def fnmr_ratio(self) -> float | None:
        return self._ratio("fnmr")

    @property
    def flagged_groups(self) -> list[str]:
        """The groups whose whole FMR interval lies above the flag level."""
        return [g.group for g in self.groups if g.flagged]

    def to_dict(self) -> dict[str, object]:
        def clean(x: float) -> float | None:
            return None if np.isnan(x) else x

        return {
            "column": self.column,
            "stated_fmr": self.stated_fmr,
            "threshold": self.threshold,
            "fmr_ratio_worst_to_best": self.fmr_ratio,
            "fnmr_ratio_worst_to_best": self.fnmr_ratio,
            "flagged_groups": self.flagged_groups,
            "unlabelled_images": self.unlabelled_images,
            "groups": [
                {
                    **{f.name: getattr(g, f.name) for f in fields(GroupRates)},
                    "fmr": clean(g.fmr),
                    "fnmr": clean(g.fnmr),
                    "group_threshold": clean(g.group_threshold),
                    "fmr_ci": [clean(x) for x in g.fmr_ci],
                    "fnmr_ci": [clean(x) for x in g.fnmr_ci],
                }
                for g in self.groups
            ],
        }


def differentials(
    embeddings: FloatArray,
    persons: npt.NDArray[Any],
    columns: dict[str, npt.NDArray[np.str_]],
    *,
    operating: list[tuple[float, float]],
    bootstrap: int = 1000,
    seed: int = 0,
) -> list[Differential]:
    """Per-group rates for every column at each ``(stated_fmr, threshold)`` operating point.

    A column holds one group value per image; ``""`` marks an unlabelled image.
    """
    if not operating:
        raise InvalidArgument("at least one operating point (stated FMR, threshold) is needed")
    stated = [f for f, _ in operating]
    thresholds = [t for _, t in operating]
    out: list[Differential] = []
    for column, values in columns.items():
        if values.shape != persons.shape:
            raise InvalidArgument(f"column {column!r} must have one value per image")
        per_group = {
            g: group_rates(
                embeddings[values == g],
                persons[values == g],
                group=str(g),
                thresholds=thresholds,
                stated_fmrs=stated,
                bootstrap=bootstrap,
                seed=seed,
            )
            for g in sorted(set(values.tolist()) - {""})
        }
        unlabelled = int(np.count_nonzero(values == ""))
        for i, (f, t) in enumerate(operating):
            groups = [rates[i] for rates in per_group.values()]
            out.append(Differential(column, f, t, groups, unlabelled))
    return out
