"""Decode the audio track of any media file (video or audio-only) to 16 kHz mono float32.

Memory is bounded: samples are written into one buffer of ``max_seconds`` × 16,000
float32 values (230 MB for the default cap of one hour; untouched pages cost nothing),
and decoding stops at the cap. A longer file is transcribed up to the cap and says so.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from faceledger.errors import VideoError

SAMPLE_RATE = 16_000
MAX_AUDIO_SECONDS = 3600.0
"""Default cap on the audio decoded from one file (one hour: a 230 MB buffer)."""
MAX_PACKET_ERRORS = 20
"""Undecodable packets tolerated before decoding stops and what was read is kept."""

Source = str | os.PathLike[str] | bytes


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    """Audio as ``(n,)`` float32 samples in [-1, 1] at :data:`SAMPLE_RATE`, mono."""

    samples: npt.NDArray[np.float32]
    offset: float
    """Seconds from the start of the file to the first sample (audio that starts late)."""
    problem: str | None
    """Why only part of the audio was read (damage, or the duration cap), if it was."""

    @property
    def duration(self) -> float:
        """Seconds of audio decoded."""
        return len(self.samples) / SAMPLE_RATE


def _reason(exc: BaseException) -> str:
    if isinstance(exc, av.FFmpegError):
        return str(exc.strerror or exc).strip()
    return str(exc).strip() or type(exc).__name__


def _open(source: Source) -> Any:
    if isinstance(source, bytes):
        if not source:
            raise VideoError("the file is empty (0 bytes)")
        return av.open(io.BytesIO(source), mode="r")
    if os.path.isfile(source) and os.path.getsize(source) == 0:
        raise VideoError("the file is empty (0 bytes)")
    return av.open(os.fspath(source), mode="r")


def decode_audio(source: Source, *, max_seconds: float = MAX_AUDIO_SECONDS) -> DecodedAudio:
    """The first audio track of a file or of its bytes, resampled to 16 kHz mono float32.

    Raises:
        VideoError: the file is missing, empty, not a media file, or has no audio track.
    """
    if max_seconds <= 0:
        raise VideoError("the audio duration cap must be positive")
    try:
        container = _open(source)
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise VideoError(f"cannot open the file: {_reason(exc)}") from exc
    with container:
        if not container.streams.audio:
            raise VideoError("the file holds no audio track")
        stream = container.streams.audio[0]
        start = container.start_time / av.time_base if container.start_time else 0.0
        return _decode_stream(container, stream, start=start, max_seconds=max_seconds)


def _decode_stream(
    container: Any, stream: Any, *, start: float, max_seconds: float
) -> DecodedAudio:
    capacity = int(max_seconds * SAMPLE_RATE)
    buffer = np.empty(capacity, dtype=np.float32)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    filled, errors, offset = 0, 0, None
    problem: str | None = None

    def take(frames: list[Any]) -> bool:
        nonlocal filled
        for frame in frames:
            data = frame.to_ndarray().reshape(-1)
            n = min(len(data), capacity - filled)
            buffer[filled : filled + n] = data[:n]
            filled += n
            if filled >= capacity:
                return False
        return True

    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except (av.FFmpegError, ValueError) as exc:
                errors += 1
                if errors >= MAX_PACKET_ERRORS:
                    problem = f"decoding stopped after {errors} damaged packets ({_reason(exc)})"
                    break
                continue
            for frame in frames:
                if offset is None and frame.time is not None:
                    offset = max(0.0, float(frame.time) - start)
                if not take(resampler.resample(frame)):
                    problem = f"only the first {max_seconds:g} s of audio were transcribed"
                    break
            if problem is not None:
                break
        else:
            take(resampler.resample(None))
    except (av.FFmpegError, ValueError, OSError) as exc:  # demuxing a damaged container
        problem = f"the audio is damaged after {filled / SAMPLE_RATE:.1f} s ({_reason(exc)})"
    if filled == 0 and problem is not None and errors:
        raise VideoError(f"the audio track could not be decoded: {problem}")
    samples = buffer[:filled]
    np.clip(samples, -1.0, 1.0, out=samples)
    return DecodedAudio(samples=samples, offset=offset or 0.0, problem=problem)
