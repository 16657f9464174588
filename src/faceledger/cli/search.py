"""CLI searches of a collection: identify, similar, verify (batch over images), and group.

``identify`` and ``verify`` take many images or folders: one model load, a progress bar
on stderr, and one JSON document ``{"results": [...], "failed": n}`` in which an image
that could not be searched carries an ``error``. One image gives its own result object.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

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
    to_jsonable,
)
from faceledger.cli.context import local_actor, open_service
from faceledger.errors import FaceledgerError, NoFace

if TYPE_CHECKING:
    from faceledger.search.operations import SimilarMode

PurposeOpt = Annotated[
    str | None, typer.Option(help="Why this search is made (recorded in the audit ledger).")
]
CaseOpt = Annotated[
    str | None, typer.Option("--case", help="Case reference (recorded in the ledger).")
]
AlignedOpt = Annotated[bool, typer.Option(help="Images are aligned 112x112 face crops.")]
MaxFmrOpt = Annotated[
    float, typer.Option("--max-fmr", help="Largest false match rate of a candidate.")
]
ImagesArg = Annotated[
    list[Path], typer.Argument(help="Image files, or folders searched for images.")
]


def _batch(
    label: str,
    images: list[Path],
    search: Callable[[Path], dict[str, Any]],
    *,
    json_out: bool,
    show: Callable[[dict[str, Any]], None],
) -> None:
    """Run ``search`` over the images; print, then exit with the failures' code.

    A single image's error is raised as it is (one red line); in a batch each image's
    error is reported in its result and the run goes on.
    """
    paths, batch = expand_images(images)
    results: list[dict[str, Any]] = []
    failed: list[ExitCode] = []
    with progress_bar(label, enabled=len(paths) > 1) as progress:
        for i, path in enumerate(paths):
            try:
                results.append({"image": str(path), **search(path)})
            except FaceledgerError as exc:
                if not batch:
                    raise
                failed.append(exit_code_of(exc))
                results.append({"image": str(path), "error": exc.to_dict()})
            progress(i + 1, len(paths))
    if json_out:
        emit({"results": results, "failed": len(failed)} if batch else results[0])
    else:
        for r in results:
            if "error" in r:
                typer.echo(f"{r['image']}: error ({r['error']['code']}) {r['error']['message']}")
            else:
                show(r)
    if failed:
        raise typer.Exit(int(combined_exit(failed)))


@fail_cleanly
def identify(
    collection: str,
    images: ImagesArg,
    top: Annotated[int, typer.Option(help="Candidates per face.")] = 5,
    max_fmr: Annotated[
        float | None,
        typer.Option(
            help="Largest per-person false match rate of a candidate [default: 1e-4, or "
            "derived from --max-fpir alone]."
        ),
    ] = None,
    max_fpir: Annotated[
        float | None,
        typer.Option(
            help="Largest expected false positive identification rate of the whole "
            "collection: the per-person rate is derived from it and the number of persons."
        ),
    ] = None,
    purpose: PurposeOpt = None,
    case: CaseOpt = None,
    aligned: AlignedOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Ranked candidate persons for every face in each image (for human review), with the
    collection's expected false positive identification rate (FPIR).

    An image without a face is an error (exit 3): nothing could be searched.
    """
    with open_service() as svc:
        actor = local_actor()

        def search(path: Path) -> dict[str, Any]:
            found = svc.identify(
                collection,
                str(path),
                top=top,
                max_fmr=max_fmr if max_fmr is not None or max_fpir is not None else 1e-4,
                max_fpir=max_fpir,
                purpose=purpose,
                case_ref=case,
                aligned=aligned,
                actor=actor,
            )
            if not found:
                raise NoFace(
                    f"no face found in {path}: give a photo with a visible face "
                    "(or --aligned for a 112x112 face crop)"
                )
            return {
                "faces": [{**face_json(r.face), "candidates": r.candidates} for r in found],
                "gallery": found[0].gallery,
            }

        _batch("identifying", images, search, json_out=json_out, show=_show_identified)


def _show_identified(result: dict[str, Any]) -> None:
    rates = result.get("gallery")
    if rates is not None:
        typer.echo(
            f"{result['image']}: {rates.persons} persons searched at per-person FMR "
            f"{rates.max_fmr:.2g}: expected FPIR {rates.fpir:.2g} (a stranger's chance of "
            "any candidate)"
        )
    for i, face in enumerate(result["faces"]):
        names = (
            ", ".join(
                f"{c.person} ({c.similarity:.3f}, FMR {c.fmr:.1g})" for c in face["candidates"]
            )
            or "no candidate"
        )
        typer.echo(f"{result['image']} face {i} {face['box']}: {names}")


@fail_cleanly
def verify(
    collection: str,
    images: ImagesArg,
    person: Annotated[str, typer.Option(help="The enrolled person to verify against.")],
    max_fmr: MaxFmrOpt = 1e-4,
    purpose: PurposeOpt = None,
    case: CaseOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Compare each image's largest face with all faces of one person."""
    with open_service() as svc:
        actor = local_actor()

        def search(path: Path) -> dict[str, Any]:
            match = svc.verify(
                collection,
                str(path),
                person,
                max_fmr=max_fmr,
                purpose=purpose,
                case_ref=case,
                actor=actor,
            )
            found: dict[str, Any] = to_jsonable(match)
            return found

        def show(r: dict[str, Any]) -> None:
            typer.echo(
                f"{r['image']}: {person} similarity {r['similarity']:.4f}, threshold "
                f"{r['threshold']:.4f}, same_person={r['same_person']}"
            )

        _batch("verifying", images, search, json_out=json_out, show=show)


@fail_cleanly
def similar(
    collection: str,
    image: Path,
    mode: Annotated[
        str, typer.Option(help="matchPerson (within --max-fmr) or matchFace (top faces).")
    ] = "matchPerson",
    top: Annotated[int, typer.Option(help="Faces to return.")] = 20,
    max_fmr: MaxFmrOpt = 1e-4,
    purpose: PurposeOpt = None,
    case: CaseOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Faces most like the image's largest face (Find Similar)."""
    with open_service() as svc:
        result = svc.similar(
            collection,
            str(image),
            mode=_similar_mode(mode),
            top=top,
            max_fmr=max_fmr,
            purpose=purpose,
            case_ref=case,
            actor=local_actor(),
        )
    if json_out:
        emit({"image": str(image), "face": face_json(result.face), "similar": result.candidates})
    else:
        for c in result.candidates:
            typer.echo(f"face {c.face_id} ({c.person}): {c.similarity:.3f}, FMR {c.fmr:.1g}")


def _similar_mode(mode: str) -> SimilarMode:
    from faceledger.errors import InvalidArgument

    if mode == "matchPerson":
        return "matchPerson"
    if mode == "matchFace":
        return "matchFace"
    raise InvalidArgument(f"--mode must be matchPerson or matchFace, not {mode!r}")


@fail_cleanly
def group(
    images: Annotated[
        list[Path] | None, typer.Argument(help="Images (or folders) whose faces to group.")
    ] = None,
    collection: Annotated[
        str | None, typer.Option(help="Group the faces stored in a collection.")
    ] = None,
    max_fmr: MaxFmrOpt = 1e-3,
    purpose: PurposeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Cluster unknown faces into people plus a messy group of singletons."""
    paths, _ = expand_images(images or [])
    with open_service() as svc, progress_bar("grouping") as progress:
        result = svc.group(
            [str(p) for p in paths],
            collection=collection,
            max_fmr=max_fmr,
            purpose=purpose,
            actor=local_actor(),
            progress=progress,
        )
    if json_out:
        emit(result)
    else:
        for i, g in enumerate(result.groups):
            typer.echo(
                f"group {i}: " + ", ".join(f"{f.image or f.face_id}#{f.face_index}" for f in g)
            )
        typer.echo(f"messy group: {len(result.messy_group)} face(s)")
