"""The evaluation report as one self-contained HTML page (plots embedded as PNG data URIs).

Tables are rendered from typed columns: each :class:`Column` names its header, how a row
gives the cell's value, and how the value is shown.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeAlias, TypeVar

import numpy as np

from faceledger.eval.calibrate import CheckedRate
from faceledger.eval.clustering import ClusteringScores
from faceledger.eval.dataset import Counts
from faceledger.eval.fairness import GroupRates
from faceledger.eval.identification import OpenSetPoint, SplitIdentification
from faceledger.eval.report import (
    CalibrationCheck,
    EvalReport,
    Fairness,
    IdentificationPart,
    IdentificationSkipped,
    ModelFacts,
    report_json,
)
from faceledger.eval.verification import OperatingPoint, Verification, thin_curve

if TYPE_CHECKING:  # matplotlib is imported when a page is drawn, not with this module
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["Column", "render_html", "write_report"]

CURVE_POINTS = 200
"""Points of a plotted ROC/DET or FNIR/FPIR curve (those of the JSON figures)."""

Cell: TypeAlias = str | int | float | bool | None
Row = TypeVar("Row")


def fmt(x: Cell) -> str:
    """A cell's text: ``–`` for a missing or non-finite number, 4 decimals, or 2 significant
    digits in scientific notation below 1e-3; integers with thousands separators."""
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    if isinstance(x, bool) or not isinstance(x, float | int):
        return html.escape(str(x))
    if isinstance(x, int) or x == 0:
        return f"{x:,}" if isinstance(x, int) else "0"
    return f"{x:.2e}" if abs(x) < 1e-3 else f"{x:.4f}"


@dataclass(frozen=True, slots=True)
class Column(Generic[Row]):
    """One table column: its header, the row's value in it, and how that value is shown."""

    header: str
    value: Callable[[Row], Cell]
    show: Callable[[Cell], str] = fmt


def table(columns: Sequence[Column[Row]], rows: Sequence[Row], flags: Sequence[bool] = ()) -> str:
    """An HTML table of ``rows``; a row whose flag is true is highlighted."""
    th = "".join(f"<th>{html.escape(c.header)}</th>" for c in columns)
    body = "".join(
        f"<tr{' class=flag' if i < len(flags) and flags[i] else ''}>"
        + "".join(f"<td>{c.show(c.value(row))}</td>" for c in columns)
        + "</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table><tr>{th}</tr>{body}</table>"


def write_report(
    report: EvalReport, *, html_out: Path | None = None, json_out: Path | None = None
) -> None:
    """Write the HTML page and/or the JSON figures."""
    renderers: tuple[tuple[Path | None, Callable[[EvalReport], str]], ...] = (
        (html_out, render_html),
        (json_out, report_json),
    )
    for path, render in renderers:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(report), encoding="utf-8")


CSS = """body{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222}h2{border-bottom:1px solid #ccc;margin-top:2em}table{margin:.8em 0;
border-collapse:collapse;display:block;overflow-x:auto;max-width:100%}td,th{padding:.25em .6em;
border:1px solid #ccc;text-align:right;white-space:nowrap}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}.flag{background:#fde2e2;font-weight:600}
.meta,figcaption{color:#555}figcaption{font-size:13px}figure{display:inline-block;
margin:.5em 1em .5em 0}img{max-width:100%}dt{font-weight:600}dd{margin:0 0 .5em 1.5em}"""


def _figure(ncols: int = 1) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure  # imported here: only reports need matplotlib

    fig = Figure(figsize=(4.8 * ncols, 3.5), layout="constrained")
    axes = list(fig.subplots(1, ncols, squeeze=False)[0])
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    return fig, axes


def _img(fig: Figure, caption: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96)
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    text = html.escape(caption)
    return f'<figure><img src="{uri}" alt="{text}"><figcaption>{text}</figcaption></figure>'


VERIFICATION: tuple[Column[Verification], ...] = (
    Column("genuine pairs", lambda v: v.genuine_pairs),
    Column("impostor pairs", lambda v: v.impostor_pairs),
    Column("EER", lambda v: v.eer),
    Column("EER threshold", lambda v: v.eer_threshold),
    Column("AUC", lambda v: v.auc),
)
TAR_AT_FMR: tuple[Column[OperatingPoint], ...] = (
    Column("FMR", lambda p: p.target_fmr),
    Column("threshold", lambda p: p.threshold),
    Column("TAR", lambda p: p.tar),
    Column("measured FMR", lambda p: p.fmr),
    Column("false matches", lambda p: p.false_matches),
    Column("at least 10 impostors above", lambda p: p.enough_impostors),
)
AT_STATED_FMR: tuple[Column[OperatingPoint], ...] = (
    Column("stated FMR", lambda p: p.target_fmr),
    Column("threshold", lambda p: p.threshold),
    Column("measured FMR", lambda p: p.fmr),
    Column("FNMR", lambda p: p.fnmr),
)


def _verification_html(v: Verification) -> str:
    keep = thin_curve(v.curve, CURVE_POINTS)
    fmr, fnmr = v.curve.fmr[keep], v.curve.fnmr[keep]
    fig, (roc, det) = _figure(2)
    shown = fmr > 0
    roc.semilogx(fmr[shown], 1 - fnmr[shown])
    roc.set(xlabel="false match rate", ylabel="true accept rate", title="ROC")
    shown &= fnmr > 0
    det.loglog(fmr[shown], fnmr[shown])
    det.set(xlabel="false match rate", ylabel="false non-match rate", title="DET")
    hist_fig, (hist,) = _figure()
    edges = v.histogram_edges
    for name, histogram in (("impostor", v.impostor_histogram), ("genuine", v.genuine_histogram)):
        counts = histogram.astype(float)
        density = counts / max(counts.sum(), 1.0) / np.diff(edges)
        hist.stairs(density, edges, label=name, fill=True, alpha=0.5)
    for p in v.stated:
        if p.target_fmr in (1e-3, 1e-4):
            hist.axvline(p.threshold, ls="--", c="k", lw=0.8)
    hist.set(xlabel="similarity", ylabel="density", title="Scores (dashed: FMR 1e-3, 1e-4)")
    hist.legend()
    return (
        table(VERIFICATION, [v])
        + "<h3>TAR at FMR (threshold set on these impostor pairs)</h3>"
        + table(TAR_AT_FMR, v.at_fmr)
        + "<h3>At the pack's stated thresholds</h3>"
        + table(AT_STATED_FMR, v.stated)
        + _img(fig, "ROC and DET over all genuine and impostor pairs")
        + _img(hist_fig, "Genuine and impostor similarity distributions")
    )


IDENTIFICATION: tuple[Column[SplitIdentification], ...] = (
    Column("enrolled persons", lambda s: s.result.enrolled),
    Column("enrolled images", lambda s: s.enrolled_images),
    Column("mated searches", lambda s: s.result.mated_searches),
    Column("non-mated searches", lambda s: s.result.nonmated_searches),
    Column("rank-1", lambda s: s.result.rank1),
)
FNIR_AT_FPIR: tuple[Column[OpenSetPoint], ...] = (
    Column("FPIR", lambda p: p.target),
    Column("threshold", lambda p: p.threshold),
    Column("FNIR", lambda p: p.fnir),
    Column("measured FPIR", lambda p: p.fpir),
    Column("at least 10 non-mated above", lambda p: p.enough_searches),
)
OPEN_SET_AT_STATED: tuple[Column[OpenSetPoint], ...] = (
    Column("stated FMR", lambda p: p.target),
    Column("threshold", lambda p: p.threshold),
    Column("FNIR", lambda p: p.fnir),
    Column("FPIR", lambda p: p.fpir),
)


def _identification_html(ident: IdentificationPart) -> str:
    if isinstance(ident, IdentificationSkipped):
        return f"<p>Not measured: {html.escape(ident.skipped)}</p>"
    result = ident.result
    fig, (cmc, det) = _figure(2)
    cmc.plot(np.arange(1, result.cmc.size + 1), result.cmc, marker=".")
    cmc.set(xlabel="rank", ylabel="identification rate", title="CMC (closed set)")
    keep = result.thinned(CURVE_POINTS)
    fpir, fnir = result.curve_fpir[keep], result.curve_fnir[keep]
    shown = (fpir > 0) & (fnir > 0)
    det.loglog(fpir[shown], fnir[shown])
    det.set(xlabel="FPIR", ylabel="FNIR", title="Open set: FNIR vs FPIR")
    return (
        table(IDENTIFICATION, [ident])
        + "<h3>FNIR at FPIR (rank 1)</h3>"
        + table(FNIR_AT_FPIR, result.at_fpir)
        + "<h3>At the pack's stated thresholds (as the service's identify)</h3>"
        + table(OPEN_SET_AT_STATED, result.stated)
        + _img(fig, "Closed-set CMC and open-set FNIR against FPIR")
    )


def _interval(ci: tuple[float, float]) -> str:
    return " – ".join(fmt(x) for x in ci)


def group_rate_columns(flag_factor: float) -> tuple[Column[GroupRates], ...]:
    """The per-group table's columns; the flag names ``flag_factor``."""

    def flag(g: GroupRates) -> str:
        if g.flagged:
            return f"FMR > {flag_factor:g}x stated (whole interval)"
        return "over by the estimate, not established" if g.fmr_over_flag_level else ""

    return (
        Column("group", lambda g: g.group),
        Column("identities", lambda g: g.identities),
        Column("images", lambda g: g.images),
        Column("impostor pairs", lambda g: g.impostor_pairs),
        Column("false matches", lambda g: g.false_matches),
        Column("FMR", lambda g: g.fmr),
        Column("95% CI", lambda g: _interval(g.fmr_ci)),
        Column("genuine pairs", lambda g: g.genuine_pairs),
        Column("FNMR", lambda g: g.fnmr),
        Column("95% CI", lambda g: _interval(g.fnmr_ci)),
        Column("at least 10 false matches expected", lambda g: g.enough_impostors),
        Column("threshold giving the stated FMR in this group", lambda g: g.group_threshold),
        Column("flag", flag),
    )


def _fairness_html(fair: Fairness) -> str:
    columns = group_rate_columns(fair.flag_factor)
    parts = []
    for column, diffs in fair.by_column().items():
        parts.append(f"<h3>{html.escape(column)}</h3>")
        fig, (ax_fmr, ax_fnmr) = _figure(2)
        for k, d in enumerate(diffs):
            groups = d.groups
            parts.append(
                f"<p>Stated FMR {fmt(d.stated_fmr)} (threshold {fmt(d.threshold)}): "
                f"worst/best FMR ratio {fmt(d.fmr_ratio)}, "
                f"worst/best FNMR ratio {fmt(d.fnmr_ratio)}; "
                f"unlabelled images {d.unlabelled_images}. A group's own threshold is "
                "guidance for the operator: faceledger never applies a per-group threshold; "
                "a search records the threshold it used.</p>"
                + table(columns, groups, [g.flagged for g in groups])
            )
            x = np.arange(len(groups)) + (k - (len(diffs) - 1) / 2) * 0.15
            for ax, rates in (
                (ax_fmr, [(g.fmr, g.fmr_ci) for g in groups]),
                (ax_fnmr, [(g.fnmr, g.fnmr_ci) for g in groups]),
            ):
                val = np.array([r for r, _ in rates], dtype=float)
                ci = np.array([c for _, c in rates], dtype=float).reshape(-1, 2)
                err = np.nan_to_num(np.abs(ci - val[:, None]).T)
                ax.errorbar(x, val, yerr=err, fmt="o", capsize=3, label=f"at {d.stated_fmr:g}")
                names = [g.group for g in groups]
                ax.set_xticks(np.arange(len(groups)), names, rotation=30, ha="right")
            ax_fmr.axhline(d.stated_fmr, ls="--", lw=0.8, c=f"C{k}")
            ax_fmr.axhline(d.stated_fmr * fair.flag_factor, ls=":", lw=0.8, c=f"C{k}")
        ax_fmr.set_yscale("symlog", linthresh=1e-6)
        ax_fmr.set_ylim(bottom=0)
        ax_fmr.set(title=f"FMR by {column} (dashed: stated, dotted: flag)")
        ax_fnmr.set(title=f"FNMR by {column}")
        ax_fmr.legend(fontsize=8)
        parts.append(_img(fig, f"False match and false non-match rates by {column}, 95% CI"))
    return "".join(parts) or "<p>No group labels were given.</p>"


CALIBRATION: tuple[Column[CheckedRate], ...] = (
    Column("stated FMR", lambda r: r.stated_fmr),
    Column("threshold", lambda r: r.threshold),
    Column("measured FMR", lambda r: r.measured_fmr),
    Column("false matches", lambda r: r.false_matches),
    Column("measured/stated", lambda r: r.ratio),
    Column("FNMR", lambda r: r.fnmr),
    Column("at least 10 expected", lambda r: r.measurable),
    Column("extrapolated", lambda r: r.extrapolated),
)


def _calibration_html(check: CalibrationCheck, source: str) -> str:
    rates = check.rates
    fig, (ax,) = _figure()
    for measurable, marker in ((True, "o"), (False, "x")):
        pts = [r for r in rates if r.measurable == measurable and r.measured_fmr > 0]
        label = "measurable" if measurable else "fewer than 10 expected"
        ax.loglog([r.stated_fmr for r in pts], [r.measured_fmr for r in pts], marker, label=label)
    lims = [min(r.stated_fmr for r in rates), 1.0]
    ax.loglog(lims, lims, "k--", lw=0.8, label="measured = stated")
    ax.set(xlabel="stated FMR", ylabel="measured FMR", title="Calibration check")
    ax.legend(fontsize=8)
    note = (
        "<p><b>This is the data the table was built from</b>: it checks the table's arithmetic, "
        "not how it transfers to other faces.</p>"
        if check.same_data_as_calibration
        else ""
    )
    return (
        f"<p>Table built from {html.escape(source)}.</p>{note}"
        + table(CALIBRATION, rates)
        + _img(fig, "Measured against stated false match rate")
    )


NOTES = """<ul><li>A pair matches when its similarity is at or above the threshold. FMR: the
fraction of impostor pairs (two persons) that match; FNMR: the fraction of genuine pairs (one
person) that do not; TAR = 1 - FNMR. Verification uses every pair of the data.</li>
<li>Identification follows NIST FRTE 1:N: some persons are enrolled, every other image searches.
FPIR: the fraction of searches for unenrolled persons returning anyone; FNIR: the fraction of
searches for enrolled persons not returning them first at or above the threshold.</li>
<li>Per-group rates follow NIST IR 8280: one threshold (the pack's, for the stated FMR), FMR on
impostor pairs within the group, FNMR on its genuine pairs. Intervals: 95% bootstrap over
identities. A group is flagged when the lower bound of its FMR's interval exceeds 3 times the
stated rate (the data show the excess, not merely allow it). A rate with fewer
than 10 errors expected is too small to measure; a ratio shows "–" when the best group had no
error.</li></ul>"""
MODEL_FACTS: tuple[tuple[str, Callable[[ModelFacts], str]], ...] = (
    ("pack", lambda m: m.pack),
    ("model id", lambda m: m.model_id),
    ("licence", lambda m: m.license),
    ("description", lambda m: m.description),
    ("thresholds calibrated on", lambda m: m.calibration_source),
)
CLUSTERING: tuple[Column[ClusteringScores], ...] = (
    Column("faces", lambda c: c.items),
    Column("persons", lambda c: c.persons),
    Column("groups", lambda c: c.clusters),
    Column("singletons", lambda c: c.messy),
    Column("pairwise P", lambda c: c.pairwise_precision),
    Column("pairwise R", lambda c: c.pairwise_recall),
    Column("pairwise F1", lambda c: c.pairwise_f1),
    Column("BCubed P", lambda c: c.bcubed_precision),
    Column("BCubed R", lambda c: c.bcubed_recall),
    Column("BCubed F1", lambda c: c.bcubed_f1),
)


def counts_columns(first: str) -> tuple[Column[tuple[str, Counts]], ...]:
    """Columns of a table of named counts; ``first`` heads the names (an empty name is
    an unlabelled group)."""
    return (
        Column(first, lambda r: r[0] or "(unlabelled)"),
        Column("identities", lambda r: r[1].identities),
        Column("images", lambda r: r[1].images),
    )


def render_html(report: EvalReport) -> str:
    """The report as one self-contained HTML page (plots embedded as PNG data URIs)."""
    m, data, c = report.model, report.data, report.clustering
    groups = "".join(
        f"<h3>{html.escape(col)}</h3>" + table(counts_columns("group"), list(vals.items()))
        for col, vals in data.groups.items()
    )
    sections = [
        (
            "Model pack",
            "<dl>"
            + "".join(
                f"<dt>{label}</dt><dd>{html.escape(str(value(m)))}</dd>"
                for label, value in MODEL_FACTS
            )
            + "</dl>",
        ),
        (
            "Data used",
            table(counts_columns("dataset"), list(data.datasets.items()))
            + f"<p>{data.images:,} images, {data.embedded_images:,} with a face "
            f"({data.images_without_face:,} without), {data.identities} identities; "
            f"aligned input: {m.aligned_input}.</p>" + groups,
        ),
        ("Verification (1:1), all pairs", _verification_html(report.verification)),
        ("Identification (1:N)", _identification_html(report.identification)),
        (
            "Clustering (the service's group)",
            table(CLUSTERING, [c.scores])
            + f"<p>Grouped at the threshold for FMR {c.max_fmr:g}.</p>",
        ),
        ("Per-group differentials", _fairness_html(report.fairness)),
        ("Calibration check", _calibration_html(report.calibration_check, m.calibration_source)),
        ("How to read this report", NOTES),
    ]
    sections.insert(
        0, ("Verdict", "".join(f"<p>{html.escape(line)}</p>" for line in report.verdict))
    )
    body = "".join(f"<section><h2>{html.escape(t)}</h2>{h}</section>" for t, h in sections)
    title = html.escape(report.title)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{CSS}</style></head><body><h1>{title}</h1><p class=meta>Model pack "
        f"{html.escape(m.pack)} ({html.escape(m.model_id)}), created "
        f"{html.escape(report.created)} by faceledger "
        f"{html.escape(report.faceledger_version)}.</p>{body}</body></html>\n"
    )
