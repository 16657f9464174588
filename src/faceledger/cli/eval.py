"""``faceledger eval``: verification protocols and calibration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from faceledger.cli.common import emit, fail_cleanly, progress_bar
from faceledger.engine import Engine
from faceledger.eval.calibrate import calibrate_tree, pack_json_for, write_calibration
from faceledger.eval.pairs import evaluate_pairs, read_csv_pairs, read_lfw_pairs

eval_app = typer.Typer(help="Measure accuracy on labelled data.", no_args_is_help=True)


@eval_app.command("lfw")
@fail_cleanly
def lfw(
    root: Annotated[Path, typer.Option(help="LFW folder with images/ and meta/pairs.txt.")],
    folds: Annotated[int | None, typer.Option(help="Use only the first N of the 10 folds.")] = None,
    model: Annotated[str, typer.Option(help="Model pack.")] = "default",
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """LFW View 2: 10-fold accuracy, each fold at the threshold chosen on the others."""
    engine = Engine(model)
    with progress_bar("embedding LFW images") as progress:
        result = evaluate_pairs(engine, read_lfw_pairs(root, folds=folds), progress=progress)
    _show(result, json_out)


@eval_app.command("pairs")
@fail_cleanly
def pairs(
    file: Annotated[Path, typer.Argument(help="CSV with file_x, file_y, same.")],
    folds: Annotated[int, typer.Option(help="Folds for threshold selection.")] = 10,
    model: Annotated[str, typer.Option(help="Model pack.")] = "default",
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Verification accuracy on a CSV pair list, with the LFW protocol's k-fold thresholds."""
    engine = Engine(model)
    with progress_bar("embedding images") as progress:
        result = evaluate_pairs(engine, read_csv_pairs(file, folds=folds), progress=progress)
    _show(result, json_out)


@eval_app.command("calibrate")
@fail_cleanly
def calibrate(
    tree: Annotated[Path, typer.Argument(help="Folder of <person>/<images>.")],
    model: Annotated[str, typer.Option(help="Model pack to calibrate.")] = "default",
    aligned: Annotated[bool, typer.Option(help="Images are aligned 112x112 crops.")] = False,
    write: Annotated[bool, typer.Option(help="Store the table with the pack.")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Build a pack's threshold vs false match rate table from all cross-identity pairs."""
    engine = Engine(model)
    with progress_bar("embedding") as progress:
        cal = calibrate_tree(engine, tree, aligned=aligned, progress=progress)
    if write:
        write_calibration(pack_json_for(engine), cal)
    _show(cal.to_dict(), json_out)


def _show(result: dict[str, object], json_out: bool) -> None:
    if json_out:
        emit(result)
    else:
        for key, value in result.items():
            typer.echo(f"{key}: {value}")
