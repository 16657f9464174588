"""The evaluation report: every measure on one labelled dataset, as JSON and as one HTML file.

:func:`build_report` embeds the data (through the cache) and returns the figures as a
JSON-ready mapping; :func:`render_html` turns that mapping into a self-contained page
whose plots are PNG images embedded as data URIs.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from faceledger.engine import Engine
from faceledger.errors import InvalidArgument
from faceledger.eval.cache import EmbeddingCache
from faceledger.eval.calibrate import check_calibration
from faceledger.eval.clustering import evaluate_grouping
from faceledger.eval.dataset import (
    LabelTable,
    Layout,
    Progress,
    describe,
    embed_trees,
    group_columns,
)
from faceledger.eval.fairness import FLAG_FACTOR, differentials
from faceledger.eval.identification import evaluate_split
from faceledger.eval.verification import all_pair_scores, evaluate_verification

__all__ = [
    "DEFAULT_STATED_FMRS",
    "ReportOptions",
    "build_report",
    "render_html",
    "report_json",
    "verdict",
    "write_report",
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
) -> dict[str, Any]:
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
    verification = evaluate_verification(scores.genuine, scores.impostor, calibration=cal)
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
        identification = {"skipped": exc.message}
    clustering = evaluate_grouping(
        data.embeddings, data.labels, cal, max_fmr=opts.cluster_max_fmr
    ).to_dict()
    operating = [(f, cal.threshold_for(f)) for f in opts.stated_fmrs]
    fairness = differentials(
        data.embeddings,
        data.labels,
        columns,
        operating=operating,
        bootstrap=opts.bootstrap,
        seed=opts.seed,
    )
    names = sorted(set(data.sources))
    checked = check_calibration(cal, scores.impostor, scores.genuine)
    sets = cal.provenance.get("sets") or [cal.source.split(":")[0]]
    report = {
        "title": f"faceledger evaluation: {', '.join(names)}",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "faceledger_version": _version(),
        "model": {
            "pack": engine.pack.name,
            "model_id": engine.model_id,
            "description": engine.pack.description,
            "license": engine.pack.license,
            "calibration_source": cal.source,
            "aligned_input": opts.aligned,
        },
        "data": {**describe(data, columns), "layout": opts.layout},
        "verification": verification.to_dict(),
        "identification": identification,
        "clustering": {**clustering, "max_fmr": opts.cluster_max_fmr},
        "fairness": {
            "flag_factor": FLAG_FACTOR,
            "bootstrap": opts.bootstrap,
            "differentials": [d.to_dict() for d in fairness],
        },
        "calibration_check": {
            "same_data_as_calibration": bool(set(names) & set(sets)),
            "rates": [asdict(r) for r in checked],
        },
    }
    return {**report, "verdict": verdict(report)}


def verdict(report: dict[str, Any]) -> list[str]:
    """The report's conclusions in a few sentences, headline first.

    A group counts as flagged only when its FMR interval lies wholly above the flag level
    (``FLAG_FACTOR`` x stated); a point estimate above it with an interval reaching below
    is named as not established.
    """
    fair = report["fairness"]
    diffs = fair["differentials"]
    factor = fair["flag_factor"]
    flagged = sorted({f"{d['column']}={g}" for d in diffs for g in d["flagged_groups"]})
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
    for d in diffs:
        ratio = d["fmr_ratio_worst_to_best"]
        unsure = [
            g["group"]
            for g in d["groups"]
            if g.get("fmr_over_flag_level") and g["group"] not in d["flagged_groups"]
        ]
        lines.append(
            f"{d['column']} at stated FMR {d['stated_fmr']:.0e}: worst/best FMR ratio "
            f"{'n/a' if ratio is None else f'{ratio:.2f}'}; flagged: "
            f"{', '.join(d['flagged_groups']) or 'none'}"
            + _guidance(d)
            + (
                f"; over {factor:g}x by the point estimate but not established "
                f"(interval reaches below): {', '.join(unsure)}"
                if unsure
                else ""
            )
            + "."
        )
    rates = [r for r in report["calibration_check"]["rates"] if r["measurable"]]
    if rates:
        lo, hi = min(r["ratio"] for r in rates), max(r["ratio"] for r in rates)
        same = report["calibration_check"]["same_data_as_calibration"]
        lines.append(
            f"Calibration: measured/stated FMR between {lo:.2f} and {hi:.2f} at the "
            f"{len(rates)} measurable rates"
            + (" (this is the calibration data: an arithmetic check only)." if same else ".")
        )
    return lines


def _guidance(d: dict[str, Any]) -> str:
    """The thresholds that would give each group the stated rate, beside the one used."""
    own = [
        f"{g['group']} {g['group_threshold']:.4f}"
        for g in d["groups"]
        if g.get("group_threshold") is not None and np.isfinite(g["group_threshold"])
    ]
    if not own:
        return ""
    return (
        f"; threshold giving each group the stated rate: {', '.join(own)} "
        f"(used: {d['threshold']:.4f})"
    )


def report_json(report: dict[str, Any]) -> str:
    """The report as JSON text (NaN and infinity written as null)."""

    def clean(value: Any) -> Any:
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not np.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(report), indent=1, allow_nan=False)


def write_report(
    report: dict[str, Any], *, html_out: Path | None = None, json_out: Path | None = None
) -> None:
    """Write the HTML page and/or the JSON figures."""
    for path, render in ((html_out, render_html), (json_out, report_json)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(report), encoding="utf-8")


# -- HTML ------------------------------------------------------------------------------
CSS = """body{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222}h2{border-bottom:1px solid #ccc;margin-top:2em}table{margin:.8em 0;
border-collapse:collapse;display:block;overflow-x:auto;max-width:100%}td,th{padding:.25em .6em;
border:1px solid #ccc;text-align:right;white-space:nowrap}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}.flag{background:#fde2e2;font-weight:600}
.meta,figcaption{color:#555}figcaption{font-size:13px}figure{display:inline-block;
margin:.5em 1em .5em 0}img{max-width:100%}dt{font-weight:600}dd{margin:0 0 .5em 1.5em}"""


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    if isinstance(x, bool) or not isinstance(x, float | int):
        return html.escape(str(x))
    if isinstance(x, int) or x == 0:
        return f"{x:,}" if isinstance(x, int) else "0"
    return f"{x:.2e}" if abs(x) < 1e-3 else f"{x:.4f}"


def _table(spec: str, records: Sequence[dict[str, Any]], flags: Sequence[bool] = ()) -> str:
    """An HTML table; ``spec`` is ``"Header=key|Header=key..."`` over the records' keys."""
    cols = [c.split("=") for c in spec.split("|")]
    th = "".join(f"<th>{html.escape(h)}</th>" for h, _ in cols)
    body = "".join(
        f"<tr{' class=flag' if i < len(flags) and flags[i] else ''}>"
        + "".join(f"<td>{_fmt(r.get(k))}</td>" for _, k in cols)
        + "</tr>"
        for i, r in enumerate(records)
    )
    return f"<table><tr>{th}</tr>{body}</table>"


def _figure(ncols: int = 1) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure  # imported here: only reports need matplotlib

    fig = Figure(figsize=(4.8 * ncols, 3.5), layout="constrained")
    axes = list(fig.subplots(1, ncols, squeeze=False)[0])
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    return fig, axes


def _img(fig: Any, caption: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96)
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    text = html.escape(caption)
    return f'<figure><img src="{uri}" alt="{text}"><figcaption>{text}</figcaption></figure>'


def _verification_html(v: dict[str, Any]) -> str:
    fmr, fnmr = np.array(v["curve"]["fmr"]), np.array(v["curve"]["fnmr"])
    fig, (roc, det) = _figure(2)
    keep = fmr > 0
    roc.semilogx(fmr[keep], 1 - fnmr[keep])
    roc.set(xlabel="false match rate", ylabel="true accept rate", title="ROC")
    keep &= fnmr > 0
    det.loglog(fmr[keep], fnmr[keep])
    det.set(xlabel="false match rate", ylabel="false non-match rate", title="DET")
    hist_fig, (hist,) = _figure()
    edges = np.array(v["histogram"]["edges"])
    for name in ("impostor", "genuine"):
        counts = np.array(v["histogram"][name], dtype=float)
        density = counts / max(counts.sum(), 1.0) / np.diff(edges)
        hist.stairs(density, edges, label=name, fill=True, alpha=0.5)
    for p in v["at_stated_fmr"]:
        if p["target_fmr"] in (1e-3, 1e-4):
            hist.axvline(p["threshold"], ls="--", c="k", lw=0.8)
    hist.set(xlabel="similarity", ylabel="density", title="Scores (dashed: FMR 1e-3, 1e-4)")
    hist.legend()
    return (
        _table(
            "genuine pairs=genuine_pairs|impostor pairs=impostor_pairs|EER=eer"
            "|EER threshold=eer_threshold|AUC=auc",
            [v],
        )
        + "<h3>TAR at FMR (threshold set on these impostor pairs)</h3>"
        + _table(
            "FMR=target_fmr|threshold=threshold|TAR=tar|measured FMR=fmr"
            "|false matches=false_matches|at least 10 impostors above=enough_impostors",
            v["tar_at_fmr"],
        )
        + "<h3>At the pack's stated thresholds</h3>"
        + _table(
            "stated FMR=target_fmr|threshold=threshold|measured FMR=fmr|FNMR=fnmr",
            v["at_stated_fmr"],
        )
        + _img(fig, "ROC and DET over all genuine and impostor pairs")
        + _img(hist_fig, "Genuine and impostor similarity distributions")
    )


def _identification_html(ident: dict[str, Any]) -> str:
    if "skipped" in ident:
        return f"<p>Not measured: {html.escape(ident['skipped'])}</p>"
    fig, (cmc, det) = _figure(2)
    cmc.plot(np.arange(1, len(ident["cmc"]) + 1), ident["cmc"], marker=".")
    cmc.set(xlabel="rank", ylabel="identification rate", title="CMC (closed set)")
    fpir, fnir = np.array(ident["curve"]["fpir"]), np.array(ident["curve"]["fnir"])
    keep = (fpir > 0) & (fnir > 0)
    det.loglog(fpir[keep], fnir[keep])
    det.set(xlabel="FPIR", ylabel="FNIR", title="Open set: FNIR vs FPIR")
    return (
        _table(
            "enrolled persons=enrolled_persons|enrolled images=enrolled_images"
            "|mated searches=mated_searches|non-mated searches=nonmated_searches|rank-1=rank1",
            [ident],
        )
        + "<h3>FNIR at FPIR (rank 1)</h3>"
        + _table(
            "FPIR=target|threshold=threshold|FNIR=fnir|measured FPIR=fpir"
            "|at least 10 non-mated above=enough_searches",
            ident["fnir_at_fpir"],
        )
        + "<h3>At the pack's stated thresholds (as the service's identify)</h3>"
        + _table(
            "stated FMR=target|threshold=threshold|FNIR=fnir|FPIR=fpir", ident["at_stated_fmr"]
        )
        + _img(fig, "Closed-set CMC and open-set FNIR against FPIR")
    )


GROUP_SPEC = (
    "group=group|identities=identities|images=images|impostor pairs=impostor_pairs"
    "|false matches=false_matches|FMR=fmr|95% CI=fmr_ci_text|genuine pairs=genuine_pairs"
    "|FNMR=fnmr|95% CI=fnmr_ci_text|at least 10 false matches expected=enough_impostors"
    "|threshold giving the stated FMR in this group=group_threshold|flag=flag"
)


def _fairness_html(fair: dict[str, Any]) -> str:
    by_column: dict[str, list[dict[str, Any]]] = {}
    for d in fair["differentials"]:
        by_column.setdefault(d["column"], []).append(d)
    parts = []
    for column, diffs in by_column.items():
        parts.append(f"<h3>{html.escape(column)}</h3>")
        fig, (ax_fmr, ax_fnmr) = _figure(2)
        for k, d in enumerate(diffs):
            groups = d["groups"]
            records = [
                {
                    **g,
                    "fmr_ci_text": " – ".join(_fmt(x) for x in g["fmr_ci"]),
                    "fnmr_ci_text": " – ".join(_fmt(x) for x in g["fnmr_ci"]),
                    "flag": (
                        f"FMR > {fair['flag_factor']:g}x stated (whole interval)"
                        if g["flagged"]
                        else "over by the estimate, not established"
                        if g.get("fmr_over_flag_level")
                        else ""
                    ),
                }
                for g in groups
            ]
            parts.append(
                f"<p>Stated FMR {_fmt(d['stated_fmr'])} (threshold {_fmt(d['threshold'])}): "
                f"worst/best FMR ratio {_fmt(d['fmr_ratio_worst_to_best'])}, "
                f"worst/best FNMR ratio {_fmt(d['fnmr_ratio_worst_to_best'])}; "
                f"unlabelled images {d['unlabelled_images']}. A group's own threshold is "
                "guidance for the operator: faceledger never applies a per-group threshold; "
                "a search records the threshold it used.</p>"
                + _table(GROUP_SPEC, records, [g["flagged"] for g in groups])
            )
            x = np.arange(len(groups)) + (k - (len(diffs) - 1) / 2) * 0.15
            for ax, key in ((ax_fmr, "fmr"), (ax_fnmr, "fnmr")):
                val = np.array([g[key] for g in groups], dtype=float)  # None becomes nan
                ci = np.array([g[f"{key}_ci"] for g in groups], dtype=float).reshape(-1, 2)
                err = np.nan_to_num(np.abs(ci - val[:, None]).T)
                ax.errorbar(x, val, yerr=err, fmt="o", capsize=3, label=f"at {d['stated_fmr']:g}")
                names = [g["group"] for g in groups]
                ax.set_xticks(np.arange(len(groups)), names, rotation=30, ha="right")
            ax_fmr.axhline(d["stated_fmr"], ls="--", lw=0.8, c=f"C{k}")
            ax_fmr.axhline(d["stated_fmr"] * fair["flag_factor"], ls=":", lw=0.8, c=f"C{k}")
        ax_fmr.set_yscale("symlog", linthresh=1e-6)
        ax_fmr.set_ylim(bottom=0)
        ax_fmr.set(title=f"FMR by {column} (dashed: stated, dotted: flag)")
        ax_fnmr.set(title=f"FNMR by {column}")
        ax_fmr.legend(fontsize=8)
        parts.append(_img(fig, f"False match and false non-match rates by {column}, 95% CI"))
    return "".join(parts) or "<p>No group labels were given.</p>"


def _calibration_html(check: dict[str, Any], source: str) -> str:
    rates = check["rates"]
    fig, (ax,) = _figure()
    for measurable, marker in ((True, "o"), (False, "x")):
        pts = [r for r in rates if r["measurable"] == measurable and r["measured_fmr"] > 0]
        label = "measurable" if measurable else "fewer than 10 expected"
        xs, ys = [r["stated_fmr"] for r in pts], [r["measured_fmr"] for r in pts]
        ax.loglog(xs, ys, marker, label=label)
    lims = [min(r["stated_fmr"] for r in rates), 1.0]
    ax.loglog(lims, lims, "k--", lw=0.8, label="measured = stated")
    ax.set(xlabel="stated FMR", ylabel="measured FMR", title="Calibration check")
    ax.legend(fontsize=8)
    note = (
        "<p><b>This is the data the table was built from</b>: it checks the table's arithmetic, "
        "not how it transfers to other faces.</p>"
        if check["same_data_as_calibration"]
        else ""
    )
    return (
        f"<p>Table built from {html.escape(source)}.</p>{note}"
        + _table(
            "stated FMR=stated_fmr|threshold=threshold|measured FMR=measured_fmr"
            "|false matches=false_matches|measured/stated=ratio|FNMR=fnmr"
            "|at least 10 expected=measurable|extrapolated=extrapolated",
            rates,
        )
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
MODEL_FACTS = (
    ("pack", "pack"),
    ("model id", "model_id"),
    ("licence", "license"),
    ("description", "description"),
    ("thresholds calibrated on", "calibration_source"),
)
CLUSTER_SPEC = (
    "faces=items|persons=persons|groups=clusters|singletons=messy|pairwise P=pairwise_precision"
    "|pairwise R=pairwise_recall|pairwise F1=pairwise_f1|BCubed P=bcubed_precision"
    "|BCubed R=bcubed_recall|BCubed F1=bcubed_f1"
)


def render_html(report: dict[str, Any]) -> str:
    """The report as one self-contained HTML page (plots embedded as PNG data URIs)."""
    m, data, c = report["model"], report["data"], report["clustering"]
    counts = "group=group|identities=identities|images=images"
    groups = "".join(
        f"<h3>{html.escape(col)}</h3>"
        + _table(counts, [{"group": g or "(unlabelled)", **x} for g, x in vals.items()])
        for col, vals in data["groups"].items()
    )
    datasets = [{"group": name, **x} for name, x in data["datasets"].items()]
    sections = [
        (
            "Model pack",
            "<dl>"
            + "".join(
                f"<dt>{label}</dt><dd>{html.escape(str(m[key]))}</dd>" for label, key in MODEL_FACTS
            )
            + "</dl>",
        ),
        (
            "Data used",
            _table(counts.replace("group=", "dataset="), datasets)
            + f"<p>{data['images']:,} images, {data['embedded_images']:,} with a face "
            f"({data['images_without_face']:,} without), {data['identities']} identities; "
            f"aligned input: {m['aligned_input']}.</p>" + groups,
        ),
        ("Verification (1:1), all pairs", _verification_html(report["verification"])),
        ("Identification (1:N)", _identification_html(report["identification"])),
        (
            "Clustering (the service's group)",
            _table(CLUSTER_SPEC, [c])
            + f"<p>Grouped at the threshold for FMR {c['max_fmr']:g}.</p>",
        ),
        ("Per-group differentials", _fairness_html(report["fairness"])),
        (
            "Calibration check",
            _calibration_html(report["calibration_check"], m["calibration_source"]),
        ),
        ("How to read this report", NOTES),
    ]
    stated = report.get("verdict") or verdict(report)
    sections.insert(0, ("Verdict", "".join(f"<p>{html.escape(line)}</p>" for line in stated)))
    body = "".join(f"<section><h2>{html.escape(t)}</h2>{h}</section>" for t, h in sections)
    title = html.escape(report["title"])
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{CSS}</style></head><body><h1>{title}</h1><p class=meta>Model pack "
        f"{html.escape(m['pack'])} ({html.escape(m['model_id'])}), created "
        f"{html.escape(report['created'])} by faceledger "
        f"{html.escape(report['faceledger_version'])}.</p>{body}</body></html>\n"
    )
