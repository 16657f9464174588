"""The ``faceledger`` command: engine commands, model packs and evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from faceledger.cli.audit import audit_app
from faceledger.cli.common import (
    ExitCode,
    JsonOpt,
    combined_exit,
    emit,
    exit_code_of,
    expand_images,
    face_json,
    fail_cleanly,
    progress_bar,
)
from faceledger.cli.context import set_data_dir, set_database_url
from faceledger.cli.db import register as register_db_commands
from faceledger.cli.eval import eval_app
from faceledger.cli.media import media_app
from faceledger.cli.models import models_app
from faceledger.cli.serve import serve
from faceledger.cli.speech import speech_app
from faceledger.cli.video import video_app
from faceledger.errors import FaceledgerError, NoFace

GLOBAL_OPTIONS = ("--data", "--db")
"""Options of the whole program (each taking one value), accepted anywhere on the line."""


def hoist_global_options(args: list[str]) -> list[str]:
    """``args`` with every global option (and its value) moved before the subcommand.

    ``faceledger collection create X --data D`` then means ``faceledger --data D
    collection create X``. Nothing after a ``--`` separator is moved.
    """
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            rest += args[i:]
            break
        if word in GLOBAL_OPTIONS and i + 1 < len(args):
            front += args[i : i + 2]
            i += 2
            continue
        if word.split("=", 1)[0] in GLOBAL_OPTIONS and "=" in word:
            front.append(word)
        else:
            rest.append(word)
        i += 1
    return front + rest


class GlobalOptionsAnywhere(TyperGroup):
    """The root command group: parses global options wherever they stand on the line."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(args))


app = typer.Typer(
    cls=GlobalOptionsAnywhere,
    help="faceledger: self-hosted, accountable face recognition.",
    no_args_is_help=True,
)
app.add_typer(eval_app, name="eval")
app.add_typer(models_app, name="models")
app.add_typer(video_app, name="video")
app.add_typer(audit_app, name="audit")
app.add_typer(speech_app, name="speech")
app.add_typer(media_app, name="media")
register_db_commands(app)
app.command()(serve)


@app.callback()
def main(
    data: Annotated[
        Path | None,
        typer.Option("--data", envvar="FACELEDGER_DATA", help="Data directory (default ./var)."),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar="FACELEDGER_DB_URL",
            help="Database URL (default SQLite in the data directory), e.g. "
            "postgresql+psycopg://user:password@host/faceledger for many replicas.",
        ),
    ] = None,
) -> None:
    """faceledger: self-hosted, accountable face recognition."""
    set_data_dir(data)
    set_database_url(db)


PackOpt = Annotated[str, typer.Option("--model", help="Model pack: default, dlib, or dir:PATH.")]


@app.command()
@fail_cleanly
def detect(
    images: Annotated[
        list[Path], typer.Argument(help="Image files, or folders searched for images.")
    ],
    model: PackOpt = "default",
    min_face_size: Annotated[float, typer.Option(help="Ignore smaller faces (pixels).")] = 10.0,
    json_out: JsonOpt = False,
) -> None:
    """Find faces: boxes, 5 landmarks, detector score and quality for each image.

    Several images (or a folder) give one JSON document ``{"results": [...], "failed": n}``
    in which an unreadable image carries an ``error`` instead of ``faces``.
    """
    from faceledger.engine import Engine

    paths, batch = expand_images(images)
    engine = Engine(model, min_face_size=min_face_size)

    def faces_of(path: Path) -> list[dict[str, Any]] | FaceledgerError:
        try:
            return [face_json(f) for f in engine.detect(path)]
        except FaceledgerError as exc:
            if not batch:
                raise
            return exc

    results: list[dict[str, Any]] = []
    failed: list[ExitCode] = []
    with progress_bar("detecting", enabled=len(paths) > 1) as progress:
        for i, (path, found) in enumerate(zip(paths, engine.map(faces_of, paths), strict=True)):
            if isinstance(found, FaceledgerError):
                failed.append(exit_code_of(found))
                results.append({"image": str(path), "error": found.to_dict()})
            else:
                results.append({"image": str(path), "faces": found})
            progress(i + 1, len(paths))
    engine.close()
    if json_out:
        emit({"results": results, "failed": len(failed)} if batch else results[0])
    else:
        for r in results:
            if "error" in r:
                typer.echo(f"{r['image']}: error ({r['error']['code']}) {r['error']['message']}")
            else:
                grades = ", ".join(f["quality"]["grade"] for f in r["faces"])
                typer.echo(f"{r['image']}: {len(r['faces'])} face(s) {grades}")
    if failed:
        raise typer.Exit(int(combined_exit(failed)))


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
    from faceledger.engine import Engine

    try:
        result = Engine(model).compare(a, b, max_fmr=max_fmr)
    except NoFace as exc:
        which = a if exc.detail.get("image") == "first" else b
        raise NoFace(f"no face found in {which}: give a photo with a visible face") from None
    if json_out:
        emit(result)
    else:
        verdict = "passes" if result.same_person else "does not pass"
        typer.echo(
            f"similarity {result.similarity:.4f} {verdict} the threshold {result.threshold:.4f} "
            f"for a false match rate of {max_fmr:g} (estimated FMR at this score {result.fmr:.2g})"
        )
