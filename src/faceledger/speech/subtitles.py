"""Subtitles from transcript segments: WebVTT and SRT, in the original language or English."""

from __future__ import annotations

from collections.abc import Iterable

from faceledger.errors import InvalidArgument
from faceledger.speech.types import TranscriptSegment


def timestamp(seconds: float, *, decimal: str = ".") -> str:
    """``HH:MM:SS.mmm`` (``,`` before the milliseconds for SRT); hours grow past 99."""
    if seconds < 0:
        raise InvalidArgument("a subtitle time cannot be negative")
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def _cues(segments: Iterable[TranscriptSegment], english: bool) -> list[tuple[float, float, str]]:
    cues = []
    for s in segments:
        text = " ".join((s.text_en if english else s.text).split())
        if text:
            cues.append((s.start, max(s.end, s.start), text))
    return cues


def to_webvtt(segments: Iterable[TranscriptSegment], *, english: bool = False) -> str:
    """A WebVTT document (``english``: the English text of every segment)."""
    blocks = ["WEBVTT\n"]
    for start, end, text in _cues(segments, english):
        # "-->" inside a cue's text would end it early; an arrow is the closest safe text
        text = text.replace("-->", "→")
        blocks.append(f"{timestamp(start)} --> {timestamp(end)}\n{text}\n")
    return "\n".join(blocks)


def to_srt(segments: Iterable[TranscriptSegment], *, english: bool = False) -> str:
    """An SRT document: numbered cues, ``HH:MM:SS,mmm`` times, blank line between cues."""
    blocks = []
    for number, (start, end, text) in enumerate(_cues(segments, english), start=1):
        span = f"{timestamp(start, decimal=',')} --> {timestamp(end, decimal=',')}"
        blocks.append(f"{number}\n{span}\n{text}\n")
    return "\n".join(blocks)
