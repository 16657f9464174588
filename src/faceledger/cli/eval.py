"""``faceledger eval``: verification, identification, clustering, calibration and reports."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, Any, cast

import typer

from faceledger.cli.common import emit, fail_cleanly, progress_bar
from faceledger.cli.models import cache_root, write_model_card
from faceledger.config import Settings
from faceledger.engine import Engine
from faceledger.errors import InvalidArgument
from faceledger.eval.cache import EmbeddingCache, ImageTask, embed_image
from faceledger.eval.calibrate import calibrate_tree, check_trees, save_calibration
from faceledger.eval.clustering import evaluate_grouping
from faceledger.eval.dataset import Layout, embed_trees, group_columns, read_labels, score_pairs
from faceledger.eval.fair import FairMethod
from faceledger.eval.identification import (
    GalleryIdentification,
    SplitIdentification,
    evaluate_gallery_probes,
    evaluate_split,
)
from faceledger.eval.pairs import evaluate_pairs, read_csv_pairs, read_lfw_pairs
from faceledger.eval.verification import all_pair_scores, evaluate_verification
from faceledger.models.calibration import Calibration
from faceledger.models.cohort import COHORT_K

eval_app = typer.Typer(help="Measure accuracy on labelled data.", no_args_is_help=True)

ModelOpt = Annotated[str, typer.Option("--model", help="Model pack.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
AlignedOpt = Annotated[
    bool, typer.Option("--aligned", help="Images are aligned 112x112 crops (no detection).")
]
LayoutOpt = Annotated[
    str,
    typer.Option(
        "--layout", help="tree: <person>/<images>; prefix: the person is the file name's prefix."
    ),
]
PerPersonOpt = Annotated[int | None, typer.Option(help="Use at most N images per person.")]
CacheOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        help="Cache folder (default .cache, or FACELEDGER_CACHE_DIR).",
        show_default=False,
    ),
]
NoCacheOpt = Annotated[
    bool, typer.Option("--no-cache", help="Neither read nor write cached embeddings.")
]
RayOpt = Annotated[
    str | None,
    typer.Option(
        "--ray",
        metavar="ADDRESS",
        help="Embed the images the cache lacks on the Ray cluster at HOST:PORT, writing them "
        "into the cache as they finish (pip install 'faceledger[ray]'; the images must be at "
        "the same path on every node).",
    ),
]
RayWorkersOpt = Annotated[
    int | None,
    typer.Option(help="Worker actors on the cluster (default: one per CPU).", min=1),
]


def _layout(value: str) -> Layout:
    if value not in ("tree", "prefix"):
        raise InvalidArgument(f"unknown layout {value!r}; known: tree, prefix")
    return cast(Layout, value)


@contextmanager
def _cache(
    engine: Engine,
    cache_dir: Path | None,
    off: bool,
    *,
    pack: str,
    ray: str | None = None,
    ray_workers: int | None = None,
) -> Iterator[EmbeddingCache | None]:
    """The embedding cache of ``engine`` (``None`` with ``--no-cache``); with ``--ray`` the
    images it lacks are embedded on that cluster, and what the cluster did is told on stderr."""
    if off:
        if ray is not None:
            raise InvalidArgument(
                "--ray writes what the cluster embeds into the cache: drop --no-cache"
            )
        yield None
        return
    with ExitStack() as stack:
        remote = None
        if ray is not None:
            from faceledger.batch.evaluation import RayImageEmbedder
            from faceledger.batch.types import EngineSpec

            spec = EngineSpec.of(engine, pack=pack)
            embedder = RayImageEmbedder[ImageTask](ray, spec, embed_image, workers=ray_workers)
            remote = stack.enter_context(embedder)
        cache = EmbeddingCache(cache_root(cache_dir) / "embeddings", engine.model_id, remote=remote)
        stack.callback(cache.close)
        yield cache
        if remote is not None:
            r = remote.report
            typer.echo(
                f"ray: {r.items} images embedded on the cluster in {r.tasks} tasks by "
                f"{r.workers} workers ({len(r.worker_pids)} worker processes); "
                "the others were in the cache",
                err=True,
            )


@eval_app.command("lfw")
@fail_cleanly
def lfw(
    root: Annotated[Path, typer.Option(help="LFW folder with images/ and meta/pairs.txt.")],
    folds: Annotated[int | None, typer.Option(help="Use only the first N of the 10 folds.")] = None,
    model: Annotated[str, typer.Option(help="Model pack.")] = "default",
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    ray: RayOpt = None,
    ray_workers: RayWorkersOpt = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """LFW View 2: 10-fold accuracy, each fold at the threshold chosen on the others."""
    engine = Engine(model)
    listed = read_lfw_pairs(root, folds=folds)
    with (
        _cache(engine, cache_dir, no_cache, pack=model, ray=ray, ray_workers=ray_workers) as cache,
        progress_bar("embedding LFW images") as progress,
    ):
        result = evaluate_pairs(engine, listed, cache=cache, progress=progress)
    _show(result, json_out)


@eval_app.command("pairs")
@fail_cleanly
def pairs(
    file: Annotated[Path, typer.Argument(help="CSV with file_x, file_y, same.")],
    folds: Annotated[int, typer.Option(help="Folds for threshold selection.")] = 10,
    model: Annotated[str, typer.Option(help="Model pack.")] = "default",
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    ray: RayOpt = None,
    ray_workers: RayWorkersOpt = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Verification accuracy on a CSV pair list, with the LFW protocol's k-fold thresholds."""
    engine = Engine(model)
    listed = read_csv_pairs(file, folds=folds)
    with (
        _cache(engine, cache_dir, no_cache, pack=model, ray=ray, ray_workers=ray_workers) as cache,
        progress_bar("embedding images") as progress,
    ):
        result = evaluate_pairs(engine, listed, cache=cache, progress=progress)
    _show(result, json_out)


@eval_app.command("calibrate")
@fail_cleanly
def calibrate(
    tree: Annotated[
        Path | None, typer.Argument(help="Folder of <person>/<images> to build the table from.")
    ] = None,
    check: Annotated[
        list[Path] | None,
        typer.Option(
            "--check",
            help="Measure the FMR at each stated rate on this folder (repeatable; pairs across "
            "folders count as impostors). Without TREE the pack's stored table is checked.",
        ),
    ] = None,
    model: ModelOpt = "default",
    aligned: Annotated[bool, typer.Option(help="TREE holds aligned 112x112 crops.")] = False,
    check_aligned: Annotated[
        bool, typer.Option(help="--check folders hold aligned crops.")
    ] = False,
    layout: LayoutOpt = "tree",
    per_person: Annotated[
        int | None, typer.Option(help="Use at most N images per person of --check folders.")
    ] = None,
    write: Annotated[
        bool,
        typer.Option(
            help="Save the calibration as a new version in the calibration store (never "
            "into the installed package)."
        ),
    ] = False,
    store: Annotated[
        Path | None,
        typer.Option(
            "--store",
            help="Calibration store folder (default DATA/calibrations, DATA from "
            "FACELEDGER_DATA or ./var).",
            show_default=False,
        ),
    ] = None,
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    fair: Annotated[
        bool,
        typer.Option(
            "--fair",
            help="Label-free fairness normalisation. With --labels: measure it on TREE by "
            "their groups (fitted on half the identities, measured on the other, swapped, "
            "pooled). With --write: save a cohort-normalised calibration of all of TREE, "
            "which searches of a collection moved to it apply.",
        ),
    ] = False,
    labels: Annotated[
        Path | None,
        typer.Option(help="Group labels to measure --fair by (never used to fit it)."),
    ] = None,
    column: Annotated[
        str | None,
        typer.Option(help="The --labels column to measure --fair by (default: the first)."),
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            help="--fair method: cohort (each face against its nearest other people) or fsn "
            "(fair score normalization, clusters of the embedding space)."
        ),
    ] = "cohort",
    cohort_k: Annotated[
        int, typer.Option(help="Cohort faces averaged per face by --method cohort.")
    ] = COHORT_K,
    clusters: Annotated[int, typer.Option(help="Clusters of --method fsn.")] = 20,
    ray: RayOpt = None,
    ray_workers: RayWorkersOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Build a threshold vs FMR table from all cross-identity pairs, or check one on other data."""
    if tree is None and not check:
        raise InvalidArgument("give a TREE to calibrate on, --check folders, or both")
    if fair:
        if tree is None or (labels is None and not write):
            raise InvalidArgument(
                "--fair needs a TREE, and --labels to measure by or --write to save a "
                "cohort-normalised calibration (or both)"
            )
        if labels is not None and check:
            raise InvalidArgument("--fair --labels measures on TREE itself: drop --check")
        if write and _method(method) != "cohort":  # also checks --method first
            raise InvalidArgument(
                "--fair --write saves a cohort-normalised calibration; searches apply no "
                "other method: drop --method fsn"
            )
    engine = Engine(model)
    cal = None
    with _cache(engine, cache_dir, no_cache, pack=model, ray=ray, ray_workers=ray_workers) as cache:
        if fair and tree is not None and labels is not None:
            fair_method = _method(method)
            _fair(
                engine,
                tree,
                labels,
                column,
                aligned,
                fair_method,
                clusters,
                cohort_k,
                cache,
                json_out,
            )
            if not write:
                return None
        if tree is not None:
            with progress_bar("embedding") as progress:
                cal = calibrate_tree(
                    engine,
                    tree,
                    aligned=aligned,
                    cache=cache,
                    progress=progress,
                    cohort_k=cohort_k if fair else None,
                )
            if write:
                saved = save_calibration(cal, store or Settings().data / "calibrations")
                typer.echo(f"saved calibration {cal.calibration_id} to {saved}", err=True)
                if cal.cohort is not None:
                    typer.echo(
                        f"it keeps {cal.cohort.size} face embeddings of TREE's people as its "
                        "cohort, outside any collection: erasure does not reach them",
                        err=True,
                    )
            if fair and labels is not None:
                return None  # the fairness check was the output
        checked = None
        if check:
            with progress_bar("embedding check data") as progress:
                checked = check_trees(
                    engine,
                    check,
                    calibration=cal,
                    aligned=check_aligned,
                    layout=_layout(layout),
                    per_person=per_person,
                    cache=cache,
                    progress=progress,
                )
    if checked is None:
        return _show(_summary(cal) if cal else {}, json_out)
    if json_out:
        return emit({"calibration": _summary(cal), "check": checked} if cal else checked)
    if cal is not None:
        _show(_summary(cal), False)
    typer.echo(
        f"{checked.calibration_source} checked on {', '.join(checked.datasets)}: "
        f"{checked.images} images with a face, {checked.identities} identities, "
        f"{checked.impostor_pairs:,} impostor pairs"
    )
    for r in checked.rates:
        note = "" if r.measurable else "  (fewer than 10 expected: not measurable)"
        fnmr = "n/a (no genuine pairs)" if r.fnmr is None else f"{r.fnmr:.4f}"
        typer.echo(
            f"  stated FMR {r.stated_fmr:.0e}  threshold {r.threshold:.4f}  measured "
            f"{r.measured_fmr:.2e} ({r.false_matches:,} pairs)  x{r.ratio:.2f}  "
            f"FNMR {fnmr}{note}"
        )


def _method(value: str) -> FairMethod:
    if value not in ("cohort", "fsn"):
        raise InvalidArgument(f"--method must be cohort or fsn, got {value!r}")
    return cast(FairMethod, value)


def _fair(
    engine: Engine,
    tree: Path,
    labels: Path,
    column: str | None,
    aligned: bool,
    method: FairMethod,
    clusters: int,
    cohort_k: int,
    cache: EmbeddingCache | None,
    json_out: bool,
) -> None:
    from faceledger.eval.fair import cross_fitted_check

    table = read_labels(labels)
    with progress_bar("embedding") as progress:
        data = embed_trees(engine, [tree], aligned=aligned, cache=cache, progress=progress)
    if column is None:
        column = table.columns[0]
    elif column not in table.columns:
        raise InvalidArgument(
            f"--column {column!r} is not in {labels.name}: {', '.join(table.columns)}"
        )
    groups = group_columns(data, table)[column]
    check = cross_fitted_check(
        data.embeddings, data.labels, groups, method=method, clusters=clusters, cohort_k=cohort_k
    )
    if json_out:
        return emit(
            {"column": column, "clusters": clusters, "cohort_k": cohort_k, **check.to_dict()}
        )
    names = [f"fold {i}" for i in range(len(check.folds))] + ["pooled"]
    for name, f in zip(names, (*check.folds, check.pooled), strict=True):
        typer.echo(
            f"{name} ({method}): measured {f.measured_identities} identities on tables fitted "
            f"on others; TAR at FMR 1e-3 {1 - f.tar_plain.fnmr:.4f} without, "
            f"{1 - f.tar_fair.fnmr:.4f} with"
        )
        for p in f.points:
            typer.echo(
                f"  stated {p.stated_fmr:.0e} {column}={p.group}: FMR {p.plain.fmr:.1e} -> "
                f"{p.fair.fmr:.1e}, FNMR {p.plain.fnmr:.3f} -> {p.fair.fnmr:.3f}"
            )
        for stated in sorted({p.stated_fmr for p in f.points}, reverse=True):
            before, after = f.fmr_ratio(stated, fair=False), f.fmr_ratio(stated, fair=True)
            typer.echo(
                f"  worst/best FMR at stated {stated:.0e}: {_ratio(before)} -> {_ratio(after)}"
            )


def _summary(cal: Calibration) -> dict[str, Any]:
    """A calibration as shown on the terminal: its cohort by size and hash, not its faces."""
    out = cal.to_dict()
    if cal.cohort is not None:
        out["cohort"] = {"faces": cal.cohort.size, "k": cal.cohort.k, "sha256": cal.cohort.digest}
    return out


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


@eval_app.command("verify")
@fail_cleanly
def verify(
    pairs_file: Annotated[
        Path | None, typer.Option("--pairs", help="CSV pair list (file_x, file_y, same).")
    ] = None,
    lfw_root: Annotated[
        Path | None, typer.Option("--lfw", help="LFW folder with images/ and meta/pairs.txt.")
    ] = None,
    tree: Annotated[
        list[Path] | None,
        typer.Option("--tree", help="Folder of <person>/<images>: all pairs (repeatable)."),
    ] = None,
    model: ModelOpt = "default",
    aligned: AlignedOpt = False,
    layout: LayoutOpt = "tree",
    per_person: PerPersonOpt = None,
    curves: Annotated[bool, typer.Option(help="Include curves and histograms in JSON.")] = False,
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    ray: RayOpt = None,
    ray_workers: RayWorkersOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """ROC and DET, EER, TAR at FMR 1e-2, 1e-3, 1e-4 (and lower with enough impostor pairs)."""
    if sum(x is not None and x != [] for x in (pairs_file, lfw_root, tree)) != 1:
        raise InvalidArgument("give exactly one of --pairs, --lfw, --tree")
    engine = Engine(model)
    cal = engine.pack.calibration
    extra: dict[str, Any] = {}
    with (
        _cache(engine, cache_dir, no_cache, pack=model, ray=ray, ray_workers=ray_workers) as cache,
        progress_bar("embedding") as progress,
    ):
        if tree:
            data = embed_trees(
                engine,
                tree,
                aligned=aligned,
                layout=_layout(layout),
                per_person=per_person,
                cache=cache,
                progress=progress,
            )
            scores = all_pair_scores(data.embeddings, data.labels)
            genuine, impostor = scores.genuine, scores.impostor
            extra = {"images": len(data.paths), "images_without_face": len(data.skipped)}
        else:
            listed = (
                read_csv_pairs(pairs_file)
                if pairs_file is not None
                else read_lfw_pairs(cast(Path, lfw_root))
            )
            scored = score_pairs(engine, listed, cache=cache, progress=progress)
            genuine, impostor = scored.scores[scored.same], scored.scores[~scored.same]
            extra = {"images": scored.images, "faces_not_found": scored.faces_not_found}
    verified = evaluate_verification(genuine, impostor, calibration=cal)
    if json_out:
        result = verified.to_dict()
        if not curves:
            result.pop("curve")
            result.pop("histogram")
        return emit({**result, **extra, "model": engine.model_id})
    typer.echo(
        f"{verified.genuine_pairs:,} genuine and {verified.impostor_pairs:,} impostor pairs: "
        f"EER {verified.eer:.4f}, AUC {verified.auc:.4f}"
    )
    for p in verified.at_fmr:
        few = "" if p.enough_impostors else "  (fewer than 10 impostor pairs above)"
        typer.echo(f"  TAR {p.tar:.4f} at FMR {p.target_fmr:.0e}{few}")


@eval_app.command("identify")
@fail_cleanly
def identify(
    gallery: Annotated[Path, typer.Option(help="Folder of <person>/<images> to enrol from.")],
    probes: Annotated[
        Path, typer.Option(help="Folder of <person>/<images> to search with (may be --gallery).")
    ],
    enroll_per_person: Annotated[int, typer.Option(help="Images enrolled per person.")] = 1,
    enroll_persons: Annotated[
        int | None,
        typer.Option(
            help="When gallery and probes are one folder: persons enrolled (default half)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed choosing the enrolled persons.")] = 0,
    model: ModelOpt = "default",
    aligned: AlignedOpt = False,
    layout: LayoutOpt = "tree",
    per_person: PerPersonOpt = None,
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    ray: RayOpt = None,
    ray_workers: RayWorkersOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Open-set 1:N: rank-1 and CMC, FNIR at FPIR 1e-2 and 1e-3 (NIST FRTE 1:N terms)."""
    engine = Engine(model)
    cal = engine.pack.calibration
    options: dict[str, Any] = {"aligned": aligned, "layout": _layout(layout)}
    with (
        _cache(engine, cache_dir, no_cache, pack=model, ray=ray, ray_workers=ray_workers) as cache,
        progress_bar("embedding") as progress,
    ):
        if gallery.resolve() == probes.resolve():
            data = embed_trees(
                engine, [gallery], per_person=per_person, cache=cache, progress=progress, **options
            )
            found: SplitIdentification | GalleryIdentification = evaluate_split(
                data.embeddings,
                data.labels,
                enroll_persons=enroll_persons,
                enroll_per_person=enroll_per_person,
                seed=seed,
                calibration=cal,
            )
        else:
            enrolled = embed_trees(
                engine, [gallery], per_person=enroll_per_person, cache=cache, **options
            )
            searched = embed_trees(
                engine, [probes], per_person=per_person, cache=cache, progress=progress, **options
            )
            found = evaluate_gallery_probes(
                enrolled.embeddings,
                enrolled.labels,
                searched.embeddings,
                searched.labels,
                calibration=cal,
            )
    if json_out:
        result = found.to_dict()
        result.pop("curve")
        return emit({**result, "model": engine.model_id})
    ident = found.result
    typer.echo(
        f"{ident.enrolled} persons enrolled ({found.enrolled_images} images); "
        f"{ident.mated_searches:,} mated and {ident.nonmated_searches:,} non-mated "
        f"searches: rank-1 {ident.rank1:.4f}"
    )
    for p in ident.at_fpir:
        few = "" if p.enough_searches else "  (fewer than 10 non-mated searches above)"
        typer.echo(f"  FNIR {p.fnir:.4f} at FPIR {p.target:.0e}{few}")


@eval_app.command("cluster")
@fail_cleanly
def cluster(
    tree: Annotated[Path, typer.Argument(help="Folder of <person>/<images>.")],
    max_fmr: Annotated[float, typer.Option(help="Group at the threshold for this FMR.")] = 1e-3,
    model: ModelOpt = "default",
    aligned: AlignedOpt = False,
    layout: LayoutOpt = "tree",
    per_person: PerPersonOpt = None,
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    ray: RayOpt = None,
    ray_workers: RayWorkersOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Pairwise and BCubed precision, recall and F1 of the service's grouping of a tree."""
    engine = Engine(model)
    with (
        _cache(engine, cache_dir, no_cache, pack=model, ray=ray, ray_workers=ray_workers) as cache,
        progress_bar("embedding") as progress,
    ):
        data = embed_trees(
            engine,
            [tree],
            aligned=aligned,
            layout=_layout(layout),
            per_person=per_person,
            cache=cache,
            progress=progress,
        )
    cal = engine.pack.require_calibration()
    scores = evaluate_grouping(data.embeddings, data.labels, cal, max_fmr=max_fmr)
    _show({**scores.to_dict(), "max_fmr": max_fmr, "model": engine.model_id}, json_out)


@eval_app.command("report")
@fail_cleanly
def report(
    trees: Annotated[list[Path], typer.Argument(help="Folders of <person>/<images>.")],
    out: Annotated[Path | None, typer.Option("--out", help="Write the HTML report here.")] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Write the figures as JSON here.")
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(help="Group labels: CSV (person|image, columns...) or JSON {person: value}."),
    ] = None,
    fmr: Annotated[
        list[float] | None,
        typer.Option(help="Stated FMR of a per-group operating point (repeatable)."),
    ] = None,
    enroll_persons: Annotated[
        int | None, typer.Option(help="Persons enrolled for identification (default half).")
    ] = None,
    enroll_per_person: Annotated[int, typer.Option(help="Images enrolled per person.")] = 1,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap samples for the intervals.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the enrolment split and bootstrap.")] = 0,
    model: ModelOpt = "default",
    aligned: AlignedOpt = False,
    layout: LayoutOpt = "tree",
    per_person: PerPersonOpt = None,
    cache_dir: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    ray: RayOpt = None,
    ray_workers: RayWorkersOpt = None,
    card: Annotated[
        bool,
        typer.Option(
            "--card/--no-card",
            help="Also keep the figures as the pack's model card (models show); off by default.",
        ),
    ] = False,
) -> None:
    """Every measure on one dataset, with per-group differentials, as HTML and/or JSON."""
    from faceledger.eval.report import DEFAULT_STATED_FMRS, ReportOptions, build_report
    from faceledger.eval.report_html import write_report

    if out is None and json_file is None:
        raise InvalidArgument("give --out report.html and/or --json figures.json")
    engine = Engine(model)
    options = ReportOptions(
        aligned=aligned,
        layout=_layout(layout),
        per_person=per_person,
        stated_fmrs=tuple(fmr) if fmr else DEFAULT_STATED_FMRS,
        enroll_persons=enroll_persons,
        enroll_per_person=enroll_per_person,
        bootstrap=bootstrap,
        seed=seed,
    )
    table = read_labels(labels) if labels is not None else None
    with (
        _cache(engine, cache_dir, no_cache, pack=model, ray=ray, ray_workers=ray_workers) as cache,
        progress_bar("embedding") as progress,
    ):
        figures = build_report(
            engine, trees, labels=table, options=options, cache=cache, progress=progress
        )
    write_report(figures, html_out=out, json_out=json_file)
    for line in figures.verdict:
        typer.echo(line)
    if card:
        typer.echo(f"kept as the model card: {write_model_card(figures, cache_dir)}")
    for path in (out, json_file):
        if path is not None:
            typer.echo(f"wrote {path}")


def _show(result: dict[str, Any], json_out: bool) -> None:
    if json_out:
        emit(result)
    else:
        for key, value in result.items():
            typer.echo(f"{key}: {value}")
