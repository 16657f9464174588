"""``faceledger video index-archive``: index every video of a folder into one JSON document.

Each finished index is also kept in the collection's media index, as ``video index`` does.

Locally the videos are indexed one after another; with ``--ray`` each video is one task
on a Ray cluster (:mod:`faceledger.batch.archive`). The document is rewritten after each
video, so a run that stops part way is resumed by running it again: videos already in it
(by SHA-256) are skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from faceledger.cli.common import err_console, fail_cleanly, progress_bar, to_jsonable
from faceledger.cli.context import local_actor, open_service
from faceledger.errors import InvalidArgument

if TYPE_CHECKING:
    from faceledger.batch.archive import VideoOutcome


def _resume(out: Path | None, collection: str) -> list[dict[str, Any]]:
    """The videos a previous run of this document indexed (failed ones are tried again)."""
    if out is None or not out.exists():
        return []
    try:
        doc = json.loads(out.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"{out} is not an archive index to resume: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("collection") != collection:
        raise InvalidArgument(f"{out} is not an index of collection {collection!r}")
    return [v for v in doc.get("videos", []) if isinstance(v, dict) and v.get("index")]


def _write(out: Path, doc: dict[str, Any]) -> None:
    """Replace the document atomically (a crash leaves the previous one whole)."""
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out)


@fail_cleanly
def index_archive(
    directory: Annotated[Path, typer.Argument(help="Folder of videos (searched recursively).")],
    collection: Annotated[str, typer.Option(help="Collection to identify people against.")],
    json_out: Annotated[
        Path,
        typer.Option(
            "--json", help="The archive's index document, resumed if it exists ('-': stdout)."
        ),
    ],
    fps: Annotated[float, typer.Option(help="Frames sampled per second for faces.")] = 4.0,
    purpose: Annotated[
        str | None, typer.Option(help="Why this search is made (recorded in the audit ledger).")
    ] = None,
    case: Annotated[
        str | None, typer.Option("--case", help="Case reference (recorded in the ledger).")
    ] = None,
    max_fmr: Annotated[
        float, typer.Option("--max-fmr", help="Largest false match rate of an identification.")
    ] = 1e-4,
    ocr: Annotated[bool, typer.Option(help="Read the text shown on screen.")] = True,
    speech: Annotated[bool, typer.Option(help="Transcribe (and translate) what is said.")] = True,
    hotwords: Annotated[
        str | None, typer.Option("--hotwords", help="Words to expect in the speech.")
    ] = None,
    asr_model: Annotated[
        Path | None,
        typer.Option(
            "--asr-model",
            help="A CTranslate2 Whisper directory (default: base); with --ray, on every node.",
        ),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="Index on the Ray cluster at HOST:PORT, a video a task.",
        ),
    ] = None,
    ray_workers: Annotated[
        int | None,
        typer.Option(help="Worker actors on the cluster (default: one per CPU).", min=1),
    ] = None,
) -> None:
    """Index every video under DIRECTORY: who appears when, the text on screen, what is said."""
    from faceledger.batch.archive import find_videos, index_locally, index_on_ray, pending_videos
    from faceledger.batch.speech import SpeechSpec
    from faceledger.batch.types import EngineSpec
    from faceledger.speech import load_speech_model
    from faceledger.video import IndexOptions

    if not directory.is_dir():
        raise InvalidArgument(f"{directory} is not a folder")
    out = None if str(json_out) == "-" else json_out
    kept = _resume(out, collection)
    options = IndexOptions(fps=fps, ocr=ocr, max_fmr=max_fmr, speech=speech, hotwords=hotwords)
    actor = local_actor()
    doc: dict[str, Any] = {"collection": collection, "directory": str(directory), "videos": [*kept]}

    with open_service() as svc, progress_bar("indexing videos") as progress:

        def done(outcome: VideoOutcome) -> None:
            if ray is not None and outcome.index is not None:  # as svc.index_video does
                svc.store_video_index(
                    collection, outcome.index, file_name=Path(outcome.path).name, actor=actor
                )
            doc["videos"].append(to_jsonable(outcome))
            if out is not None:
                _write(out, doc)

        svc.check_video_request(collection, purpose)
        todo = pending_videos(find_videos(directory), {v["video_sha256"] for v in kept})
        if ray is None:
            model = None
            if speech and asr_model is not None:
                model = load_speech_model(asr_model, cache_dir=svc.settings.cache_dir)
            index_locally(
                todo,
                lambda path: svc.index_video(
                    collection,
                    path,
                    options=options,
                    purpose=purpose,
                    case_ref=case,
                    actor=actor,
                    speech_model=model,
                ),
                on_done=done,
                progress=progress,
            )
        else:
            col, engine = svc.collection_engine(collection)

            identify = svc.video_identifier(
                collection, options, purpose=purpose, case_ref=case, actor=actor
            )

            report = index_on_ray(
                todo,
                address=ray,
                spec=EngineSpec.of(engine, pack=col.model_pack),
                collection=collection,
                options=options,
                identify=identify,
                on_done=done,
                speech=SpeechSpec.of(asr_model, cache_dir=svc.settings.cache_dir)
                if speech
                else None,
                workers=ray_workers,
                progress=progress,
            )
            doc["cluster"] = to_jsonable(report)
    failed = [v for v in doc["videos"] if v.get("error")]
    doc.update(indexed=len(doc["videos"]) - len(failed), failed=len(failed), resumed=len(kept))
    if out is None:
        typer.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    _write(out, doc)
    typer.echo(
        f"{doc['indexed']} videos indexed ({len(kept)} from an earlier run), "
        f"{len(failed)} failed; index written to {out}"
    )
    for v in failed:
        err_console.print(f"[red]failed[/red] {v['path']}: {v['error'].get('message')}")
    if failed:
        raise typer.Exit(1)
