"""Threshold tables: similarity threshold versus false match rate, built from impostor pairs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from faceledger.errors import InvalidArgument

STANDARD_FMRS: tuple[float, ...] = (
    5e-1,
    2e-1,
    1e-1,
    3e-2,
    1e-2,
    3e-3,
    1e-3,
    3e-4,
    1e-4,
    3e-5,
    1e-5,
    3e-6,
    1e-6,
)
MIN_EXCEEDANCES = 10
"""A table entry is empirical only if at least this many impostor pairs score above it."""


@dataclass(frozen=True, slots=True)
class Calibration:
    """A monotone table of ``(fmr, threshold)`` points with how it was made.

    ``fmrs`` decrease and ``thresholds`` increase. Points with fewer than
    ``MIN_EXCEEDANCES`` impostor pairs above them are extrapolated from a normal fit to
    the upper tail and flagged in ``extrapolated``.
    """

    fmrs: tuple[float, ...]
    thresholds: tuple[float, ...]
    extrapolated: tuple[bool, ...]
    impostor_pairs: int
    source: str
    meta: dict[str, Any] = field(default_factory=dict)

    def threshold_for(self, max_fmr: float) -> float:
        """The smallest similarity whose false match rate is at most ``max_fmr``."""
        if not 0.0 < max_fmr < 1.0:
            raise InvalidArgument(f"false match rate must be in (0, 1), got {max_fmr}")
        logs = np.log10(np.array(self.fmrs))
        target = math.log10(max_fmr)
        if target >= logs[0]:
            return self.thresholds[0]
        if target <= logs[-1]:
            return self.thresholds[-1]
        # np.interp needs increasing x: fmr logs decrease, so reverse both.
        return float(np.interp(target, logs[::-1], np.array(self.thresholds)[::-1]))

    def fmr_at(self, similarity: float) -> float:
        """Estimated false match rate of a pair with this similarity (log-linear interpolation)."""
        thr = np.array(self.thresholds)
        logs = np.log10(np.array(self.fmrs))
        if similarity <= thr[0]:
            return float(self.fmrs[0])  # the table's top rate (0.5): no evidence of a match
        if similarity >= thr[-1]:
            return float(self.fmrs[-1])
        return float(10 ** np.interp(similarity, thr, logs))

    def to_dict(self) -> dict[str, Any]:
        return {
            "fmrs": list(self.fmrs),
            "thresholds": [round(t, 5) for t in self.thresholds],
            "extrapolated": list(self.extrapolated),
            "impostor_pairs": self.impostor_pairs,
            "source": self.source,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        return cls(
            fmrs=tuple(float(x) for x in data["fmrs"]),
            thresholds=tuple(float(x) for x in data["thresholds"]),
            extrapolated=tuple(bool(x) for x in data["extrapolated"]),
            impostor_pairs=int(data["impostor_pairs"]),
            source=str(data["source"]),
            meta=dict(data.get("meta", {})),
        )


def impostor_scores(
    embeddings: npt.NDArray[np.float32], labels: npt.NDArray[Any]
) -> npt.NDArray[np.float32]:
    """All cross-identity similarities of ``embeddings (n, d)``, each unordered pair once."""
    sims = embeddings @ embeddings.T
    iu = np.triu_indices(len(labels), k=1)
    cross = labels[iu[0]] != labels[iu[1]]
    return np.ascontiguousarray(sims[iu][cross], dtype=np.float32)


def calibrate(
    impostors: npt.NDArray[np.float32],
    *,
    source: str,
    fmrs: tuple[float, ...] = STANDARD_FMRS,
    meta: dict[str, Any] | None = None,
) -> Calibration:
    """Build a threshold table from impostor similarities.

    The threshold at rate ``f`` is the ``1 - f`` empirical quantile of the impostor
    scores. Where fewer than ``MIN_EXCEEDANCES`` pairs lie above it, a normal distribution
    fitted to the top 1% of scores extrapolates the tail instead.
    """
    n = int(impostors.size)
    if n < 1000:
        raise InvalidArgument(f"calibration needs at least 1,000 impostor pairs, got {n}")
    ordered = np.sort(impostors.astype(np.float64))
    thresholds: list[float] = []
    extrapolated: list[bool] = []
    for f in fmrs:
        empirical = f * n >= MIN_EXCEEDANCES
        thresholds.append(
            float(np.quantile(ordered, 1.0 - f, method="higher")) if empirical else np.nan
        )
        extrapolated.append(not empirical)
    if any(extrapolated):
        thresholds = _extrapolate_tail(list(fmrs), thresholds, extrapolated)
    for i in range(1, len(thresholds)):  # keep the table monotone
        thresholds[i] = max(thresholds[i], thresholds[i - 1])
    return Calibration(
        fmrs=tuple(fmrs),
        thresholds=tuple(thresholds),
        extrapolated=tuple(extrapolated),
        impostor_pairs=n,
        source=source,
        meta=dict(meta or {}),
    )


def _extrapolate_tail(
    fmrs: list[float], thresholds: list[float], missing: list[bool]
) -> list[float]:
    """Fill missing thresholds from a straight line of threshold against ``log10(fmr)``.

    The line is fitted to the empirical points at rates of 1e-2 and below (at least two):
    impostor score tails of face embeddings decay roughly exponentially, which a normal
    fit underestimates.
    """
    known = [(math.log10(f), t) for f, t, m in zip(fmrs, thresholds, missing, strict=True) if not m]
    tail = [(x, t) for x, t in known if x <= -2.0] or known
    if len(tail) < 2:
        tail = known[-2:]
    xs, ts = np.array([x for x, _ in tail]), np.array([t for _, t in tail])
    slope, intercept = np.polyfit(xs, ts, 1)
    return [
        float(slope * math.log10(f) + intercept) if m else t
        for f, t, m in zip(fmrs, thresholds, missing, strict=True)
    ]
