"""The ``faceledger`` command: engine commands, model packs and evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from faceledger.cli.audit import audit_app
from faceledger.cli.common import emit, face_json, fail_cleanly, progress_bar
from faceledger.cli.context import set_data_dir
from faceledger.cli.db import register as register_db_commands
from faceledger.cli.eval import eval_app
from faceledger.cli.models import models_app
from faceledger.cli.serve import serve
from faceledger.cli.speech import speech_app
from faceledger.cli.video import video_app
from faceledger.engine import Engine

app = typer.Typer(
    help="faceledger: self-hosted, accountable face recognition.", no_args_is_help=True
)
app.add_typer(eval_app, name="eval")
app.add_typer(models_app, name="models")
app.add_typer(video_app, name="video")
app.add_typer(audit_app, name="audit")
app.add_typer(speech_app, name="speech")
register_db_commands(app)
app.command()(serve)


@app.callback()
def main(
    data: Annotated[
        Path | None,
        typer.Option("--data", envvar="FACELEDGER_DATA", help="Data directory (default ./var)."),
    ] = None,
) -> None:
    """faceledger: self-hosted, accountable face recognition."""
    set_data_dir(data)


PackOpt = Annotated[str, typer.Option("--model", help="Model pack: default, dlib, or dir:PATH.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@app.command()
@fail_cleanly
def detect(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    model: PackOpt = "default",
    min_face_size: Annotated[float, typer.Option(help="Ignore smaller faces (pixels).")] = 10.0,
    json_out: JsonOpt = False,
) -> None:
    """Find faces: boxes, 5 landmarks, detector score and quality for each image."""
    engine = Engine(model, min_face_size=min_face_size)
    results: list[dict[str, Any]] = []
    with progress_bar("detecting", enabled=len(images) > 1) as progress:
        for i, (path, faces) in enumerate(
            zip(images, engine.map(engine.detect, images), strict=True)
        ):
            results.append({"image": str(path), "faces": [face_json(f) for f in faces]})
            progress(i + 1, len(images))
    if json_out:
        emit(results if len(results) > 1 else results[0])
    else:
        for r in results:
            grades = ", ".join(f["quality"]["grade"] for f in r["faces"])
            typer.echo(f"{r['image']}: {len(r['faces'])} face(s) {grades}")


@app.command()
@fail_cleanly
def compare(
    a: Annotated[Path, typer.Argument(help="First image (its largest face is used).")],
    b: Annotated[Path, typer.Argument(help="Second image (its largest face is used).")],
    max_fmr: Annotated[float, typer.Option(help="Stated false match rate of the decision.")] = 1e-4,
    model: PackOpt = "default",
    json_out: JsonOpt = False,
) -> None:
    """Compare two faces: similarity, the threshold for the stated false match rate, decision."""
    result = Engine(model).compare(a, b, max_fmr=max_fmr)
    if json_out:
        emit(result)
    else:
        verdict = "passes" if result.same_person else "does not pass"
        typer.echo(
            f"similarity {result.similarity:.4f} {verdict} the threshold {result.threshold:.4f} "
            f"for a false match rate of {max_fmr:g} (estimated FMR at this score {result.fmr:.2g})"
        )
