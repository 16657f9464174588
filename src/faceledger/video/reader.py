"""Video decoding with PyAV: frames sampled by timestamp, rotation applied, errors bounded.

Any container and codec FFmpeg reads is accepted. Frames are chosen on a time grid
(``fps`` samples per second, from presentation timestamps, so variable frame rates are
sampled evenly) or every frame is kept. The display matrix (rotation metadata) is
applied. A damaged file yields the frames that can be decoded; what could not be read is
reported in :attr:`VideoReader.errors` and the reason reading stopped early in
:attr:`VideoReader.error`. Decoding is bounded by a count of packet errors and an
optional wall-clock budget, so a hostile file cannot make it hang.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import av
import cv2
import numpy as np

from faceledger.errors import InvalidArgument, VideoError, VideoTooLarge
from faceledger.types import FloatArray, UInt8Image

DEFAULT_FPS = 4.0
MAX_PACKET_ERRORS = 50
"""Reading stops after this many packets fail to decode."""
SIGNATURE_SIZE = (64, 36)
TRUNCATION_SLACK = 1.0
"""Seconds of expected-but-missing video tolerated at the end before calling it truncated."""


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What the container says about the video stream."""

    container: str
    codec: str
    width: int
    """Coded width in pixels (before rotation)."""
    height: int
    duration: float | None
    """Seconds, from the container (None when unknown, e.g. a raw stream)."""
    fps: float | None
    """Average frame rate (None when unknown)."""


@dataclass(frozen=True, slots=True)
class SampledFrame:
    """One sampled frame, rotated for display and scaled to the analysis size."""

    index: int
    """Position among the sampled frames."""
    time: float
    """Seconds from the start of the video (the container's start time)."""
    image: UInt8Image
    """``(h, w, 3)`` RGB uint8."""
    scale: float
    """Image pixels per displayed source pixel (1.0 unless the frame was downscaled)."""
    signature: FloatArray
    """A small grey thumbnail ``(36, 64)`` float32 for cheap change detection."""


class TimeSampler:
    """Picks timestamps on a grid of ``rate`` per second (every timestamp when ``None``)."""

    def __init__(self, rate: float | None) -> None:
        if rate is not None and not (rate > 0 and math.isfinite(rate)):
            raise InvalidArgument(f"sampling rate must be positive, got {rate}")
        self.rate = rate
        self._next = -math.inf

    def take(self, t: float) -> bool:
        """Whether the frame at ``t`` seconds is sampled; timestamps must not decrease."""
        if self.rate is None:
            return True
        tolerance = 1e-3 / self.rate
        if t + tolerance < self._next:
            return False
        self._next = (math.floor((t + tolerance) * self.rate) + 1) / self.rate
        return True


def frame_signature(image: UInt8Image) -> FloatArray:
    """A ``(36, 64)`` float32 grey thumbnail of an RGB image."""
    small = cv2.resize(image, SIGNATURE_SIZE, interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    return np.asarray(grey, dtype=np.float32)


def signature_change(a: FloatArray, b: FloatArray) -> float:
    """Largest grey-level change (0..255) of any cell between two frame signatures.

    The largest, not the mean, so that a small caption appearing in a still shot counts.
    """
    return float(np.max(np.abs(a - b)))


def rotate_image(image: UInt8Image, rotation: float) -> UInt8Image:
    """Rotate counter-clockwise by ``rotation`` degrees, snapped to quarter turns."""
    turns = round(rotation / 90.0) % 4
    if turns == 0:
        return image
    return np.ascontiguousarray(np.rot90(image, turns))


def analysis_size(width: int, height: int, max_side: int | None) -> tuple[int, int, float]:
    """``(w, h, scale)`` with the long side at most ``max_side`` and even dimensions."""
    if max_side is None or max(width, height) <= max_side:
        return width, height, 1.0
    scale = max_side / max(width, height)
    w = max(2, round(width * scale / 2) * 2)
    h = max(2, round(height * scale / 2) * 2)
    return w, h, w / width


@dataclass(frozen=True, slots=True)
class MediaStreams:
    """Which streams a media file holds, and its duration from the container."""

    video: bool
    audio: bool
    duration: float | None
    """Seconds (None when the container does not say)."""
    width: int = 0
    """Coded width of the first video stream in pixels (0 without video)."""
    height: int = 0


def check_media_limits(
    streams: MediaStreams, *, max_pixels: int | None, max_seconds: float | None
) -> None:
    """Refuse a file whose headers claim more pixels per frame or more seconds than allowed.

    Runs on what :func:`probe_streams` read from the headers, before any frame is decoded,
    so a 12000x12000 video costs nothing. ``None`` (or 0) disables a cap.

    Raises:
        VideoTooLarge: the frame size or the duration is over its cap.
    """
    pixels = streams.width * streams.height
    if max_pixels and pixels > max_pixels:
        raise VideoTooLarge(
            f"the video's frames are {streams.width}x{streams.height} "
            f"({pixels / 1e6:.1f} Mpx), over the cap of {max_pixels / 1e6:.1f} Mpx",
            width=streams.width,
            height=streams.height,
            max_pixels=max_pixels,
        )
    if max_seconds and streams.duration is not None and streams.duration > max_seconds:
        raise VideoTooLarge(
            f"the file lasts {streams.duration:.0f} s, over the cap of {max_seconds:g} s",
            seconds=round(streams.duration, 3),
            max_seconds=max_seconds,
        )


def probe_streams(path: str | os.PathLike[str]) -> MediaStreams:
    """Open a media file's header only: does it hold video, audio, and how long is it.

    Raises:
        VideoError: the file is missing, empty (0 bytes) or not a media file.
    """
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise VideoError("the file is empty (0 bytes)")
    try:
        with av.open(os.fspath(path), mode="r") as container:
            duration = container.duration
            video = container.streams.video
            ctx = video[0].codec_context if video else None
            return MediaStreams(
                video=bool(video),
                audio=bool(container.streams.audio),
                duration=duration / av.time_base if duration else None,
                width=int(ctx.width or 0) if ctx is not None else 0,
                height=int(ctx.height or 0) if ctx is not None else 0,
            )
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise VideoError(f"cannot open the video: {_reason(exc)}") from exc


class VideoReader:
    """Sampled, rotated RGB frames of a video file.

    Raises:
        VideoError: the file cannot be opened or holds no video stream.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fps: float | None = DEFAULT_FPS,
        max_side: int | None = None,
        max_packet_errors: int = MAX_PACKET_ERRORS,
        time_budget: float | None = None,
        max_seconds: float | None = None,
    ) -> None:
        self.sampler = TimeSampler(fps)
        self.max_seconds = max_seconds
        """Reading stops past this many seconds: the cap on duration for a stream whose
        headers do not state it (a file that states it is refused before, by
        :func:`check_media_limits`)."""
        self.max_side = max_side
        self.max_packet_errors = max_packet_errors
        self.time_budget = time_budget
        self.errors: list[str] = []
        """Problems met while reading (packets that failed, corrupt frames, early end)."""
        self.error: VideoError | None = None
        """Why reading stopped before the end of the video, if it did."""
        self.last_time: float | None = None
        """Timestamp of the last decoded frame (seconds)."""
        self.rotation = 0
        self.decoded = 0
        self.sampled = 0
        try:
            self._container: Any = av.open(os.fspath(path), mode="r")
        except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
            raise VideoError(f"cannot open the video: {_reason(exc)}") from exc
        if not self._container.streams.video:
            self._container.close()
            raise VideoError("the file holds no video stream")
        self._stream: Any = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self.info = self._describe()
        start = self._container.start_time
        self._origin: float | None = start / av.time_base if start is not None else None

    def _describe(self) -> VideoInfo:
        ctx = self._stream.codec_context
        duration = self._container.duration
        rate = self._stream.average_rate or self._stream.guessed_rate
        return VideoInfo(
            container=str(self._container.format.name),
            codec=str(ctx.name),
            width=int(ctx.width),
            height=int(ctx.height),
            duration=duration / av.time_base if duration else None,
            fps=float(rate) if rate else None,
        )

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the file and the decoder."""
        self._container.close()

    def __iter__(self) -> Iterator[SampledFrame]:
        """Decode the video once, yielding the sampled frames in time order."""
        deadline = None if self.time_budget is None else time.monotonic() + self.time_budget
        failed = 0
        packets = self._container.demux(self._stream)
        while True:
            if deadline is not None and time.monotonic() > deadline:
                self._stop(f"decoding took longer than {self.time_budget:g} s")
                break
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.FFmpegError as exc:
                self._stop(f"reading stopped at a damaged part of the file: {_reason(exc)}")
                yield from self._sampled(self._flush())
                break
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:
                failed += 1
                if failed == 1 or failed == self.max_packet_errors:
                    self.errors.append(f"packet at {self._when()}: {_reason(exc)}")
                if failed >= self.max_packet_errors:
                    self._stop(f"{failed} packets could not be decoded: the file is damaged")
                    break
                continue
            yield from self._sampled(frames)
            if (
                self.max_seconds
                and self.last_time is not None
                and self.last_time > self.max_seconds
            ):
                self._stop(f"reading stopped at the cap of {self.max_seconds:g} s")
                break
        if self.error is None:
            self._check_complete(failed)

    def _flush(self) -> list[Any]:
        """Frames still buffered in the decoder after reading stopped."""
        try:
            return list(self._stream.codec_context.decode(None))
        except av.FFmpegError:
            return []

    def _sampled(self, frames: list[Any]) -> Iterator[SampledFrame]:
        for frame in frames:
            sampled = self._sample(frame)
            if sampled is not None:
                yield sampled

    def _sample(self, frame: Any) -> SampledFrame | None:
        t = self._time(frame)
        self.decoded += 1
        if frame.is_corrupt and not any("corrupt" in e for e in self.errors):
            self.errors.append(f"corrupt frame at {t:.2f} s (concealed by the decoder)")
        if not self.sampler.take(t):
            return None
        rotation = int(frame.rotation or 0)
        self.rotation = rotation
        upright = rotation % 180 == 0
        display_w, display_h = (
            (frame.width, frame.height) if upright else (frame.height, frame.width)
        )
        w, h, scale = analysis_size(display_w, display_h, self.max_side)
        target = (w, h) if upright else (h, w)
        try:
            if target != (frame.width, frame.height):
                frame = frame.reformat(width=target[0], height=target[1], format="rgb24")
            rgb = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
        except (av.FFmpegError, ValueError) as exc:
            self.errors.append(f"frame at {t:.2f} s could not be converted: {_reason(exc)}")
            return None
        image = rotate_image(rgb, rotation)
        self.sampled += 1
        return SampledFrame(self.sampled - 1, t, image, scale, frame_signature(image))

    def _time(self, frame: Any) -> float:
        raw = frame.time
        if raw is None:  # no timestamp: continue from the last one at the stream's rate
            step = 1.0 / self.info.fps if self.info.fps else 0.04
            t = 0.0 if self.last_time is None else self.last_time + step
        else:
            if self._origin is None:
                self._origin = float(raw)
            t = max(0.0, float(raw) - self._origin)
            if self.last_time is not None and t < self.last_time:
                t = self.last_time  # a reordered or repeated timestamp
        self.last_time = t
        return t

    def _when(self) -> str:
        return "the start" if self.last_time is None else f"{self.last_time:.2f} s"

    def _stop(self, message: str) -> None:
        self.error = VideoError(message, at=self.last_time)
        self.errors.append(message)

    def _check_complete(self, failed: int) -> None:
        if failed:
            self.errors.append(f"{failed} packet(s) could not be decoded")
        duration = self.info.duration
        if self.decoded == 0:
            self._stop("no frame could be decoded")
        elif duration is not None and (self.last_time or 0.0) + TRUNCATION_SLACK < duration:
            self._stop(
                f"the video ends at {self.last_time:.2f} s of {duration:.2f} s: "
                "the file is truncated or damaged"
            )


def _reason(exc: BaseException) -> str:
    """A short reason from a PyAV/OS error (without the file path)."""
    if isinstance(exc, av.FFmpegError):
        return str(exc.strerror or exc).strip()
    return str(exc).strip() or type(exc).__name__


def time_intervals(
    times: list[float], *, period: float, max_gap: float, end: float | None = None
) -> list[tuple[float, float]]:
    """Runs of sample times as ``[start, end]`` intervals in seconds.

    Consecutive times at most ``max_gap`` apart form one run; a run lasts from its first
    sample until one ``period`` after its last (the next sample would have seen the
    change), clipped to ``end``.
    """
    runs: list[tuple[float, float]] = []
    for t in sorted(times):
        if runs and t - runs[-1][1] <= max_gap:
            runs[-1] = (runs[-1][0], t)
        else:
            runs.append((t, t))
    out = []
    for start, last in runs:
        stop = round(last + period, 3)
        if end is not None:
            stop = min(stop, max(round(end, 3), round(last, 3)))
        out.append((round(start, 3), stop))
    return out


def decode_ahead(reader: VideoReader, *, depth: int = 8) -> Generator[SampledFrame, None, None]:
    """The reader's frames, decoded ahead on a background thread through a bounded queue.

    Decoding (FFmpeg releases the GIL) overlaps with whatever the consumer does; errors
    of the decoding thread are raised in the consumer. Closing the generator early stops
    the thread.
    """
    frames: queue.Queue[SampledFrame | BaseException | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: SampledFrame | BaseException | None) -> None:
        while not stop.is_set():
            try:
                frames.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def decode() -> None:
        try:
            for frame in reader:
                put(frame)
                if stop.is_set():
                    return
        except BaseException as exc:  # handed over to the consuming thread
            put(exc)
        finally:
            put(None)

    thread = threading.Thread(target=decode, name="faceledger-video-decode", daemon=True)
    thread.start()
    try:
        while (item := frames.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
