"""``faceledger speech``: transcribe (and translate) the speech of a media file, offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from faceledger.cli.common import err_console, fail_cleanly, progress_bar, to_jsonable
from faceledger.speech import Transcript, load_speech_model, transcribe
from faceledger.speech.subtitles import to_srt, to_webvtt

speech_app = typer.Typer(
    help="Speech: transcription and translation to English, offline.", no_args_is_help=True
)

OutOpt = Annotated[Path | None, typer.Option(help="File to write ('-' for stdout).")]


@speech_app.callback()
def speech() -> None:
    """Speech: transcription and translation to English, offline."""


def _write(out: Path, text: str) -> None:
    if str(out) == "-":
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


@speech_app.command("transcribe")
@fail_cleanly
def transcribe_command(
    media: Annotated[Path, typer.Argument(help="Audio or video file (any format FFmpeg reads).")],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the transcript as JSON ('-': stdout).")
    ] = None,
    vtt: Annotated[Path | None, typer.Option("--vtt", help="Write WebVTT subtitles.")] = None,
    srt: Annotated[Path | None, typer.Option("--srt", help="Write SRT subtitles.")] = None,
    english: Annotated[
        bool, typer.Option("--english", help="Subtitles in English (translated) text.")
    ] = False,
    hotwords: Annotated[
        str | None, typer.Option("--hotwords", help="Words to expect: names, jargon.")
    ] = None,
    language: Annotated[
        str | None, typer.Option("--language", help="Skip detection: language code, e.g. de.")
    ] = None,
    asr_model: Annotated[
        Path | None,
        typer.Option("--asr-model", help="A CTranslate2 Whisper directory (default: base)."),
    ] = None,
    threads: Annotated[int, typer.Option(help="CPU threads for the model.")] = 2,
) -> None:
    """Transcribe speech with its language per segment, and translate it to English."""
    model = load_speech_model(asr_model, threads=threads)
    with progress_bar("transcribing") as bar:
        result = transcribe(
            media,
            model=model,
            hotwords=hotwords,
            language=language,
            progress=lambda done, total: bar(round(done), round(total)),
        )
    if json_out is not None:
        _write(json_out, json.dumps(to_jsonable(result), indent=2, ensure_ascii=False) + "\n")
    if vtt is not None:
        _write(vtt, to_webvtt(result.segments, english=english))
    if srt is not None:
        _write(srt, to_srt(result.segments, english=english))
    unreadable = result.duration == 0 and not result.segments
    if json_out is None and vtt is None and srt is None and not unreadable:
        _print(result)
    if result.problem is not None:
        colour = "red]error" if unreadable else "yellow]note"
        err_console.print(f"[{colour}[/]: {result.problem}")
        if unreadable:
            raise typer.Exit(1)


def _print(result: Transcript) -> None:
    for s in result.segments:
        typer.echo(f"[{s.start:7.2f} - {s.end:7.2f}] {s.language} {s.text}")
        if s.text_en != s.text:
            typer.echo(f"{'':21} en {s.text_en}")
    typer.echo(
        f"{len(result.segments)} segment(s), languages: {', '.join(result.languages) or 'none'}, "
        f"{result.duration:.1f} s of audio ({result.model})"
    )
