"""Speech to text, language by language: VAD regions, per-window language, text and English.

The audio is cut into speech regions by Silero VAD (the model faster-whisper ships);
consecutive regions are packed into windows of at most 30 s (Whisper's context), a new
window starting at a pause longer than :data:`MAX_GAP`. Each window is encoded once and
that one encoder pass serves three jobs: detecting its language, transcribing it in that
language and, when it is not English, translating it to English. A window whose language
is uncertain (top probability below :data:`SURE`: it may hold two languages) has each of
its regions detected alone, and runs of regions in one language are transcribed together.
So a file with English then German speech gets English then German segments, where one
detection per file would force one language on both.

Speed (Whisper base, int8, 2 threads): one encoder pass of about 0.8 s per window plus
decoding; see ``benchmarks/speech.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from faceledger.errors import InvalidArgument, ModelError, VideoError
from faceledger.speech.audio import MAX_AUDIO_SECONDS, SAMPLE_RATE, Source, decode_audio
from faceledger.speech.model import SpeechModel, default_speech_model
from faceledger.speech.types import Transcript, TranscriptSegment

Progress = Callable[[float, float], None]
"""Called with (seconds of audio done, total seconds)."""

WINDOW = 30.0
"""Longest stretch transcribed with one language (Whisper's input is 30 s)."""
MAX_GAP = 2.0
"""Speech regions further apart than this (seconds) are never in one window."""
SURE = 0.7
"""A window whose top language is less probable is split and detected region by region."""
MIN_SILENCE_MS = 500
SPEECH_PAD_MS = 200
BEAM_SIZE = 5

Region = tuple[int, int]
"""``[start, end)`` in samples."""


def speech_regions(samples: npt.NDArray[np.float32]) -> list[Region]:
    """Where there is speech, as ``[start, end)`` sample ranges of at most 30 s each.

    Args:
        samples: ``(n,)`` float32 at 16 kHz mono.
    """
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    if len(samples) == 0:
        return []
    options = VadOptions(
        min_silence_duration_ms=MIN_SILENCE_MS,
        speech_pad_ms=SPEECH_PAD_MS,
        max_speech_duration_s=WINDOW,
    )
    found = get_speech_timestamps(samples, options, sampling_rate=SAMPLE_RATE)
    return [(int(r["start"]), int(r["end"])) for r in found if r["end"] > r["start"]]


def pack_windows(
    regions: Sequence[Region], *, max_seconds: float = WINDOW, max_gap: float = MAX_GAP
) -> list[list[Region]]:
    """Consecutive regions grouped while a group spans at most ``max_seconds`` and no gap
    inside it is longer than ``max_gap`` seconds (pure)."""
    windows: list[list[Region]] = []
    limit, gap = max_seconds * SAMPLE_RATE, max_gap * SAMPLE_RATE
    for region in regions:
        current = windows[-1] if windows else None
        if (
            current is not None
            and region[1] - current[0][0] <= limit
            and region[0] - current[-1][1] <= gap
        ):
            current.append(region)
        else:
            windows.append([region])
    return windows


@dataclass(frozen=True, slots=True)
class _Encoded:
    """One window ready to decode: its span, features, encoder output and language."""

    start: int
    end: int
    features: Any
    encoder_output: Any
    language: str
    probability: float


def _span(regions: Sequence[Region]) -> Region:
    return regions[0][0], regions[-1][1]


class _Recogniser:
    """Runs one model over the windows of one file (hint words, beam size, languages)."""

    def __init__(
        self,
        model: SpeechModel,
        samples: npt.NDArray[np.float32],
        *,
        hotwords: str | None,
        initial_prompt: str | None,
        language: str | None,
        beam_size: int,
    ) -> None:
        self.whisper = model.whisper
        self.samples = samples
        self.multilingual = bool(self.whisper.model.is_multilingual)
        self.language = language if self.multilingual else "en"
        if self.language is not None and self.language not in self.whisper.supported_languages:
            raise InvalidArgument(f"unknown language code {language!r}")
        self.hints = {"hotwords": hotwords or None, "initial_prompt": initial_prompt or None}
        self.beam_size = beam_size
        self._options: dict[str, Any] = {}

    def encode(self, regions: Sequence[Region]) -> _Encoded:
        from faster_whisper.audio import pad_or_trim

        start, end = _span(regions)
        features = self.whisper.feature_extractor(self.samples[start:end])
        encoder_output = self.whisper.encode(pad_or_trim(features))
        if self.language is not None:
            return _Encoded(start, end, features, encoder_output, self.language, 1.0)
        best = self.whisper.model.detect_language(encoder_output)[0][0]
        return _Encoded(start, end, features, encoder_output, best[0][2:-2], float(best[1]))

    def plan(self, regions: list[Region]) -> list[_Encoded]:
        """The window encoded once; split by language when its language is uncertain."""
        whole = self.encode(regions)
        if whole.probability >= SURE or len(regions) == 1:
            return [whole]
        alone = [self.encode([r]) for r in regions]
        runs: list[list[_Encoded]] = []
        for item in alone:
            if runs and runs[-1][-1].language == item.language:
                runs[-1].append(item)
            else:
                runs.append([item])
        out = []
        for run in runs:
            if len(run) == 1:
                out.append(run[0])
                continue
            merged = self.encode([(e.start, e.end) for e in run])
            weights = [e.end - e.start for e in run]
            probability = float(np.average([e.probability for e in run], weights=weights))
            out.append(
                _Encoded(
                    merged.start,
                    merged.end,
                    merged.features,
                    merged.encoder_output,
                    run[0].language,
                    probability,
                )
            )
        return out

    def decode(self, window: _Encoded, task: str) -> list[Any]:
        """Whisper's segments of one window for ``task`` (transcribe or translate)."""
        from faster_whisper.tokenizer import Tokenizer

        tokenizer = Tokenizer(
            self.whisper.hf_tokenizer, self.multilingual, task=task, language=window.language
        )
        options = self._options_for(task, window.language)
        return list(
            self.whisper.generate_segments(
                window.features, tokenizer, options, False, window.encoder_output
            )
        )

    def _options_for(self, task: str, language: str) -> Any:
        # faster-whisper builds its TranscriptionOptions (suppressed tokens, temperatures
        # and the rest) inside transcribe(); borrowing them from a call on 0.1 s of silence
        # (nothing is decoded until its generator is read) lets generate_segments reuse
        # our encoder output instead of encoding every window again for each task.
        if task not in self._options:
            _, info = self.whisper.transcribe(
                np.zeros(SAMPLE_RATE // 10, dtype=np.float32),
                language=language,
                task=task,
                beam_size=self.beam_size,
                vad_filter=False,
                **self.hints,
            )
            self._options[task] = info.transcription_options
        return self._options[task]


def _assign(originals: list[Any], translated: list[Any]) -> list[str]:
    """English text for each original segment: each translated segment goes to the
    original it overlaps most in time (pure)."""
    texts: list[list[str]] = [[] for _ in originals]
    for t in translated:
        if not originals or not t.text.strip():
            continue
        overlap = [min(o.end, t.end) - max(o.start, t.start) for o in originals]
        best = int(np.argmax(overlap))
        if overlap[best] <= 0:
            middle = (t.start + t.end) / 2
            best = int(np.argmin([abs((o.start + o.end) / 2 - middle) for o in originals]))
        texts[best].append(t.text.strip())
    return [" ".join(parts) for parts in texts]


def _segments(
    window: _Encoded, offset: float, originals: list[Any], english: list[str]
) -> list[TranscriptSegment]:
    base = offset + window.start / SAMPLE_RATE
    limit = offset + window.end / SAMPLE_RATE
    out = []
    for segment, text_en in zip(originals, english, strict=True):
        text = segment.text.strip()
        if not text:
            continue
        out.append(
            TranscriptSegment(
                start=round(base + float(segment.start), 2),
                end=round(min(base + float(segment.end), limit), 2),
                language=window.language,
                language_probability=round(window.probability, 4),
                text=text,
                text_en=text_en,
                confidence=round(min(1.0, math.exp(float(segment.avg_logprob))), 4),
            )
        )
    return out


def transcribe(
    source: Source,
    *,
    model: SpeechModel | None = None,
    hotwords: str | None = None,
    initial_prompt: str | None = None,
    language: str | None = None,
    beam_size: int = BEAM_SIZE,
    max_seconds: float = MAX_AUDIO_SECONDS,
    progress: Progress | None = None,
) -> Transcript:
    """Transcribe the speech of a media file (path or bytes), with English for other languages.

    Args:
        source: a video or audio file (anything FFmpeg reads), as a path or its bytes.
        model: a loaded model; the default Whisper base when omitted.
        hotwords: words to expect (names, jargon), given to Whisper as hint phrases.
        initial_prompt: text Whisper is told came just before (style and vocabulary).
        language: skip detection and use this language code everywhere.
        max_seconds: only this much audio is decoded (memory bound, see ``speech.audio``).
        progress: called with (seconds done, total seconds) after each window.

    Returns:
        The segments in time order; empty, with ``problem`` saying why, when the file has
        no readable audio track or no speech.

    Raises:
        ModelError: the model failed to load or to run.
        InvalidArgument: an unknown language code or a beam size below 1.
    """
    if beam_size < 1:
        raise InvalidArgument("beam_size must be at least 1")
    model = model if model is not None else default_speech_model()
    name = model.info.name
    try:
        audio = decode_audio(source, max_seconds=max_seconds)
    except VideoError as exc:
        return Transcript(segments=(), duration=0.0, problem=exc.message, model=name)
    total = audio.duration
    if progress is not None:
        progress(0.0, total)
    segments: list[TranscriptSegment] = []
    with model.lock:
        recogniser = _Recogniser(
            model,
            audio.samples,
            hotwords=hotwords,
            initial_prompt=initial_prompt,
            language=language,
            beam_size=beam_size,
        )
        try:
            for regions in pack_windows(speech_regions(audio.samples)):
                for window in recogniser.plan(regions):
                    originals = recogniser.decode(window, "transcribe")
                    if window.language == "en" or not recogniser.multilingual:
                        english = [s.text.strip() for s in originals]
                    else:
                        english = _assign(originals, recogniser.decode(window, "translate"))
                    segments.extend(_segments(window, audio.offset, originals, english))
                if progress is not None:
                    progress(min(total, _span(regions)[1] / SAMPLE_RATE), total)
        except (RuntimeError, ValueError) as exc:  # CTranslate2 and onnxruntime failures
            raise ModelError(f"speech recognition failed: {exc}") from exc
    if progress is not None:
        progress(total, total)
    problem = audio.problem
    if not segments and problem is None:
        problem = "no speech found" if total > 0 else "the audio track is empty"
    return Transcript(
        segments=tuple(segments), duration=round(total, 3), problem=problem, model=name
    )
