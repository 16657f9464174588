"""Results of speech recognition: timed segments with language, text and English text."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TranscriptSegment:
    """One stretch of speech, times in seconds from the start of the file."""

    start: float
    end: float
    language: str
    """ISO 639-1 code detected for the speech region this segment belongs to."""
    language_probability: float
    text: str
    """What was said, in ``language``."""
    text_en: str
    """English text: ``text`` itself for English, Whisper's translation otherwise."""
    confidence: float
    """exp(mean token log-probability) of the decoded text, in (0, 1]."""


@dataclass(frozen=True, slots=True)
class Transcript:
    """The speech of one file; empty with a ``problem`` when none could be transcribed."""

    segments: tuple[TranscriptSegment, ...]
    duration: float
    """Seconds of audio decoded."""
    problem: str | None = None
    """Why the transcript is empty or partial (no audio track, damage, silence, cap)."""
    model: str = ""
    """Name of the speech model that made it."""

    @property
    def languages(self) -> list[str]:
        """Languages spoken, in order of first appearance."""
        return list(dict.fromkeys(s.language for s in self.segments))
