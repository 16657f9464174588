"""``faceledger media``: search the indexed videos of a collection (who, what was shown, what
was said, when) and list what the media index holds."""

from __future__ import annotations

from typing import Annotated

import typer

from faceledger.cli.common import JsonOpt, emit, fail_cleanly
from faceledger.cli.context import local_actor, open_service

media_app = typer.Typer(
    help="Search indexed videos: by person, words said, words shown and time.",
    no_args_is_help=True,
)


@media_app.callback()
def media() -> None:
    """Search indexed videos: by person, words said, words shown and time."""


@media_app.command("search")
@fail_cleanly
def search(
    collection: Annotated[str, typer.Argument(help="Collection the videos were indexed against.")],
    person: Annotated[
        str | None, typer.Option(help="An enrolled person (a search of the face database).")
    ] = None,
    said: Annotated[
        str | None, typer.Option(help="Words said (all of them, in one transcript segment).")
    ] = None,
    shown: Annotated[
        str | None, typer.Option(help="Words shown on screen (all of them, in one line).")
    ] = None,
    start: Annotated[
        float | None, typer.Option("--from", help="Hits must end at or after this second.")
    ] = None,
    end: Annotated[
        float | None, typer.Option("--to", help="Hits must start at or before this second.")
    ] = None,
    video: Annotated[
        str | None, typer.Option(help="Only this video: its SHA-256 or file name.")
    ] = None,
    offset: Annotated[int, typer.Option(help="Hits to skip (paging).")] = 0,
    limit: Annotated[int, typer.Option(help="Hits per page (at most 1000).")] = 50,
    purpose: Annotated[
        str | None, typer.Option(help="Why this search is made (recorded in the audit ledger).")
    ] = None,
    case: Annotated[
        str | None, typer.Option("--case", help="Case reference (recorded in the ledger).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Times where the person appears while the words are said and shown (every criterion
    given, at once). A search by person is recorded in the audit ledger like identify."""
    with open_service() as svc:
        page = svc.search_media(
            collection,
            person=person,
            said=said,
            shown=shown,
            start=start,
            end=end,
            video=video,
            offset=offset,
            limit=limit,
            purpose=purpose,
            case_ref=case,
            actor=local_actor(),
        )
    if json_out:
        emit(page)
        return
    for hit in page.hits:
        parts = [f"{hit.file_name} {hit.start:.1f}-{hit.end:.1f} s"]
        if hit.person is not None:
            parts.append(hit.person.label)
        if hit.said is not None:
            english = hit.said.text_en if hit.said.text_en not in (None, hit.said.text) else None
            parts.append(f"said [{hit.said.language}] {hit.said.text!r}")
            if english:
                parts.append(f"(English: {english!r})")
        if hit.shown is not None:
            parts.append(f"shown {hit.shown.text!r}")
        typer.echo("  ".join(parts))
    shown_to = page.offset + len(page.hits)
    typer.echo(f"{page.total} hit(s); showing {page.offset + 1 if page.hits else 0}-{shown_to}")


@media_app.command("list")
@fail_cleanly
def list_videos(
    collection: Annotated[str, typer.Argument(help="Collection the videos were indexed against.")],
    json_out: JsonOpt = False,
) -> None:
    """The videos the collection's media index holds, most recently indexed first."""
    with open_service() as svc:
        videos = svc.media_videos(collection)
    if json_out:
        emit({"videos": videos})
        return
    for v in videos:
        counts = ", ".join(f"{n} {kind}" for kind, n in v.segments.items())
        typer.echo(f"{v.file_name}  {v.video_sha256[:12]}  {v.duration or 0:.1f} s  {counts}")
    typer.echo(f"{len(videos)} video(s)")
