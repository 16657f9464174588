"""The speech pass of a video index: what is said, from a transcriber the caller passes in.

The indexer never loads a speech model itself: the service hands it a :class:`Transcriber`
(a callable over a file, usually :func:`faceledger.speech.transcribe` bound to a loaded
model). Speech never fails the index: a missing, damaged or silent audio track, or a
model that cannot run, leaves an empty transcript and says why in ``speech_problem``,
beside the people and text that could be read.

Progress over the passes: the frame pass (faces and on-screen text, sampled together)
counts one unit per sampled frame; the speech pass counts :data:`SPEECH_UNITS` per second
of audio, so a progress bar moves at about the same pace through both.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from faceledger.errors import FaceledgerError
from faceledger.speech.types import Transcript, TranscriptSegment

SPEECH_UNITS = 3.0
"""Progress units per second of audio: transcribing one second (Whisper base, int8) takes
about 0.3 CPU seconds, three sampled frames' worth of the frame pass (0.1 s each on the
640x360 Hamilton clip at 4 fps with OCR; ``benchmarks/video.py``)."""


class SpeechProgress(Protocol):
    def __call__(self, done: float, total: float) -> None:
        """Seconds of audio transcribed so far, out of ``total``."""


class Transcriber(Protocol):
    """Transcribes the speech of a media file; reports (seconds done, total seconds)."""

    def __call__(
        self, path: str | os.PathLike[str], *, progress: SpeechProgress | None
    ) -> Transcript: ...


@dataclass(frozen=True, slots=True)
class Speech:
    """The outcome of the speech pass."""

    segments: list[TranscriptSegment]
    problem: str | None
    """Why there is no (or only a partial) transcript; None when all went well."""
    seconds: float
    """Seconds of audio decoded (0 when the audio could not be read at all)."""
    error: FaceledgerError | None = None
    """The model's failure, when that is why there is no transcript."""


def run_speech(
    path: str | os.PathLike[str],
    transcriber: Transcriber,
    *,
    progress: Callable[[float], None] | None = None,
) -> Speech:
    """Transcribe ``path``; a model or audio failure becomes ``problem``, never an error.

    ``progress`` is called with the fraction of the audio done (0 to 1). Exceptions
    raised by ``progress`` itself (a cancelled job) are let through.
    """

    def report(done: float, total: float) -> None:
        if progress is not None:
            progress(min(1.0, done / total) if total > 0 else 0.0)

    try:
        transcript = transcriber(path, progress=report)
    except FaceledgerError as exc:  # the model could not load or run: keep the rest
        return Speech([], f"speech recognition failed: {exc.message}", 0.0, exc)
    return Speech(list(transcript.segments), transcript.problem, float(transcript.duration))
