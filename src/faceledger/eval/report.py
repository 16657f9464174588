"""The evaluation report: every measure on one labelled dataset, as typed parts and as JSON.

:func:`build_report` embeds the data (through the cache) and returns an :class:`EvalReport`
made of the evaluation modules' own results; :func:`report_json` writes it as the published
JSON figures (key names fixed: users and the model card read them), and
:mod:`faceledger.eval.report_html` renders it as one self-contained HTML page.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields, is_dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Protocol, TypeAlias, runtime_checkable

import numpy as np

from faceledger.engine import Engine
from faceledger.errors import InvalidArgument
from faceledger.eval.cache import EmbeddingCache
from faceledger.eval.calibrate import CheckedRate, check_calibration
from faceledger.eval.clustering import ClusteringScores, evaluate_grouping
from faceledger.eval.dataset import (
    DatasetCounts,
    LabelTable,
    Layout,
    Progress,
    describe,
    embed_trees,
    group_columns,
)
from faceledger.eval.fairness import FLAG_FACTOR, Differential, differentials
from faceledger.eval.identification import SplitIdentification, evaluate_split
from faceledger.eval.verification import Verification, all_pair_scores, evaluate_verification

__all__ = [
    "DEFAULT_STATED_FMRS",
    "CalibrationCheck",
    "ClusteringCheck",
    "EvalReport",
    "Fairness",
    "GroupThreshold",
    "IdentificationPart",
    "IdentificationSkipped",
    "ModelFacts",
    "ReportOptions",
    "ThresholdGuidance",
    "build_report",
    "report_json",
    "verdict",
]


DEFAULT_STATED_FMRS: tuple[float, ...] = (1e-3, 1e-4)


@dataclass(frozen=True, slots=True)
class ReportOptions:
    """How the data is read and which operating points the report measures."""

    aligned: bool = False
    layout: Layout = "tree"
    per_person: int | None = None
    stated_fmrs: tuple[float, ...] = DEFAULT_STATED_FMRS
    """Operating points (stated false match rates) of the per-group tables."""
    enroll_persons: int | None = None
    """Persons enrolled for the identification test (default: half, chosen with ``seed``)."""
    enroll_per_person: int = 1
    cluster_max_fmr: float = 1e-3
    bootstrap: int = 1000
    seed: int = 0


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """The model pack measured, and where its thresholds come from."""

    pack: str
    model_id: str
    description: str
    license: str
    calibration_source: str
    aligned_input: bool


@dataclass(frozen=True, slots=True)
class IdentificationSkipped:
    """Identification could not be measured on this data; ``skipped`` says why."""

    skipped: str

    def to_dict(self) -> dict[str, object]:
        return {"skipped": self.skipped}


IdentificationPart: TypeAlias = SplitIdentification | IdentificationSkipped


@dataclass(frozen=True, slots=True)
class ClusteringCheck:
    """The service's grouping scored against the labels, at the threshold for ``max_fmr``."""

    scores: ClusteringScores
    max_fmr: float

    def to_dict(self) -> dict[str, object]:
        return {**self.scores.to_dict(), "max_fmr": self.max_fmr}


@dataclass(frozen=True, slots=True)
class GroupThreshold:
    """The threshold that would give one group the stated rate among its own impostor pairs."""

    group: str
    threshold: float


@dataclass(frozen=True, slots=True)
class ThresholdGuidance:
    """Per-group thresholds of one column at one stated rate, beside the one used.

    Guidance for the operator, never applied: a search records the threshold it used.
    """

    column: str
    stated_fmr: float
    used: float
    groups: list[GroupThreshold]


@dataclass(frozen=True, slots=True)
class Fairness:
    """Per-group differentials of every group column at every stated rate."""

    flag_factor: float
    bootstrap: int
    differentials: list[Differential]

    def to_dict(self) -> dict[str, object]:
        return {
            "flag_factor": self.flag_factor,
            "bootstrap": self.bootstrap,
            "differentials": [d.to_dict() for d in self.differentials],
        }

    def by_column(self) -> dict[str, list[Differential]]:
        """The differentials of each column (one per stated rate), columns in report order."""
        out: dict[str, list[Differential]] = {}
        for d in self.differentials:
            out.setdefault(d.column, []).append(d)
        return out

    def guidance(self) -> list[ThresholdGuidance]:
        """For each differential, the groups whose own threshold could be measured."""
        return [
            ThresholdGuidance(
                column=d.column,
                stated_fmr=d.stated_fmr,
                used=d.threshold,
                groups=[
                    GroupThreshold(g.group, g.group_threshold)
                    for g in d.groups
                    if np.isfinite(g.group_threshold)
                ],
            )
            for d in self.differentials
        ]


@dataclass(frozen=True, slots=True)
class CalibrationCheck:
    """The pack's table measured on the report's impostor and genuine pairs."""

    same_data_as_calibration: bool
    rates: list[CheckedRate]

    @property
    def measurable(self) -> list[CheckedRate]:
        """The rates with at least 10 false matches expected (the others are mostly noise)."""
        return [r for r in self.rates if r.measurable]


@dataclass(frozen=True, slots=True)
class EvalReport:
    """Every measure on one labelled dataset; fields in the order of the JSON figures."""

    title: str
    created: str
    faceledger_version: str
    model: ModelFacts
    data: DatasetCounts
    verification: Verification
    identification: IdentificationPart
    clustering: ClusteringCheck
    fairness: Fairness
    calibration_check: CalibrationCheck
    verdict: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        """The JSON figures: each part by its ``to_dict`` or else its fields, recursively;
        NaN and infinity become ``None``."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}


def _version() -> str:
    try:
        return version("faceledger")
    except PackageNotFoundError:
        return "unknown"


def build_report(
    engine: Engine,
    roots: Sequence[Path],
    *,
    labels: LabelTable | None = None,
    options: ReportOptions | None = None,
    cache: EmbeddingCache | None = None,
    progress: Progress | None = None,
) -> EvalReport:
    """Verification, identification, clustering, per-group and calibration figures."""
    opts = options or ReportOptions()
    cal = engine.pack.require_calibration()
    data = embed_trees(
        engine,
        roots,
        aligned=opts.aligned,
        layout=opts.layout,
        per_person=opts.per_person,
        cache=cache,
        progress=progress,
    )
    if np.unique(data.labels).size < 2:
        raise InvalidArgument("a report needs faces of at least two persons")
    columns = group_columns(data, labels)
    scores = all_pair_scores(data.embeddings, data.labels)
    identification: IdentificationPart
    try:
        identification = evaluate_split(
            data.embeddings,
            data.labels,
            enroll_persons=opts.enroll_persons,
            enroll_per_person=opts.enroll_per_person,
            seed=opts.seed,
            calibration=cal,
        )
    except InvalidArgument as exc:
        identification = IdentificationSkipped(exc.message)
    operating = [(f, cal.threshold_for(f)) for f in opts.stated_fmrs]
    fairness = Fairness(
        flag_factor=FLAG_FACTOR,
        bootstrap=opts.bootstrap,
        differentials=differentials(
            data.embeddings,
            data.labels,
            columns,
            operating=operating,
            bootstrap=opts.bootstrap,
            seed=opts.seed,
        ),
    )
    names = sorted(set(data.sources))
    sets = cal.provenance.get("sets") or [cal.source.split(":")[0]]
    check = CalibrationCheck(
        same_data_as_calibration=bool(set(names) & set(sets)),
        rates=check_calibration(cal, scores.impostor, scores.genuine),
    )
    return EvalReport(
        title=f"faceledger evaluation: {', '.join(names)}",
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        faceledger_version=_version(),
        model=ModelFacts(
            pack=engine.pack.name,
            model_id=engine.model_id,
            description=engine.pack.description,
            license=engine.pack.license,
            calibration_source=cal.source,
            aligned_input=opts.aligned,
        ),
        data=describe(data, columns, layout=opts.layout),
        verification=evaluate_verification(scores.genuine, scores.impostor, calibration=cal),
        identification=identification,
        clustering=ClusteringCheck(
            evaluate_grouping(data.embeddings, data.labels, cal, max_fmr=opts.cluster_max_fmr),
            opts.cluster_max_fmr,
        ),
        fairness=fairness,
        calibration_check=check,
        verdict=tuple(verdict(fairness, check)),
    )


def verdict(fairness: Fairness, check: CalibrationCheck) -> list[str]:
    """The report's conclusions in a few sentences, headline first.

    A group counts as flagged only when its FMR interval lies wholly above the flag level
    (``flag_factor`` x stated); a point estimate above it with an interval reaching below
    is named as not established.
    """
    diffs = fairness.differentials
    factor = fairness.flag_factor
    flagged = sorted({f"{d.column}={g}" for d in diffs for g in d.flagged_groups})
    lines = [
        (
            f"Verdict: {len(flagged)} group(s) falsely matched more than {factor:g}x the stated "
            f"rate, with the 95% interval wholly above that level: {', '.join(flagged)}."
        )
        if flagged
        else (
            f"Verdict: no group is shown to be falsely matched more than {factor:g}x the "
            "stated rate" + (" (no group labels given)." if not diffs else ".")
        )
    ]
    for d, guide in zip(diffs, fairness.guidance(), strict=True):
        ratio = d.fmr_ratio
        unsure = [g.group for g in d.groups if g.fmr_over_flag_level and not g.flagged]
        lines.append(
            f"{d.column} at stated FMR {d.stated_fmr:.0e}: worst/best FMR ratio "
            f"{'n/a' if ratio is None else f'{ratio:.2f}'}; flagged: "
            f"{', '.join(d.flagged_groups) or 'none'}"
            + _guidance(guide)
            + (
                f"; over {factor:g}x by the point estimate but not established "
                f"(interval reaches below): {', '.join(unsure)}"
                if unsure
                else ""
            )
            + "."
        )
    rates = check.measurable
    if rates:
        lo, hi = min(r.ratio for r in rates), max(r.ratio for r in rates)
        lines.append(
            f"Calibration: measured/stated FMR between {lo:.2f} and {hi:.2f} at the "
            f"{len(rates)} measurable rates"
            + (
                " (this is the calibration data: an arithmetic check only)."
                if check.same_data_as_calibration
                else "."
            )
        )
    return lines


def _guidance(guide: ThresholdGuidance) -> str:
    """The thresholds that would give each group the stated rate, beside the one used."""
    if not guide.groups:
        return ""
    own = ", ".join(f"{g.group} {g.threshold:.4f}" for g in guide.groups)
    return f"; threshold giving each group the stated rate: {own} (used: {guide.used:.4f})"


@runtime_checkable
class _ToDict(Protocol):
    def to_dict(self) -> dict[str, object]: ...


def _jsonable(value: object) -> object:
    """JSON-ready data: a result by its ``to_dict`` (the published form) or else its fields;
    numpy scalars as Python numbers, NaN and infinity as ``None``."""
    if isinstance(value, _ToDict):
        return _jsonable(value.to_dict())
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def report_json(report: EvalReport) -> str:
    """The report as JSON text (NaN and infinity written as null)."""
    return json.dumps(report.to_dict(), indent=1, allow_nan=False)
