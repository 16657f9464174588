"""Calibrations: similarity threshold versus false match rate, per comparison and per person.

A :class:`Calibration` holds three kinds of tables, all built from impostor scores of
labelled calibration identities:

- **per comparison** (``fmrs``/``thresholds``): one face against one face, what ``compare``
  states;
- **per person** (``per_person[aggregate]``): a probe against a person with ``k`` enrolled
  faces, the score being the aggregate actually compared with the threshold (``max``:
  the best face; ``mean2``: the mean of the best two), for k = 1, 2, 3, 5, 10, 20, 50,
  interpolated linearly in log k between tables. An impostor's best score over k faces
  passes a threshold more often than one comparison does;
- its **provenance** (sets, identities, pairs, model id, date) and an **id**, the hash
  of its content, so a ledger entry can name the exact calibration behind a decision;
- optionally a **cohort** (:mod:`faceledger.models.cohort`): then every table is of
  cohort-normalised scores, and a search subtracts both faces'
  :meth:`Calibration.face_offsets` from a similarity before comparing it with a threshold.

Files written before per-person tables existed still load; their per-person rates are the
independence bound ``1 - (1 - f)^k``, which over-states the rate of correlated faces.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from faceledger.errors import InvalidArgument
from faceledger.models.cohort import Cohort
from faceledger.types import FloatArray

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
"""A table entry is empirical only if at least this many impostor scores lie above it."""
PERSON_KS: tuple[int, ...] = (1, 2, 3, 5, 10, 20, 50)
"""Enrolled faces per person for which per-person tables are built."""
FORMAT = 2
"""Calibration file format: 1 had the per-comparison table only."""

Aggregate = Literal["max", "mean2"]
"""How a person's several face similarities become one: the best, or the mean of the best two."""
AGGREGATES: tuple[Aggregate, ...] = ("max", "mean2")


def _check_rate(rate: float, what: str = "false match rate") -> None:
    if not 0.0 < rate < 1.0:
        raise InvalidArgument(f"{what} must be in (0, 1), got {rate}")


@dataclass(frozen=True, slots=True)
class RateTable:
    """A monotone table of ``(fmr, threshold)`` points: ``fmrs`` decrease, thresholds increase.

    Points with fewer than ``MIN_EXCEEDANCES`` impostor scores above them are extrapolated
    and flagged in ``extrapolated``.
    """

    fmrs: tuple[float, ...]
    thresholds: tuple[float, ...]
    extrapolated: tuple[bool, ...]
    impostor_scores: int

    def threshold_for(self, max_fmr: float) -> float:
        """The smallest similarity whose false match rate is at most ``max_fmr``.

        Below the table's lowest rate the line through its last two points continues.
        """
        _check_rate(max_fmr)
        logs = np.log10(np.array(self.fmrs))
        target = math.log10(max_fmr)
        if target >= logs[0]:
            return self.thresholds[0]
        if target <= logs[-1]:
            # beyond the table: continue the straight line of its last two points
            if len(logs) < 2 or logs[-2] == logs[-1]:
                return self.thresholds[-1]
            slope = (self.thresholds[-1] - self.thresholds[-2]) / (logs[-1] - logs[-2])
            return float(self.thresholds[-1] + slope * (target - logs[-1]))
        # np.interp needs increasing x: fmr logs decrease, so reverse both.
        return float(np.interp(target, logs[::-1], np.array(self.thresholds)[::-1]))

    def fmr_at(self, similarity: float) -> float:
        """Estimated false match rate at this similarity (log-linear interpolation)."""
        return float(10 ** self.log_fmr_at(similarity))

    def log_fmr_at(self, similarity: float) -> float:
        thr = np.array(self.thresholds)
        logs = np.log10(np.array(self.fmrs))
        if similarity <= thr[0]:
            return float(logs[0])  # the table's top rate (0.5): no evidence of a match
        if similarity >= thr[-1]:
            return float(logs[-1])
        return float(np.interp(similarity, thr, logs))

    def to_dict(self) -> dict[str, Any]:
        return {
            "fmrs": list(self.fmrs),
            "thresholds": [round(t, 5) for t in self.thresholds],
            "extrapolated": list(self.extrapolated),
            "impostor_scores": self.impostor_scores,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RateTable:
        return cls(
            fmrs=tuple(float(x) for x in data["fmrs"]),
            thresholds=tuple(float(x) for x in data["thresholds"]),
            extrapolated=tuple(bool(x) for x in data["extrapolated"]),
            impostor_scores=int(data.get("impostor_scores", data.get("impostor_pairs", 0))),
        )


@dataclass(frozen=True, slots=True)
class PersonTables:
    """Rate tables of one aggregate for persons with ``ks`` enrolled faces (increasing)."""

    ks: tuple[int, ...]
    tables: tuple[RateTable, ...]

    def _bracket(self, k: int) -> tuple[int, int, float]:
        """Indices of the two tables around ``k`` and the weight of the second (log k)."""
        if k < 1:
            raise InvalidArgument(f"a person needs at least one face, got k={k}")
        ks = self.ks
        if len(ks) == 1:
            return 0, 0, 0.0
        i = int(np.searchsorted(ks, k, side="right")) - 1
        i = min(max(i, 0), len(ks) - 2)  # beyond the last table: extrapolate from the last two
        w = (math.log(k) - math.log(ks[i])) / (math.log(ks[i + 1]) - math.log(ks[i]))
        return i, i + 1, max(w, 0.0)

    def threshold_for(self, max_fmr: float, k: int) -> float:
        a, b, w = self._bracket(k)
        ta, tb = self.tables[a].threshold_for(max_fmr), self.tables[b].threshold_for(max_fmr)
        return (1 - w) * ta + w * tb

    def log_fmr_at(self, similarity: float, k: int) -> float:
        a, b, w = self._bracket(k)
        la, lb = self.tables[a].log_fmr_at(similarity), self.tables[b].log_fmr_at(similarity)
        return min((1 - w) * la + w * lb, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {str(k): t.to_dict() for k, t in zip(self.ks, self.tables, strict=True)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PersonTables:
        ks = sorted(int(k) for k in data)
        if not ks:
            raise InvalidArgument("per-person tables need at least one k")
        return cls(tuple(ks), tuple(RateTable.from_dict(data[str(k)]) for k in ks))


@dataclass(frozen=True)
class Calibration:
    """A per-comparison table (``fmrs``, ``thresholds``), per-person tables and provenance.

    ``fmrs`` decrease and ``thresholds`` increase. Points with fewer than
    ``MIN_EXCEEDANCES`` impostor pairs above them are extrapolated and flagged in
    ``extrapolated``. ``provenance`` names the data (sets, identities, pairs), the model
    id and the date; :attr:`calibration_id` is the hash of the whole content.
    """

    fmrs: tuple[float, ...]
    thresholds: tuple[float, ...]
    extrapolated: tuple[bool, ...]
    impostor_pairs: int
    source: str
    meta: dict[str, Any] = field(default_factory=dict)
    per_person: dict[str, PersonTables] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    cohort: Cohort | None = None
    """When set, the tables are of cohort-normalised scores and searches normalise."""

    @cached_property
    def table(self) -> RateTable:
        """The per-comparison table."""
        return RateTable(self.fmrs, self.thresholds, self.extrapolated, self.impostor_pairs)

    def threshold_for(self, max_fmr: float) -> float:
        """The smallest similarity whose per-comparison false match rate is at most ``max_fmr``."""
        return self.table.threshold_for(max_fmr)

    def fmr_at(self, similarity: float) -> float:
        """Estimated false match rate of one face-to-face comparison at this similarity."""
        return self.table.fmr_at(similarity)

    def person_threshold(self, max_fmr: float, k: int, aggregate: Aggregate = "max") -> float:
        """The smallest aggregate similarity at which a person with ``k`` faces is a false
        match with probability at most ``max_fmr``."""
        _check_rate(max_fmr)
        tables = self.per_person.get(aggregate)
        if tables is None:
            _check_aggregate(aggregate)
            if k < 1:
                raise InvalidArgument(f"a person needs at least one face, got k={k}")
            # independence bound: 1 - (1 - f)^k = max_fmr
            return self.threshold_for(-math.expm1(math.log1p(-max_fmr) / k))
        return tables.threshold_for(max_fmr, k)

    def person_fmr(self, similarity: float, k: int, aggregate: Aggregate = "max") -> float:
        """Estimated false match rate of a probe against a person with ``k`` enrolled faces
        whose aggregate similarity is ``similarity``."""
        tables = self.per_person.get(aggregate)
        single = self.fmr_at(similarity)
        if tables is None:
            _check_aggregate(aggregate)
            if k < 1:
                raise InvalidArgument(f"a person needs at least one face, got k={k}")
            return float(min(self.fmrs[0], -math.expm1(k * math.log1p(-single))))
        # an aggregate passes only if the best face does: never above the union bound k*f;
        # the best of k faces passes at least as often as one face does
        rate = 10 ** tables.log_fmr_at(similarity, k)
        if aggregate == "max":
            rate = max(rate, single)
        return float(min(rate, k * single, 1.0))

    @property
    def has_person_tables(self) -> bool:
        return bool(self.per_person)

    def face_offsets(self, faces: FloatArray) -> FloatArray:
        """What normalising subtracts from any score a face takes part in (0 without a
        cohort; see :meth:`Cohort.offsets`)."""
        if self.cohort is None:
            return np.zeros(faces.shape[0], dtype=np.float32)
        return self.cohort.offsets(faces)

    @cached_property
    def calibration_id(self) -> str:
        """``cal-`` and the first 16 hex digits of the SHA-256 of the canonical content."""
        return content_id(self._content())

    def _content(self) -> dict[str, Any]:
        """What the id hashes: a cohort by its SHA-256, shape and k (its faces are
        only in :meth:`to_dict`)."""
        content: dict[str, Any] = {
            "format": FORMAT,
            "fmrs": list(self.fmrs),
            "thresholds": [round(t, 5) for t in self.thresholds],
            "extrapolated": list(self.extrapolated),
            "impostor_pairs": self.impostor_pairs,
            "source": self.source,
            "meta": self.meta,
            "per_person": {a: t.to_dict() for a, t in sorted(self.per_person.items())},
            "provenance": self.provenance,
        }
        if self.cohort is not None:
            content["cohort"] = {k: v for k, v in self.cohort.to_dict().items() if k != "data"}
        return content

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready content with its ``id`` first (and a cohort's faces, base64)."""
        out = {"id": self.calibration_id, **self._content()}
        if self.cohort is not None:
            out["cohort"] = self.cohort.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """Read format 2 or a format-1 table (per comparison only).

        Raises:
            InvalidArgument: a stated ``id`` does not match the content (edited file).
        """
        cal = cls(
            fmrs=tuple(float(x) for x in data["fmrs"]),
            thresholds=tuple(float(x) for x in data["thresholds"]),
            extrapolated=tuple(bool(x) for x in data["extrapolated"]),
            impostor_pairs=int(data["impostor_pairs"]),
            source=str(data["source"]),
            meta=dict(data.get("meta", {})),
            per_person={
                str(a): PersonTables.from_dict(t) for a, t in data.get("per_person", {}).items()
            },
            provenance=dict(data.get("provenance", {})),
            cohort=Cohort.from_dict(data["cohort"]) if data.get("cohort") else None,
        )
        stated = data.get("id")
        if stated is not None and stated != cal.calibration_id:
            raise InvalidArgument(
                f"calibration {stated} does not match its content ({cal.calibration_id}): "
                "the file was edited"
            )
        return cal


def content_id(content: dict[str, Any]) -> str:
    """``cal-`` and 16 hex digits of the SHA-256 of ``content`` as canonical JSON."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return "cal-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_aggregate(aggregate: str) -> None:
    if aggregate not in AGGREGATES:
        raise InvalidArgument(f"unknown aggregate {aggregate!r}; known: {', '.join(AGGREGATES)}")


def impostor_scores(
    embeddings: npt.NDArray[np.float32],
    labels: npt.NDArray[Any],
    scores: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """All cross-identity similarities of ``embeddings (n, d)``, each unordered pair once
    (of the pair scores ``(n, n)`` when given, e.g. normalised ones)."""
    sims = embeddings @ embeddings.T if scores is None else scores
    iu = np.triu_indices(len(labels), k=1)
    cross = labels[iu[0]] != labels[iu[1]]
    return np.ascontiguousarray(sims[iu][cross], dtype=np.float32)


def rate_table(impostors: npt.NDArray[np.float32], *, fmrs: tuple[float, ...]) -> RateTable:
    """A threshold table from impostor scores ``(n,)``.

    The threshold at rate ``f`` is the ``1 - f`` empirical quantile of the scores. Where
    fewer than ``MIN_EXCEEDANCES`` scores lie above it, a straight line of threshold
    against ``log10(f)`` fitted to the empirical tail extrapolates it instead.
    """
    n = int(impostors.size)
    if n < 1000:
        raise InvalidArgument(f"calibration needs at least 1,000 impostor scores, got {n}")
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
    return RateTable(tuple(fmrs), tuple(thresholds), tuple(extrapolated), n)


def calibrate(
    impostors: npt.NDArray[np.float32],
    *,
    source: str,
    fmrs: tuple[float, ...] = STANDARD_FMRS,
    meta: dict[str, Any] | None = None,
    per_person: dict[str, PersonTables] | None = None,
    provenance: dict[str, Any] | None = None,
    cohort: Cohort | None = None,
) -> Calibration:
    """Build a calibration from per-comparison impostor similarities (see :func:`rate_table`);
    with a ``cohort``, the scores must be normalised by it."""
    table = rate_table(impostors, fmrs=fmrs)
    return Calibration(
        fmrs=table.fmrs,
        thresholds=table.thresholds,
        extrapolated=table.extrapolated,
        impostor_pairs=table.impostor_scores,
        source=source,
        meta=dict(meta or {}),
        per_person=dict(per_person or {}),
        provenance=dict(provenance or {}),
        cohort=cohort,
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
    if xs.size < 2:
        return [t if not m else ts[0] for t, m in zip(thresholds, missing, strict=True)]
    slope, intercept = np.polyfit(xs, ts, 1)
    return [
        float(slope * math.log10(f) + intercept) if m else t
        for f, t, m in zip(fmrs, thresholds, missing, strict=True)
    ]
