"""``faceledger video``: index a video or audio file (people, on-screen text, speech) into JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from faceledger.cli.archive import index_archive
from faceledger.cli.common import (
    err_console,
    exit_code_for,
    fail_cleanly,
    progress_bar,
    to_jsonable,
)
from faceledger.cli.context import local_actor, open_service

if TYPE_CHECKING:  # loaded when a video is indexed (SciPy's optimiser takes about 1 s)
    from faceledger.video import VideoIndex

video_app = typer.Typer(
    help="Index videos and audio: who appears when, the text on screen, what is said.",
    no_args_is_help=True,
)
video_app.command("index-archive")(index_archive)


@video_app.callback()
def video() -> None:
    """Index videos and audio: who appears when, the text on screen, what is said."""


@video_app.command("index")
@fail_cleanly
def index(
    video: Annotated[Path, typer.Argument(help="Video or audio file (any format FFmpeg reads).")],
    collection: Annotated[str, typer.Option(help="Collection to identify people against.")],
    json_out: Annotated[
        Path, typer.Option("--json", help="File to write the index to ('-' for stdout).")
    ],
    fps: Annotated[float, typer.Option(help="Frames sampled per second for faces.")] = 4.0,
    every_frame: Annotated[bool, typer.Option(help="Analyse every frame (slow).")] = False,
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
    speech: Annotated[bool, typer.Option(help="Transcribe and translate what is said.")] = True,
    vtt: Annotated[
        Path | None, typer.Option("--vtt", help="Also write the speech as WebVTT subtitles.")
    ] = None,
    srt: Annotated[
        Path | None, typer.Option("--srt", help="Also write the speech as SRT subtitles.")
    ] = None,
    english: Annotated[
        bool, typer.Option("--english", help="Subtitles in English (translated) text.")
    ] = False,
    hotwords: Annotated[
        str | None, typer.Option("--hotwords", help="Words to expect in the speech.")
    ] = None,
    asr_model: Annotated[
        Path | None,
        typer.Option("--asr-model", help="A CTranslate2 Whisper directory (default: base)."),
    ] = None,
) -> None:
    """Index a video or audio file: people and when they appear, on-screen text, speech.

    The speech comes with its language per segment and English text; an audio file gives
    the speech alone.
    """
    from faceledger.speech import load_speech_model
    from faceledger.speech.subtitles import to_srt, to_webvtt
    from faceledger.video import IndexOptions

    options = IndexOptions(
        fps=None if every_frame else fps, ocr=ocr, max_fmr=max_fmr, speech=speech, hotwords=hotwords
    )
    with open_service() as svc:
        model = None
        if speech and asr_model is not None:
            model = load_speech_model(asr_model, cache_dir=svc.settings.cache_dir)
        with progress_bar("indexing") as progress:
            result = svc.index_video(
                collection,
                video,
                options=options,
                purpose=purpose,
                case_ref=case,
                actor=local_actor(),
                progress=progress,
                speech_model=model,
            )
    if vtt is not None:
        _write(vtt, to_webvtt(result.transcript, english=english))
    if srt is not None:
        _write(srt, to_srt(result.transcript, english=english))
    text = json.dumps(to_jsonable(result), indent=2, ensure_ascii=False)
    if str(json_out) == "-":
        typer.echo(text)
    else:
        json_out.write_text(text + "\n", encoding="utf-8")
        _summarise(result, json_out)
    if result.speech_problem is not None and speech:
        err_console.print(f"[yellow]note[/]: speech: {result.speech_problem}")
    if result.error is not None:
        err_console.print(
            f"[red]error[/red] ({result.error['code']}): {result.error['message']} "
            "(the index covers what could be read)"
        )
        raise typer.Exit(int(exit_code_for(result.error["code"])))


def _write(out: Path, text: str) -> None:
    if str(out) == "-":
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


def _summarise(result: VideoIndex, out: Path) -> None:
    for person in result.people:
        spans = ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in person.intervals)
        typer.echo(f"{person.label}: {spans}")
    languages = ", ".join(dict.fromkeys(s.language for s in result.transcript)) or "none"
    typer.echo(
        f"{len(result.people)} people, {len(result.text)} text line(s), "
        f"{len(result.transcript)} speech segment(s) (languages: {languages}) "
        f"in {result.duration or 0:.1f} s; index written to {out}"
    )
