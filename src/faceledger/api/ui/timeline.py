"""A video job's stored index read as a timeline: who appears when, text, speech.

The job result is the JSON the job runner stored (:class:`faceledger.video.VideoIndex`,
redacted in place when a person is erased: their rows stay as "erased person" without
name or face). This module reads it tolerantly into dataclasses the template renders,
with each interval placed on a bar of :data:`BAR` units, so the template does no sums.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from faceledger.speech.subtitles import to_webvtt
from faceledger.speech.types import TranscriptSegment

BAR = 1000.0
"""Width of a timeline bar in SVG units (the whole video)."""
MIN_MARK = 4.0
"""Narrowest mark on a bar, so a moment seen once stays visible."""


@dataclass(frozen=True, slots=True)
class Span:
    """One interval, in seconds from the start, and where it sits on a bar."""

    start: float
    end: float
    x: float
    width: float

    @property
    def query(self) -> str:
        """The page parameters that start the player here (``?t=...&end=...``)."""
        return f"t={self.start:.2f}&end={self.end:.2f}"


@dataclass(frozen=True, slots=True)
class Appearance:
    """A person of the video: enrolled, "unknown person N" or "erased person"."""

    label: str
    identified: bool
    thumbnail: str
    """Best face crop, base64 JPEG; empty for an erased person."""
    confidence: float | None
    fmr: float | None
    seconds: float
    spans: list[Span]


@dataclass(frozen=True, slots=True)
class ShownText:
    """A line of text on screen and when it was visible."""

    text: str
    confidence: float | None
    spans: list[Span]


@dataclass(frozen=True, slots=True)
class Spoken:
    """A transcript segment: what was said, in its language and in English."""

    span: Span
    language: str
    language_probability: float | None
    text: str
    text_en: str
    confidence: float | None

    @property
    def translated(self) -> bool:
        return " ".join(self.text_en.split()) != " ".join(self.text.split())


@dataclass(frozen=True, slots=True)
class Timeline:
    duration: float
    """Seconds the bars stand for (the video's duration, or its last interval's end)."""
    people: list[Appearance]
    text: list[ShownText]
    speech: list[Spoken] | None
    """None when the speech was not indexed; empty when none was heard."""
    speech_problem: str | None
    complete: bool
    problems: list[str]

    @property
    def languages(self) -> list[str]:
        """Languages spoken, in order of first appearance."""
        return list(dict.fromkeys(s.language for s in self.speech or [] if s.language))

    def captions(self, *, english: bool = False) -> str:
        """The speech as a WebVTT document for the player (``english``: translated)."""
        return to_webvtt(
            (
                TranscriptSegment(
                    start=s.span.start,
                    end=s.span.end,
                    language=s.language,
                    language_probability=s.language_probability or 0.0,
                    text=s.text,
                    text_en=s.text_en,
                    confidence=s.confidence or 0.0,
                )
                for s in self.speech or []
            ),
            english=english,
        )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _pairs(value: Any) -> list[tuple[float, float]]:
    pairs = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, list | tuple) and len(item) == 2:
            a, b = _number(item[0]), _number(item[1])
            if a is not None and b is not None and b >= a >= 0:
                pairs.append((a, b))
    return pairs


def _items(value: Any) -> Iterable[dict[str, Any]]:
    return (v for v in (value if isinstance(value, list) else []) if isinstance(v, dict))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def read_timeline(result: dict[str, Any]) -> Timeline:
    """The timeline of a stored job result (missing or malformed parts are left out)."""
    people = [(p, _pairs(p.get("intervals"))) for p in _items(result.get("people"))]
    text = [(x, _pairs(x.get("intervals"))) for x in _items(result.get("text"))]
    said = list(_items(result.get("transcript")))
    said_pairs = [(_number(s.get("start")), _number(s.get("end"))) for s in said]
    ends = [b for _, pairs in people + text for _, b in pairs]
    ends += [b for a, b in said_pairs if a is not None and b is not None]
    duration = _number(result.get("duration")) or 0.0
    duration = max([duration, *ends]) or 1.0

    def span(a: float, b: float) -> Span:
        width = min(max(BAR * (b - a) / duration, MIN_MARK), BAR)
        return Span(a, b, min(BAR * a / duration, BAR - width), width)

    speech: list[Spoken] | None = None
    if "transcript" in result:
        speech = [
            Spoken(
                span=span(a, max(a, b)),
                language=_text(s.get("language")),
                language_probability=_number(s.get("language_probability")),
                text=_text(s.get("text")),
                text_en=_text(s.get("text_en")),
                confidence=_number(s.get("confidence")),
            )
            for s, (a, b) in zip(said, said_pairs, strict=True)
            if a is not None and b is not None and a >= 0
        ]
    problems = result.get("errors")
    return Timeline(
        duration=duration,
        people=[
            Appearance(
                label=_text(p.get("label")) or "unnamed",
                identified=isinstance(p.get("person"), str),
                thumbnail=_text(p.get("thumbnail")),
                confidence=_number(p.get("confidence")),
                fmr=_number(p.get("fmr")),
                seconds=sum(b - a for a, b in pairs),
                spans=[span(a, b) for a, b in pairs],
            )
            for p, pairs in people
        ],
        text=[
            ShownText(
                text=_text(x.get("text")),
                confidence=_number(x.get("confidence")),
                spans=[span(a, b) for a, b in pairs],
            )
            for x, pairs in text
        ],
        speech=speech,
        speech_problem=_text(result.get("speech_problem")) or None,
        complete=result.get("complete") is not False,
        problems=[p for p in problems if isinstance(p, str)] if isinstance(problems, list) else [],
    )
