"""``faceledger models``: list the model packs, or show one's model card.

A model card is the pack's licence and thresholds with the figures of its latest
``faceledger eval report``, kept in ``<cache>/model-cards/<pack>.json``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import BaseModel, ConfigDict, ValidationError

from faceledger.cli.common import emit, fail_cleanly
from faceledger.config import Settings
from faceledger.errors import NotFound, StoreError
from faceledger.models.packs import BUILTIN_PACKS, load_pack
from faceledger.speech.model import SpeechModelInfo, default_model_info, directory_model_info

if TYPE_CHECKING:  # the report's module is imported when a card is written, not at start-up
    from faceledger.eval.report import EvalReport

models_app = typer.Typer(
    help="Model packs and speech models: list them, or show a pack's model card."
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


UNEVEN = 1.5
"""A worst/best FMR ratio above which the card points to the fairness normalisation."""


def cache_root(cache_dir: Path | None) -> Path:
    """``cache_dir``, else the settings' cache folder (``FACELEDGER_CACHE_DIR``, ``.cache``)."""
    return cache_dir if cache_dir is not None else Settings().cache_dir


def _card_path(cache_dir: Path | None, pack: str) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", pack)
    return cache_root(cache_dir) / "model-cards" / f"{name}.json"


def write_model_card(report: EvalReport, cache_dir: Path | None) -> Path:
    """Keep a report's figures as the latest of its pack; returns the file written."""
    from faceledger.eval.report import report_json

    path = _card_path(cache_dir, report.model.pack)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(report_json(report), encoding="utf-8")
    tmp.replace(path)
    return path


class _Card(BaseModel):
    """A part of a stored card: the report's JSON figures that the card shows (others ignored)."""

    model_config = ConfigDict(frozen=True)


class CardModel(_Card):
    pack: str
    model_id: str
    description: str
    license: str
    calibration_source: str


class CardData(_Card):
    datasets: dict[str, object]
    embedded_images: int
    images_without_face: int
    identities: int


class CardPoint(_Card):
    target_fmr: float
    threshold: float
    tar: float | None


class CardVerification(_Card):
    eer: float | None
    auc: float | None
    tar_at_fmr: list[CardPoint]
    at_stated_fmr: list[CardPoint]


class CardOpenSetPoint(_Card):
    target: float
    fnir: float | None


class CardIdentification(_Card):
    enrolled_persons: int
    rank1: float | None
    fnir_at_fpir: list[CardOpenSetPoint]


class CardSkipped(_Card):
    skipped: str


class CardClustering(_Card):
    max_fmr: float
    bcubed_f1: float | None
    pairwise_f1: float | None


class CardGroup(_Card):
    group: str
    fmr: float | None
    fnmr: float | None
    flagged: bool
    group_threshold: float | None = None  # cards written before per-group guidance lack it


class CardDifferential(_Card):
    column: str
    stated_fmr: float
    fmr_ratio_worst_to_best: float | None
    groups: list[CardGroup]


class CardFairness(_Card):
    differentials: list[CardDifferential]


class CardRate(_Card):
    stated_fmr: float
    measured_fmr: float | None
    measurable: bool


class CardCalibrationCheck(_Card):
    same_data_as_calibration: bool
    rates: list[CardRate]


class ModelCard(_Card):
    """What ``models show`` prints of a pack's latest report, read from its JSON figures."""

    created: str
    model: CardModel
    data: CardData
    verification: CardVerification
    identification: CardIdentification | CardSkipped
    clustering: CardClustering
    fairness: CardFairness
    calibration_check: CardCalibrationCheck


@dataclass(frozen=True, slots=True)
class StoredCard:
    """A pack's model card: the JSON figures as stored, and the card read from them."""

    figures: dict[str, object]
    card: ModelCard


def read_model_card(cache_dir: Path | None, pack: str) -> StoredCard:
    """The latest stored figures of a pack, checked to be a model card.

    Raises:
        NotFound: no report has been made for this pack.
        StoreError: the stored card is unreadable or not a model card.
    """
    path = _card_path(cache_dir, pack)
    if not path.is_file():
        raise NotFound(
            f"no evaluation stored for model pack {pack!r} in {path.parent}; "
            "run `faceledger eval report DIR --out report.html` first"
        )
    try:
        figures = json.loads(path.read_text(encoding="utf-8"))
        return StoredCard(figures, ModelCard.model_validate(figures))
    except (OSError, ValueError) as exc:  # ValidationError and JSONDecodeError are ValueErrors
        reason = str(exc)
        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"])) or "the whole file"
            reason = f"{exc.error_count()} field(s) wrong, first {where}: {first['msg']}"
        raise StoreError(
            f"the model card {path} is not readable as a model card ({reason}); "
            "make it again with `faceledger eval report DIR --card`"
        ) from exc


def speech_summary(info: SpeechModelInfo) -> dict[str, Any]:
    """A speech model as a `faceledger models` entry (kind ``speech``)."""
    missing = [s for s in info.source if s.endswith("(not installed)")]
    return {
        "name": info.name,
        "kind": "speech",
        "description": info.description,
        "license": info.license,
        "source": list(info.source),
        "files": [{"role": "asr", "file": "model.bin", "sha256": info.sha256}],
        "available": not missing,
        **({"reason": f"missing {', '.join(missing)}"} if missing else {}),
    }


@models_app.callback(invoke_without_command=True)
@fail_cleanly
def models(
    ctx: typer.Context,
    asr_model: Annotated[
        Path | None,
        typer.Option("--asr-model", help="Also list this CTranslate2 Whisper directory."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """List the model packs with licence, embedding size, file hashes and thresholds,
    and the speech recognition models with licence, source and hash."""
    if ctx.invoked_subcommand is not None:
        return
    packs = []
    for name in BUILTIN_PACKS:
        try:
            packs.append({**load_pack(name).summary(), "available": True})
        except Exception as exc:  # an optional pack whose extra is not installed
            packs.append({"name": name, "available": False, "reason": str(exc)})
    packs.append(speech_summary(default_model_info()))
    if asr_model is not None:
        packs.append(speech_summary(directory_model_info(asr_model)))
    if json_out:
        emit(packs)
        return
    for p in packs:
        if not p["available"]:
            typer.echo(f"{p['name']}: not available ({p['reason']})")
            continue
        if p["kind"] == "speech":
            typer.echo(f"{p['name']} (speech): {p['description']}")
            typer.echo(f"  licence: {p['license']}")
            typer.echo(f"  source: {', '.join(p['source'])}")
            typer.echo(f"  asr: model.bin sha256 {p['files'][0]['sha256']}")
            continue
        typer.echo(f"{p['name']} ({p['model_id']}): {p['description']}")
        typer.echo(f"  licence: {p['license']}")
        typer.echo(
            f"  embedding: {p['embedding_dim']}-d; "
            f"threshold at FMR 1e-4: {p['threshold_at_fmr_1e-4']}"
        )
        for f in p["files"]:
            typer.echo(f"  {f['role']}: {f['file']} sha256 {f['sha256']}")
        if population := p.get("calibration_population"):
            typer.echo(f"  calibrated on: {population['covered']}")
            typer.echo(f"  not calibrated on: {population['not_covered']}")


def _rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2e}" if 0 < x < 1e-3 else f"{x:.4f}"


def _card_lines(card: ModelCard) -> list[str]:
    m, data, v = card.model, card.data, card.verification
    lines = [
        f"Model card: {m.pack} ({m.model_id})",
        f"  {m.description}",
        f"  licence: {m.license}",
        f"  thresholds calibrated on: {m.calibration_source}: "
        + ", ".join(
            f"{p.threshold:.4f} for FMR {p.target_fmr:.0e}"
            for p in v.at_stated_fmr
            if p.target_fmr in (1e-3, 1e-4)
        ),
        f"Latest evaluation: {card.created} on {', '.join(data.datasets)}",
        f"  data: {data.embedded_images:,} images with a face of {data.identities} "
        f"identities ({data.images_without_face:,} without a face)",
        f"  verification: EER {_rate(v.eer)}, AUC {_rate(v.auc)}; "
        + ", ".join(f"TAR {_rate(p.tar)} at FMR {p.target_fmr:.0e}" for p in v.tar_at_fmr),
    ]
    ident = card.identification
    if isinstance(ident, CardIdentification):
        lines.append(
            f"  identification ({ident.enrolled_persons} enrolled): rank-1 "
            f"{_rate(ident.rank1)}; "
            + ", ".join(f"FNIR {_rate(p.fnir)} at FPIR {p.target:.0e}" for p in ident.fnir_at_fpir)
        )
    c = card.clustering
    lines.append(
        f"  clustering at FMR {c.max_fmr:.0e}: BCubed F1 {_rate(c.bcubed_f1)}, "
        f"pairwise F1 {_rate(c.pairwise_f1)}"
    )
    for d in card.fairness.differentials:
        groups = "; ".join(
            f"{g.group} FMR {_rate(g.fmr)} FNMR {_rate(g.fnmr)}"
            + (
                f" (own threshold for the stated rate {g.group_threshold:.4f})"
                if g.group_threshold is not None
                else ""
            )
            + (" FLAGGED" if g.flagged else "")
            for g in d.groups
        )
        lines.append(
            f"  {d.column} at stated FMR {d.stated_fmr:.0e}: {groups} "
            f"(worst/best FMR {_rate(d.fmr_ratio_worst_to_best)})"
        )
    uneven = [d.fmr_ratio_worst_to_best or 0.0 for d in card.fairness.differentials]
    if uneven and max(uneven) > UNEVEN:
        lines.append(
            "  to even false match rates out without labels: measure `faceledger eval "
            "calibrate TREE --fair --labels FILE`, save with `--fair --write`, and move a "
            "collection to it (`faceledger collection calibration C ID`)"
        )
    check = card.calibration_check
    same = " (the data it was built from)" if check.same_data_as_calibration else ""
    lines.append(
        f"  calibration check{same}: "
        + ", ".join(
            f"stated {r.stated_fmr:.0e} measured {_rate(r.measured_fmr)}"
            for r in check.rates
            if r.stated_fmr <= 1e-2 and r.measurable
        )
    )
    return lines


@models_app.command("show")
@fail_cleanly
def show(
    pack: Annotated[str, typer.Argument(help="Model pack name.")] = "default",
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Cache folder (default .cache).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """The pack's model card: licence, thresholds and its latest measured figures."""
    stored = read_model_card(cache_dir, pack)
    if json_out:
        emit(stored.figures)
        return
    for line in _card_lines(stored.card):
        typer.echo(line)
    population = load_pack(pack).population
    if population is not None:
        typer.echo(f"Calibration {population.calibration_id} covers: {population.covered}")
        typer.echo(f"  and does not cover: {population.not_covered}")
