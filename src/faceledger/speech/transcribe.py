"""Speech to text, language by language: VAD regions, a language per region, text and English.

The audio is cut into speech regions by Silero VAD. Each region's language is detected
on its own (Whisper's language head over the encoder run on that region alone, at most
:data:`DETECT_SECONDS`, which costs in proportion to its length rather than a full 30 s
pass); unsure regions take their neighbours' language. Runs of regions in one language
are grouped into windows of at most 30 s (:mod:`faceledger.speech.segmenting`); each
window is encoded once, and that one pass serves both the transcription in its language
and, when it is not English, the translation to English. So English then German speech
gives English then German segments even inside one 30 s stretch, where one detection per
file (or per window) forces one language on both and drops or garbles the other.

Speed (Whisper base, int8, 2 threads): see ``benchmarks/speech.py``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from faceledger.errors import InvalidArgument, ModelError, VideoError
from faceledger.speech.audio import MAX_AUDIO_SECONDS, SAMPLE_RATE, Source, decode_audio
from faceledger.speech.model import SpeechModel, default_speech_model
from faceledger.speech.segmenting import (
    Detection,
    Region,
    Window,
    assign_languages,
    language_windows,
    speech_regions,
)
from faceledger.speech.types import Transcript, TranscriptSegment

Progress = Callable[[float, float], None]
"""Called with (seconds of audio done, total seconds)."""

DETECT_SECONDS = 10.0
"""Language detection reads at most this much of a region (cost grows with length)."""
MIN_DETECT_SECONDS = 0.5
"""Regions shorter than this are not detected: they take their neighbours' language."""
BEAM_SIZE = 5
_one_blas_thread = threading.Lock()


def mel_features(whisper: Any, samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Whisper's log-mel features of ``samples``, the same in every process on a machine.

    faster-whisper applies the mel filters with one NumPy matrix product, whose last bits
    depend on how many threads NumPy's BLAS uses (OpenBLAS: one per core, or
    ``OMP_NUM_THREADS``, which Ray sets to 1 in its workers); on ``jfk.flac`` that moved the
    segments' times and confidences. The product runs on one BLAS thread (a few
    milliseconds per 30 s window), so a Ray worker transcribes as a local run does.
    """
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    with _one_blas_thread, threadpool_limits(limits=1, user_api="blas"):
        features: npt.NDArray[np.float32] = whisper.feature_extractor(samples)
    return features


@dataclass(frozen=True, slots=True)
class _Encoded:
    """One window ready to decode: its features and encoder output (30 s, padded)."""

    window: Window
    features: Any
    encoder_output: Any


class _Recogniser:
    """Runs one model over the regions of one file (hint words, beam size, languages)."""

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

    def windows(self, regions: list[Region]) -> list[Window]:
        """The regions grouped into windows of one language each."""
        if self.language is not None:
            languages = [Detection(self.language, 1.0)] * len(regions)
        else:
            languages = assign_languages([self.detect(r) for r in regions])
        return language_windows(regions, languages)

    def detect(self, region: Region) -> Detection:
        """The most probable language of one region, from its first seconds alone."""
        start, end = region
        end = min(end, start + int(DETECT_SECONDS * SAMPLE_RATE))
        if end - start < MIN_DETECT_SECONDS * SAMPLE_RATE:
            return Detection("", 0.0)
        features = mel_features(self.whisper, self.samples[start:end])
        frames = features.shape[-1] - features.shape[-1] % 2  # the encoder convolves with stride 2
        # CTranslate2 encodes inputs shorter than 30 s as they are: no padding to pay for.
        encoder_output = self.whisper.encode(features[:, :frames])
        token, probability = self.whisper.model.detect_language(encoder_output)[0][0]
        return Detection(str(token)[2:-2], float(probability))

    def encode(self, window: Window) -> _Encoded:
        """The window's features and encoder output, padded to 30 s as Whisper decodes."""
        from faster_whisper.audio import pad_or_trim

        features = mel_features(self.whisper, self.samples[window.start : window.end])
        return _Encoded(window, features, self.whisper.encode(pad_or_trim(features)))

    def decode(self, encoded: _Encoded, task: str) -> list[Any]:
        """Whisper's segments of one window for ``task`` (transcribe or translate)."""
        from faster_whisper.tokenizer import Tokenizer

        language = encoded.window.language
        tokenizer = Tokenizer(
            self.whisper.hf_tokenizer, self.multilingual, task=task, language=language
        )
        options = self._options_for(task, language)
        return list(
            self.whisper.generate_segments(
                encoded.features, tokenizer, options, False, encoded.encoder_output
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
    window: Window, offset: float, originals: list[Any], english: list[str]
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
            for window in recogniser.windows(speech_regions(audio.samples)):
                encoded = recogniser.encode(window)
                originals = recogniser.decode(encoded, "transcribe")
                if window.language == "en" or not recogniser.multilingual:
                    english = [s.text.strip() for s in originals]
                else:
                    english = _assign(originals, recogniser.decode(encoded, "translate"))
                segments.extend(_segments(window, audio.offset, originals, english))
                if progress is not None:
                    progress(min(total, window.end / SAMPLE_RATE), total)
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
