"""CLI commands of the face database: collections, enrolment, search, erasure."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, cast

import typer

from faceledger.cli.common import emit, face_json, fail_cleanly, progress_bar
from faceledger.cli.context import open_service
from faceledger.results import FaceResult
from faceledger.search.operations import SimilarMode
from faceledger.service import local_actor

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
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

collection_app = typer.Typer(help="Create, list and delete collections.", no_args_is_help=True)
person_app = typer.Typer(help="Persons of a collection.", no_args_is_help=True)
face_app = typer.Typer(help="Faces of a collection.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Attach the database commands to the main app."""
    app.add_typer(collection_app, name="collection")
    app.add_typer(person_app, name="person")
    app.add_typer(face_app, name="face")
    for fn in (enroll, enroll_folder, identify, similar, verify, group):
        app.command(name=fn.__name__.replace("_", "-"))(fn)


@collection_app.command("create")
@fail_cleanly
def collection_create(
    name: str,
    model: Annotated[
        str, typer.Option(help="Model pack, bound to the collection for life.")
    ] = "default",
    require_consent: Annotated[
        bool, typer.Option(help="Every person needs a consent reference.")
    ] = True,
    json_out: JsonOpt = False,
) -> None:
    """Create a collection bound to one model pack."""
    with open_service() as svc:
        col = svc.create_collection(
            name, model=model, require_consent=require_consent, actor=local_actor()
        )
    emit(col) if json_out else typer.echo(f"created collection {col.name} ({col.model_id})")


@collection_app.command("list")
@fail_cleanly
def collection_list(json_out: JsonOpt = False) -> None:
    """List collections."""
    with open_service() as svc:
        cols = svc.store.list_collections()
    if json_out:
        emit(cols)
    else:
        for c in cols:
            typer.echo(f"{c.name}\t{c.model_id}")


@collection_app.command("delete")
@fail_cleanly
def collection_delete(name: str) -> None:
    """Erase a collection: every person, face and vector in it."""
    with open_service() as svc:
        svc.delete_collection(name, actor=local_actor())
    typer.echo(f"deleted collection {name}")


@person_app.command("delete")
@fail_cleanly
def person_delete(collection: str, person: str, json_out: JsonOpt = False) -> None:
    """Erase a person now: database rows, embeddings and index entries."""
    with open_service() as svc:
        n = svc.delete_person(collection, person, actor=local_actor())
    emit({"person": person, "faces_erased": n}) if json_out else typer.echo(
        f"erased {person} ({n} faces)"
    )


@person_app.command("list")
@fail_cleanly
def person_list(
    collection: str,
    offset: Annotated[int, typer.Option(help="Skip this many persons.")] = 0,
    limit: Annotated[int, typer.Option(help="Page size.")] = 100,
    json_out: JsonOpt = False,
) -> None:
    """List persons with their face counts, a page at a time."""
    with open_service() as svc:
        people = svc.store.list_persons(collection, offset=offset, limit=limit)
    if json_out:
        emit(people)
    else:
        for p in people:
            typer.echo(f"{p.name}\t{p.face_count} faces")


@face_app.command("delete")
@fail_cleanly
def face_delete(collection: str, face_id: int) -> None:
    """Erase one face."""
    with open_service() as svc:
        svc.delete_face(collection, face_id, actor=local_actor())
    typer.echo(f"erased face {face_id}")


@fail_cleanly
def enroll(
    collection: str,
    person: str,
    images: Annotated[list[Path], typer.Argument(help="Images of the person.")],
    consent: Annotated[str | None, typer.Option(help="Consent reference for this person.")] = None,
    face_index: Annotated[
        int | None, typer.Option(help="Which face to enrol when several are found.")
    ] = None,
    largest: Annotated[
        bool, typer.Option(help="Enrol the largest face when several are found.")
    ] = False,
    allow_low_quality: Annotated[bool, typer.Option(help="Accept faces graded low.")] = False,
    aligned: AlignedOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Enrol one face per image for a person (created if new)."""
    with open_service() as svc:
        results = svc.enroll(
            collection,
            person,
            [str(p) for p in images],
            consent=consent,
            face_index=face_index,
            largest=largest,
            allow_low_quality=allow_low_quality,
            aligned=aligned,
            actor=local_actor(),
        )
    if json_out:
        emit({"person": person, "results": results})
    else:
        for r in results:
            typer.echo(
                f"{r.source}: "
                + (f"face {r.face_id}" if r.face_id else f"refused ({r.refused}: {r.reason})")
            )


@fail_cleanly
def enroll_folder(
    collection: str,
    tree: Annotated[Path, typer.Argument(help="Folder of <person>/<images>.")],
    consent: Annotated[str | None, typer.Option(help="Consent reference for every person.")] = None,
    largest: Annotated[
        bool, typer.Option(help="Enrol the largest face when several are found.")
    ] = False,
    allow_low_quality: Annotated[bool, typer.Option(help="Accept faces graded low.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Bulk-enrol a folder tree with a progress bar and a summary of refusals."""
    with open_service() as svc, progress_bar("enrolling") as progress:
        summary = svc.enroll_folder(
            collection,
            tree,
            consent=consent,
            largest=largest,
            allow_low_quality=allow_low_quality,
            progress=progress,
            actor=local_actor(),
        )
    if json_out:
        emit({"summary": summary.counts, "enrolled": summary.enrolled, "refused": summary.refused})
    else:
        typer.echo(", ".join(f"{k}: {v}" for k, v in summary.counts.items()))
        for r in summary.refused:
            typer.echo(f"  refused {r.source}: {r.refused} ({r.reason})")


def _faces_json(results: list[FaceResult]) -> list[dict[str, Any]]:
    return [{**face_json(r.face), "candidates": r.candidates} for r in results]


@fail_cleanly
def identify(
    collection: str,
    image: Path,
    top: Annotated[int, typer.Option(help="Candidates per face.")] = 5,
    max_fmr: MaxFmrOpt = 1e-4,
    purpose: PurposeOpt = None,
    case: CaseOpt = None,
    aligned: AlignedOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Ranked candidate persons for every face in the image (for human review)."""
    with open_service() as svc:
        results = svc.identify(
            collection,
            str(image),
            top=top,
            max_fmr=max_fmr,
            purpose=purpose,
            case_ref=case,
            aligned=aligned,
            actor=local_actor(),
        )
    if json_out:
        emit({"image": str(image), "faces": _faces_json(results)})
    else:
        for i, r in enumerate(results):
            names = (
                ", ".join(f"{c.person} ({c.similarity:.3f}, FMR {c.fmr:.1g})" for c in r.candidates)
                or "no candidate"
            )
            typer.echo(f"face {i} {r.face.box.as_list()}: {names}")


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
            mode=cast(SimilarMode, mode),  # checked by the service
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


@fail_cleanly
def verify(
    collection: str,
    image: Path,
    person: Annotated[str, typer.Option(help="The enrolled person to verify against.")],
    max_fmr: MaxFmrOpt = 1e-4,
    purpose: PurposeOpt = None,
    case: CaseOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Compare the image's largest face with all faces of one person."""
    with open_service() as svc:
        match = svc.verify(
            collection,
            str(image),
            person,
            max_fmr=max_fmr,
            purpose=purpose,
            case_ref=case,
            actor=local_actor(),
        )
    emit(match) if json_out else typer.echo(
        f"{person}: similarity {match.similarity:.4f}, threshold {match.threshold:.4f}, "
        f"same_person={match.same_person}"
    )


@fail_cleanly
def group(
    images: Annotated[
        list[Path] | None, typer.Argument(help="Images whose faces to group.")
    ] = None,
    collection: Annotated[
        str | None, typer.Option(help="Group the faces stored in a collection.")
    ] = None,
    max_fmr: MaxFmrOpt = 1e-3,
    json_out: JsonOpt = False,
) -> None:
    """Cluster unknown faces into people plus a messy group of singletons."""
    with open_service() as svc, progress_bar("grouping") as progress:
        result = svc.group(
            [str(p) for p in images or []],
            collection=collection,
            max_fmr=max_fmr,
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
