"""CLI commands of the face database: collections, persons, faces and enrolment.

Searches are in :mod:`faceledger.cli.search`. Erasing commands ask first on a terminal
and need ``--yes`` elsewhere. Enrolment skips an image already enrolled for the person
(same SHA-256) and says so, unless ``--allow-duplicates``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from faceledger.cli import search
from faceledger.cli.common import (
    JsonOpt,
    YesOpt,
    combined_exit,
    confirm_destructive,
    emit,
    exit_code_for,
    fail_cleanly,
    progress_bar,
)
from faceledger.cli.context import local_actor, open_service
from faceledger.errors import InvalidArgument

if TYPE_CHECKING:
    from faceledger.results import EnrolledImage

DUPLICATE = "duplicate"
"""The refusal code of an image already enrolled for the person: skipped, not a failure."""
AllowDuplicatesOpt = Annotated[
    bool,
    typer.Option(help="Enrol images already enrolled for the person (same SHA-256) again."),
]

collection_app = typer.Typer(help="Create, list and delete collections.", no_args_is_help=True)
person_app = typer.Typer(help="Persons of a collection.", no_args_is_help=True)
face_app = typer.Typer(help="Faces of a collection.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Attach the database commands to the main app."""
    app.add_typer(collection_app, name="collection")
    app.add_typer(person_app, name="person")
    app.add_typer(face_app, name="face")
    for fn in (enroll, enroll_folder, search.identify, search.similar, search.verify):
        app.command(name=fn.__name__.replace("_", "-"))(fn)
    app.command(name="group")(search.group)


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


@collection_app.command("calibration")
@fail_cleanly
def collection_calibration(
    name: str,
    calibration_id: Annotated[
        str | None,
        typer.Argument(help="A calibration id (cal-...); omit to show the one in use."),
    ] = None,
    shipped: Annotated[
        bool, typer.Option("--shipped", help="Go back to the pack's shipped calibration.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Show or change the calibration a collection's searches use (changes are audited).

    New versions come from `faceledger eval calibrate TREE --write` (DATA/calibrations).
    """
    with open_service() as svc:
        if calibration_id is None and not shipped:
            cal = svc.calibration(name)
            emit({"collection": name, "calibration_id": cal.calibration_id}) if json_out else (
                typer.echo(f"{name}\t{cal.calibration_id}\t{cal.source}")
            )
            return
        if calibration_id is not None and shipped:
            raise InvalidArgument("give a calibration id or --shipped, not both")
        col = svc.use_calibration(name, calibration_id, actor=local_actor())
        used = svc.calibration(name).calibration_id
    emit(col) if json_out else typer.echo(f"collection {name} now uses calibration {used}")


@collection_app.command("delete")
@fail_cleanly
def collection_delete(name: str, yes: YesOpt = False, json_out: JsonOpt = False) -> None:
    """Erase a collection: every person, face and vector in it, and its index files."""
    with open_service() as svc:
        svc.store.get_collection(name)  # not found before asking
        confirm_destructive(f"erase collection {name!r} with all its persons and faces", yes=yes)
        svc.delete_collection(name, actor=local_actor())
    emit({"collection": name, "deleted": True}) if json_out else typer.echo(
        f"deleted collection {name}"
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


@person_app.command("delete")
@fail_cleanly
def person_delete(
    collection: str, person: str, yes: YesOpt = False, json_out: JsonOpt = False
) -> None:
    """Erase a person now: database rows, embeddings and index entries."""
    with open_service() as svc:
        found = svc.store.get_person(collection, person)
        confirm_destructive(
            f"erase {person!r} and their {found.face_count} face(s) from {collection!r}", yes=yes
        )
        n = svc.delete_person(collection, person, actor=local_actor())
    emit({"person": person, "faces_erased": n}) if json_out else typer.echo(
        f"erased {person} ({n} faces)"
    )


@person_app.command("export")
@fail_cleanly
def person_export(
    collection: str,
    person: str,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the export here (default: stdout).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Everything stored about a person as JSON (subject access): record, consent, retention,
    faces with their embeddings, and the ledger entries about them with inclusion proofs.
    With --out the file gets the export and the terminal a summary (--json: as JSON)."""
    with open_service() as svc:
        document = svc.export_person(collection, person, actor=local_actor()).as_document()
        if out is not None:  # written under the data folder's umask: the owner's only
            out.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    if out is None:
        emit(document)
        return
    summary = {
        "person": person,
        "faces": len(document["faces"]),
        "ledger_entries": len(document["ledger"]),
        "out": str(out),
    }
    emit(summary) if json_out else typer.echo(
        f"exported {person}: {summary['faces']} faces, {summary['ledger_entries']} ledger"
        f" entries, to {out}"
    )


@person_app.command("rename")
@fail_cleanly
def person_rename(collection: str, old: str, new: str, json_out: JsonOpt = False) -> None:
    """Rename a person (their faces and ledger history stay theirs)."""
    with open_service() as svc:
        person = svc.update_person(collection, old, new_name=new, actor=local_actor())
    emit(person) if json_out else typer.echo(f"renamed {old} to {person.name}")


@person_app.command("merge")
@fail_cleanly
def person_merge(collection: str, source: str, into: str, json_out: JsonOpt = False) -> None:
    """Move every face of SOURCE to INTO and remove SOURCE (one audited change)."""
    with open_service() as svc:
        person = svc.merge_persons(collection, source, into, actor=local_actor())
    emit(person) if json_out else typer.echo(
        f"merged {source} into {person.name} ({person.face_count} faces)"
    )


@face_app.command("move")
@fail_cleanly
def face_move(
    collection: str,
    face_ids: Annotated[list[int], typer.Argument(help="Ids of the faces to move.")],
    to: Annotated[str, typer.Option("--to", help="The person who receives the faces.")],
    json_out: JsonOpt = False,
) -> None:
    """Move faces to another person (to split a wrongly merged person)."""
    with open_service() as svc:
        person = svc.move_faces(collection, face_ids, to, actor=local_actor())
    emit({"moved": face_ids, "to": person}) if json_out else typer.echo(
        f"moved {len(face_ids)} face(s) to {person.name} ({person.face_count} faces)"
    )


@face_app.command("delete")
@fail_cleanly
def face_delete(
    collection: str, face_id: int, yes: YesOpt = False, json_out: JsonOpt = False
) -> None:
    """Erase one face."""
    with open_service() as svc:
        svc.store.get_collection(collection)
        confirm_destructive(f"erase face {face_id} of {collection!r}", yes=yes)
        svc.delete_face(collection, face_id, actor=local_actor())
    emit({"face_id": face_id, "deleted": True}) if json_out else typer.echo(
        f"erased face {face_id}"
    )


def _refusal_exit(refused: list[EnrolledImage]) -> None:
    """Exit with the refusals' shared code (duplicates are skipped, not refused)."""
    codes = [exit_code_for(r.refused) for r in refused if r.refused != DUPLICATE]
    if codes:
        raise typer.Exit(int(combined_exit(codes)))


def _outcome(r: EnrolledImage) -> str:
    if r.face_id is not None:
        return f"face {r.face_id}"
    if r.refused == DUPLICATE:
        return "skipped (duplicate: already enrolled for this person; --allow-duplicates)"
    return f"refused ({r.refused}: {r.reason})"


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
    allow_duplicates: AllowDuplicatesOpt = False,
    aligned: search.AlignedOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Enrol one face per image for a person (created if new).

    Exits non-zero when an image is refused (see the exit codes); an image already
    enrolled for the person is skipped and does not count as a refusal.
    """
    with open_service() as svc:
        results = svc.enroll(
            collection,
            person,
            [str(p) for p in images],
            consent=consent,
            face_index=face_index,
            largest=largest,
            allow_low_quality=allow_low_quality,
            allow_duplicates=allow_duplicates,
            aligned=aligned,
            actor=local_actor(),
        )
    skipped = [r for r in results if r.refused == DUPLICATE]
    refused = [r for r in results if r.face_id is None and r.refused != DUPLICATE]
    if json_out:
        emit(
            {
                "person": person,
                "enrolled": len(results) - len(skipped) - len(refused),
                "skipped": len(skipped),
                "refused": len(refused),
                "results": results,
            }
        )
    else:
        for r in results:
            typer.echo(f"{r.source}: {_outcome(r)}")
    _refusal_exit(refused)


@fail_cleanly
def enroll_folder(
    collection: str,
    tree: Annotated[Path, typer.Argument(help="Folder of <person>/<images>.")],
    consent: Annotated[str | None, typer.Option(help="Consent reference for every person.")] = None,
    largest: Annotated[
        bool, typer.Option(help="Enrol the largest face when several are found.")
    ] = False,
    allow_low_quality: Annotated[bool, typer.Option(help="Accept faces graded low.")] = False,
    allow_duplicates: AllowDuplicatesOpt = False,
    aligned: search.AlignedOpt = False,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="Embed on the Ray cluster at HOST:PORT (pip install 'faceledger[ray]').",
        ),
    ] = None,
    ray_workers: Annotated[
        int | None,
        typer.Option(help="Worker actors on the cluster (default: one per CPU).", min=1),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Bulk-enrol a folder tree with a progress bar and a summary of refusals.

    Running it again adds nothing: images already enrolled for their person are skipped.
    With --ray the images are decoded and embedded on a Ray cluster and stored here in
    batches; a run that stops part way is finished by running it again.
    """
    embedder = None
    if ray is not None:
        from faceledger.batch.embedding import RayEmbedder

        embedder = RayEmbedder(ray, workers=ray_workers)
    with open_service() as svc, progress_bar("enrolling") as progress:
        summary = svc.enroll_folder(
            collection,
            tree,
            consent=consent,
            largest=largest,
            allow_low_quality=allow_low_quality,
            allow_duplicates=allow_duplicates,
            aligned=aligned,
            embedder=embedder,
            progress=progress,
            actor=local_actor(),
        )
    skipped = [r for r in summary.refused if r.refused == DUPLICATE]
    refused = [r for r in summary.refused if r.refused != DUPLICATE]
    counts = {k: v for k, v in summary.counts.items() if k != DUPLICATE}
    counts.update(refused=len(refused), skipped=len(skipped))
    if json_out:
        emit(
            {
                "summary": counts,
                "enrolled": summary.enrolled,
                "skipped": skipped,
                "refused": refused,
                **({"cluster": embedder.report} if embedder is not None else {}),
            }
        )
    else:
        typer.echo(
            f"enrolled: {len(summary.enrolled)}, skipped (duplicate): {len(skipped)}, "
            f"refused: {len(refused)}"
        )
        for r in refused:
            typer.echo(f"  refused {r.source}: {r.refused} ({r.reason})")
    _refusal_exit(refused)
