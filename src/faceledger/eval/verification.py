"""Verification (1:1) measures over genuine and impostor similarity scores.

The rates are those of ISO/IEC 19795-1 and NIST FRTE 1:1: a pair is a match when its
similarity is at or above the threshold; the false match rate (FMR, also FAR) is the
fraction of impostor pairs matched, the false non-match rate (FNMR) the fraction of
genuine pairs not matched, and TAR = 1 - FNMR.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from faceledger.errors import InvalidArgument
from faceledger.models.calibration import MIN_EXCEEDANCES, Calibration
from faceledger.types import FloatArray

REQUIRED_FMRS: tuple[float, ...] = (1e-2, 1e-3, 1e-4)
"""TAR is always reported at these rates, with a flag when there are too few impostor pairs."""
LOWER_FMRS: tuple[float, ...] = (1e-5, 1e-6, 1e-7)
"""Reported only where at least ``MIN_EXCEEDANCES`` impostor pairs may lie above them."""
BLOCK = 512


@dataclass(frozen=True, slots=True)
class PairScores:
    """Similarities of all genuine and all impostor pairs, each unordered pair once."""

    genuine: FloatArray
    impostor: FloatArray


def all_pair_scores(
    embeddings: FloatArray, labels: npt.NDArray[Any], offsets: FloatArray | None = None
) -> PairScores:
    """Every pair of rows of ``embeddings (n, d)`` (L2-normalised): same label or not.

    ``offsets (n,)``, when given, are subtracted from every score a row takes part in
    (a cohort-normalised calibration's :meth:`~Calibration.face_offsets`). Cost O(n^2 d)
    time in blocks of 512 rows; the scores take 4 n(n-1)/2 bytes.
    """
    n = embeddings.shape[0]
    if labels.shape != (n,):
        raise InvalidArgument(f"labels must be ({n},), got {labels.shape}")
    _, ids = np.unique(labels, return_inverse=True)
    genuine: list[FloatArray] = []
    impostor: list[FloatArray] = []
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        sims = embeddings[start:stop] @ embeddings[start:].T
        if offsets is not None:
            sims -= offsets[start:stop, None] + offsets[None, start:]
        rows, cols = np.triu_indices(stop - start, k=1, m=n - start)
        values = sims[rows, cols]
        same = ids[start + rows] == ids[start + cols]
        genuine.append(values[same])
        impostor.append(values[~same])
    return PairScores(
        np.concatenate(genuine).astype(np.float32) if genuine else np.zeros(0, np.float32),
        np.concatenate(impostor).astype(np.float32) if impostor else np.zeros(0, np.float32),
    )


@dataclass(frozen=True, slots=True)
class ErrorCurve:
    """Rates at every distinct score used as a threshold, thresholds decreasing."""

    thresholds: FloatArray
    fmr: npt.NDArray[np.float64]
    fnmr: npt.NDArray[np.float64]

    @property
    def tar(self) -> npt.NDArray[np.float64]:
        return 1.0 - self.fnmr


def error_curve(genuine: FloatArray, impostor: FloatArray) -> ErrorCurve:
    """FMR and FNMR at each distinct score (``score >= t`` matches), highest threshold first."""
    if genuine.size == 0 or impostor.size == 0:
        raise InvalidArgument("needs at least one genuine and one impostor pair")
    thresholds = np.unique(np.concatenate([genuine, impostor]))[::-1]
    imp = np.sort(impostor)
    gen = np.sort(genuine)
    matched_imp = imp.size - np.searchsorted(imp, thresholds, side="left")
    matched_gen = gen.size - np.searchsorted(gen, thresholds, side="left")
    return ErrorCurve(
        thresholds.astype(np.float32),
        matched_imp / imp.size,
        1.0 - matched_gen / gen.size,
    )


def equal_error_rate(curve: ErrorCurve) -> tuple[float, float]:
    """``(eer, threshold)`` where FMR and FNMR cross, linearly interpolated between points."""
    diff = curve.fnmr - curve.fmr  # starts >= 0 at the highest threshold, ends <= 0
    i = int(np.argmax(diff <= 0))
    if i == 0:
        return float(curve.fmr[0]), float(curve.thresholds[0])
    d0, d1 = diff[i - 1], diff[i]
    w = d0 / (d0 - d1) if d0 != d1 else 0.0
    eer = curve.fmr[i - 1] + w * (curve.fmr[i] - curve.fmr[i - 1])
    threshold = curve.thresholds[i - 1] + w * (curve.thresholds[i] - curve.thresholds[i - 1])
    return float(eer), float(threshold)


def threshold_at_fmr(impostor: FloatArray, fmr: float) -> float:
    """The lowest threshold whose empirical FMR is at most ``fmr``.

    It lies just above the impostor score ranked ``floor(fmr * n) + 1`` from the top.
    """
    ranked = np.sort(impostor)[::-1]
    allowed = int(np.floor(fmr * ranked.size))
    if allowed >= ranked.size:
        return float("-inf")
    return float(np.nextafter(ranked[allowed], np.float32(np.inf)))


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """Rates at one threshold; ``enough_impostors`` when ``target_fmr * pairs >= 10``."""

    target_fmr: float | None
    threshold: float
    fmr: float
    fnmr: float
    false_matches: int
    impostor_pairs: int
    enough_impostors: bool

    @property
    def tar(self) -> float:
        return 1.0 - self.fnmr


def rates_at(
    genuine: FloatArray, impostor: FloatArray, threshold: float, *, target_fmr: float | None = None
) -> OperatingPoint:
    """FMR and FNMR of ``score >= threshold``."""
    false_matches = int(np.count_nonzero(impostor >= threshold))
    return OperatingPoint(
        target_fmr=target_fmr,
        threshold=threshold,
        fmr=false_matches / impostor.size if impostor.size else float("nan"),
        fnmr=float(np.mean(genuine < threshold)) if genuine.size else float("nan"),
        false_matches=false_matches,
        impostor_pairs=int(impostor.size),
        enough_impostors=target_fmr is None or target_fmr * impostor.size >= MIN_EXCEEDANCES,
    )


def tar_at_fmr(genuine: FloatArray, impostor: FloatArray, fmr: float) -> OperatingPoint:
    """TAR at the lowest threshold whose FMR is at most ``fmr``."""
    return rates_at(genuine, impostor, threshold_at_fmr(impostor, fmr), target_fmr=fmr)


@dataclass(frozen=True, slots=True)
class Verification:
    """The verification figures of one set of scores."""

    genuine_pairs: int
    impostor_pairs: int
    eer: float
    eer_threshold: float
    auc: float
    at_fmr: list[OperatingPoint]
    stated: list[OperatingPoint]
    curve: ErrorCurve
    histogram_edges: npt.NDArray[np.float64]
    genuine_histogram: npt.NDArray[np.int64]
    impostor_histogram: npt.NDArray[np.int64]

    def to_dict(self, *, curve_points: int = 200) -> dict[str, object]:
        """JSON-ready figures, with the curves thinned to about ``curve_points`` points."""
        keep = thin_curve(self.curve, curve_points)
        return {
            "genuine_pairs": self.genuine_pairs,
            "impostor_pairs": self.impostor_pairs,
            "eer": self.eer,
            "eer_threshold": self.eer_threshold,
            "auc": self.auc,
            "tar_at_fmr": [_point(p) for p in self.at_fmr],
            "at_stated_fmr": [_point(p) for p in self.stated],
            "curve": {
                "threshold": self.curve.thresholds[keep].tolist(),
                "fmr": self.curve.fmr[keep].tolist(),
                "fnmr": self.curve.fnmr[keep].tolist(),
            },
            "histogram": {
                "edges": self.histogram_edges.tolist(),
                "genuine": self.genuine_histogram.tolist(),
                "impostor": self.impostor_histogram.tolist(),
            },
        }


def _point(p: OperatingPoint) -> dict[str, object]:
    return {
        "target_fmr": p.target_fmr,
        "threshold": p.threshold,
        "tar": p.tar,
        "fmr": p.fmr,
        "fnmr": p.fnmr,
        "false_matches": p.false_matches,
        "enough_impostors": p.enough_impostors,
    }


def thin_curve(curve: ErrorCurve, points: int) -> npt.NDArray[np.intp]:
    """Indices of about ``points`` curve points spread evenly over log FMR and over FNMR."""
    n = curve.thresholds.size
    if n <= points:
        return np.arange(n)
    fmr = np.maximum(curve.fmr, 1e-12)
    targets = np.geomspace(fmr.min(), 1.0, points // 2)
    by_fmr = np.searchsorted(fmr, targets, side="left")
    by_fnmr = np.searchsorted(-curve.fnmr, -np.linspace(1.0, 0.0, points // 2), side="left")
    idx = np.unique(np.clip(np.concatenate([[0, n - 1], by_fmr, by_fnmr]), 0, n - 1))
    return idx.astype(np.intp)


def evaluate_verification(
    genuine: FloatArray,
    impostor: FloatArray,
    *,
    calibration: Calibration | None = None,
    bins: int = 60,
) -> Verification:
    """ROC/DET curve, EER, AUC, TAR at standard FMRs and rates at the pack's stated FMRs."""
    curve = error_curve(genuine, impostor)
    eer, eer_t = equal_error_rate(curve)
    fmr = np.concatenate([[0.0], curve.fmr])
    tar = np.concatenate([[0.0], curve.tar])
    auc = float(np.sum(np.diff(fmr) * (tar[1:] + tar[:-1]) / 2))
    levels = list(REQUIRED_FMRS) + [f for f in LOWER_FMRS if f * impostor.size >= MIN_EXCEEDANCES]
    stated = (
        [
            rates_at(genuine, impostor, t, target_fmr=f)
            for f, t in zip(calibration.fmrs, calibration.thresholds, strict=True)
            if f <= 1e-2
        ]
        if calibration is not None
        else []
    )
    lo, hi = float(min(genuine.min(), impostor.min())), float(max(genuine.max(), impostor.max()))
    edges = np.linspace(min(lo, -0.3), max(hi, 1.0), bins + 1)
    return Verification(
        genuine_pairs=int(genuine.size),
        impostor_pairs=int(impostor.size),
        eer=eer,
        eer_threshold=eer_t,
        auc=auc,
        at_fmr=[tar_at_fmr(genuine, impostor, f) for f in levels],
        stated=stated,
        curve=curve,
        histogram_edges=edges,
        genuine_histogram=np.histogram(genuine, edges)[0].astype(np.int64),
        impostor_histogram=np.histogram(impostor, edges)[0].astype(np.int64),
    )
