"""Video indexing: who appears when (identified or "unknown person N"), the text on screen,
and what is said.

The pipeline overlaps its stages: a decode thread feeds sampled frames through a bounded
queue to a pool of inference threads (detection plus embedding of every face of a
frame, in one batch; OCR on its own, sparser grid), while the calling thread consumes
results in time order, tracks faces and merges text. Frames that have not changed since
the last analysed one reuse its faces (or text) instead of running the models again.
After the last frame every track is identified once against the collection (one audited
search for the whole video), tracks are linked into people, and the people without an
enrolled identity are numbered "unknown person 1, 2, ..." in order of appearance.
Then the audio track is transcribed by the transcriber the caller passes in
(:mod:`faceledger.video.soundtrack`); an audio-only file has that pass alone.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import cv2
import numpy as np

from faceledger.engine import Engine
from faceledger.errors import InvalidArgument, VideoError
from faceledger.models.calibration import Calibration
from faceledger.search.ranking import Candidate
from faceledger.speech.types import TranscriptSegment
from faceledger.types import Face, FloatArray, UInt8Image
from faceledger.video.ocr import DEFAULT_OCR_FPS, TextItem, TextLine, TextReader, TextTimeline
from faceledger.video.reader import (
    DEFAULT_FPS,
    SampledFrame,
    TimeSampler,
    VideoInfo,
    VideoReader,
    check_media_limits,
    decode_ahead,
    probe_streams,
    signature_change,
    time_intervals,
)
from faceledger.video.soundtrack import SPEECH_UNITS, Speech, Transcriber, run_speech
from faceledger.video.tracker import FaceTracker, TrackerOptions, TrackSummary, link_tracks

Progress = Callable[[int, int], None]
Identify = Callable[[FloatArray, dict[str, Any]], list[list[Candidate]]]
"""Identifies track templates ``(n, d)`` (with what to record about the video) against a
collection, returning each template's ranked candidates."""


UNCHANGED_FACES = 4.0
"""Largest cell change (grey levels) under which a frame is identical for face detection."""
UNCHANGED_TEXT = 12.0
"""Largest cell change under which a frame's text is taken to be unchanged."""
DIFFERENT_FMR = 0.03
"""Faces less similar than the threshold at this false match rate never share a track."""


@dataclass(frozen=True, slots=True)
class IndexOptions:
    """How a video is sampled and how people are decided."""

    fps: float | None = DEFAULT_FPS
    """Face sampling rate per second; None analyses every frame."""
    ocr: bool = True
    ocr_fps: float = DEFAULT_OCR_FPS
    max_fmr: float = 1e-4
    """Largest false match rate of an identification."""
    link_fmr: float = 1e-3
    """False match rate at which unidentified tracks are grouped into one unknown person."""
    top: int = 3
    """Candidates kept per person for review."""
    max_side: int = 1280
    """Frames are analysed with their long side scaled down to this."""
    min_face: float = 16.0
    """Faces smaller than this (shorter box side, pixels of the analysed frame) are ignored."""
    person_face: float = 32.0
    """Tracks whose typical face (75th percentile of the shorter box side, analysed-frame
    pixels) is smaller are too small to recognise: neither identified nor reported."""
    min_seconds: float = 0.4
    """People seen for less than this (first to last sighting, summed over their
    appearances) are not reported."""
    best_faces: int = 5
    """Best-quality faces per track averaged into the track's embedding."""
    max_gap: float = 1.0
    """Seconds without a sighting that split a person's appearances into two intervals."""
    time_budget: float | None = None
    """Wall-clock seconds allowed for decoding (None: unbounded)."""
    speech: bool = True
    """Transcribe (and translate) what is said."""
    hotwords: str | None = None
    """Words to expect in the speech (names, jargon), given to the speech model as hints."""
    max_pixels: int | None = None
    """Largest frame (width x height, from the headers) indexed; None: any size."""
    max_seconds: float | None = None
    """Longest file (the container's duration) indexed; None: any length."""

    def __post_init__(self) -> None:
        if self.fps is not None and not 0 < self.fps <= 120:
            raise InvalidArgument("fps must be in (0, 120]")
        if not 0 < self.ocr_fps <= 30:
            raise InvalidArgument("ocr_fps must be in (0, 30]")
        if self.best_faces < 1:
            raise InvalidArgument("best_faces must be at least 1")


@dataclass(frozen=True, slots=True)
class PersonAppearance:
    """One person of the video: identity or unknown label, evidence and when they appear."""

    label: str
    person: str | None
    """The enrolled person, or None for an unknown person."""
    confidence: float | None
    """Identified: similarity to the enrolled person. Unknown: the mean similarity between
    their tracks (None for a single track)."""
    fmr: float | None
    """Estimated false match rate at ``confidence``."""
    intervals: list[tuple[float, float]]
    seconds: float
    """Total time on screen (sum of the intervals)."""
    thumbnail: str
    """Best face crop, JPEG, base64."""
    thumbnail_time: float
    box: list[float]
    """The thumbnail face's box ``[x1, y1, x2, y2]`` in source pixels."""
    tracks: int
    candidates: list[Candidate] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class VideoIndex:
    """The index of one video or audio file: people, on-screen text, speech, and what could
    not be read (an audio-only file has no frames: ``width`` and ``height`` are 0)."""

    collection: str
    video_sha256: str
    duration: float | None
    width: int
    height: int
    rotation: int
    fps: float | None
    sample_fps: float | None
    frames_sampled: int
    frames_analysed: int
    people: list[PersonAppearance]
    text: list[TextItem]
    complete: bool
    errors: list[str]
    error: dict[str, Any] | None
    max_fmr: float
    threshold: float
    elapsed: float
    transcript: list[TranscriptSegment] = field(default_factory=list)
    """What is said, in time order (start, end, language, text, English text, confidence)."""
    speech_problem: str | None = None
    """Why the transcript is empty or partial (no or damaged audio track, silence, the
    model failed); None when speech was transcribed or not asked for."""


def jpeg_base64(image: UInt8Image | None) -> str:
    """An RGB image as base64 JPEG text (empty for None)."""
    if image is None:
        return ""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return base64.b64encode(bytes(data)).decode("ascii") if ok else ""


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file (the ledger keeps this, never the video)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(slots=True)
class _Work:
    frame: SampledFrame
    faces: Future[list[Face]] | None
    text: Future[list[TextLine]] | None


@dataclass(slots=True)
class _Run:
    """One indexing run: submits frames to the pool, consumes results in time order."""

    options: IndexOptions
    tracker: FaceTracker
    timeline: TextTimeline | None
    tracks: dict[int, TrackSummary] = field(default_factory=dict)
    sampled: int = 0
    analysed: int = 0

    def pump(
        self,
        reader: VideoReader,
        embed: Callable[[UInt8Image], list[Face]],
        ocr: TextReader | None,
        *,
        workers: int,
        expected: int,
        progress: Progress | None,
    ) -> None:
        """Decode ahead, analyse on ``workers`` threads, and consume results in order."""
        face_sampler, text_sampler = (
            TimeSampler(self.options.fps),
            TimeSampler(self.options.ocr_fps),
        )
        pending: deque[_Work] = deque()
        last_faces: tuple[FloatArray, Future[list[Face]]] | None = None
        last_text: tuple[FloatArray, Future[list[TextLine]]] | None = None
        with ThreadPoolExecutor(max(1, workers), thread_name_prefix="faceledger-video") as pool:
            frames = decode_ahead(reader)
            try:
                for frame in frames:
                    work = _Work(frame, None, None)
                    if face_sampler.take(frame.time):
                        if last_faces and _same(last_faces[0], frame, UNCHANGED_FACES):
                            work.faces = last_faces[1]
                        else:
                            work.faces = pool.submit(embed, frame.image)
                            last_faces = (frame.signature, work.faces)
                            self.analysed += 1
                    if ocr is not None and text_sampler.take(frame.time):
                        if last_text and _same(last_text[0], frame, UNCHANGED_TEXT):
                            work.text = last_text[1]
                        else:
                            work.text = pool.submit(ocr.read, frame.image, scale=frame.scale)
                            last_text = (frame.signature, work.text)
                    pending.append(work)
                    while len(pending) > 2 * workers + 2:
                        self.consume(pending.popleft(), expected, progress)
                while pending:
                    self.consume(pending.popleft(), expected, progress)
            finally:
                frames.close()  # stops the decode thread before the reader closes
                for work in pending:
                    for future in (work.faces, work.text):
                        if future is not None:
                            future.cancel()
        if progress is not None:
            progress(self.sampled, self.sampled)

    def consume(self, work: _Work, expected: int, progress: Progress | None) -> None:
        """Track the faces and merge the text of the next frame in time order."""
        frame = work.frame
        self.sampled += 1
        if work.faces is not None:
            faces = work.faces.result()
            boxes = [[f.box.x1, f.box.y1, f.box.x2, f.box.y2] for f in faces]
            ids = self.tracker.update(
                frame.time,
                np.array(boxes, np.float32).reshape(-1, 4),
                np.array([f.score for f in faces], np.float32),
                np.stack([f.embedding for f in faces if f.embedding is not None])
                if faces
                else None,
            )
            for face, track_id in zip(faces, ids, strict=True):
                if track_id >= 0:
                    track = self.tracks.setdefault(track_id, TrackSummary(self.options.best_faces))
                    track.add(frame.index, frame.time, face, frame.image, frame.scale)
        if work.text is not None and self.timeline is not None:
            self.timeline.add(frame.time, work.text.result())
        if progress is not None:
            progress(self.sampled, max(expected, self.sampled + 1))


def _same(signature: FloatArray, frame: SampledFrame, threshold: float) -> bool:
    return signature_change(signature, frame.signature) < threshold


def index_video(
    path: str | os.PathLike[str],
    *,
    engine: Engine,
    collection: str,
    identify: Identify,
    options: IndexOptions | None = None,
    progress: Progress | None = None,
    text_reader: TextReader | None = None,
    transcriber: Transcriber | None = None,
) -> VideoIndex:
    """Index a video or audio file: its people (identified by ``identify``), its on-screen
    text, and (with ``transcriber``) what is said.

    ``engine`` embeds the faces, in the embedding space of ``collection``; ``identify`` is
    called once, after the last frame, with every track's template (the caller records
    it as one search). An audio-only file (flac, mp3, wav, m4a, ...) gives a transcript
    only. ``progress`` is called with ``(units done, expected total)``: one unit per
    sampled frame, then :data:`~faceledger.video.soundtrack.SPEECH_UNITS` per second of
    audio.

    Raises:
        InvalidArgument: ``options.speech`` without a ``transcriber``.
        VideoError: nothing in the file can be read (a partly readable file gives a
            partial index whose ``error`` says what was lost; unreadable or silent audio
            only sets ``speech_problem``).
    """
    started = time.perf_counter()
    opts = options or IndexOptions()
    if opts.speech and transcriber is None:
        raise InvalidArgument("indexing speech needs a transcriber (or speech off)")
    streams = probe_streams(path)
    check_media_limits(streams, max_pixels=opts.max_pixels, max_seconds=opts.max_seconds)
    speaking = transcriber is not None and opts.speech and streams.audio
    if not streams.video and not speaking:
        raise VideoError(
            "the file holds only audio: index it with speech on"
            if streams.audio
            else "the file holds no video or audio stream"
        )
    cal = engine.pack.require_calibration()
    digest = file_sha256(path)
    units = round(SPEECH_UNITS * (streams.duration or 0.0)) if speaking else 0
    frames: _Frames | None = None
    unreadable: VideoError | None = None
    if streams.video:
        try:
            frames = _frame_pass(path, engine, opts, text_reader, progress, extra=units)
        except VideoError as exc:
            if not speaking:
                raise
            unreadable = exc  # the speech may still be read
    speech = Speech([], "the file holds no audio track" if opts.speech else None, 0.0)
    if transcriber is not None and speaking:
        base = frames.run.sampled if frames else 0

        def speech_progress(fraction: float) -> None:
            if progress is not None:
                progress(base + round(units * fraction), base + units)

        speech = run_speech(path, transcriber, progress=speech_progress)
        if frames is None and not speech.segments and speech.seconds == 0:
            raise speech.error or unreadable or VideoError(speech.problem or "no audio")
    if progress is not None and speaking:
        done = (frames.run.sampled if frames else 0) + units
        progress(done, done)
    index = VideoIndex(
        collection=collection,
        video_sha256=digest,
        duration=round(streams.duration or speech.seconds, 3),
        width=0,
        height=0,
        rotation=0,
        fps=None,
        sample_fps=None,
        frames_sampled=0,
        frames_analysed=0,
        people=[],
        text=[],
        complete=unreadable is None,
        errors=[] if unreadable is None else [unreadable.message],
        error=None if unreadable is None else unreadable.to_dict(),
        max_fmr=opts.max_fmr,
        threshold=round(cal.threshold_for(opts.max_fmr), 5),
        elapsed=0.0,
        transcript=speech.segments,
        speech_problem=speech.problem,
    )
    if frames is not None:
        index = _with_frames(index, frames, identify, cal, opts)
    return replace(index, elapsed=round(time.perf_counter() - started, 3))


def _with_frames(
    index: VideoIndex, frames: _Frames, identify: Identify, cal: Calibration, opts: IndexOptions
) -> VideoIndex:
    """``index`` with what the frame pass saw: people (identified now), text, geometry."""

    def identify_tracks(templates: FloatArray) -> list[list[Candidate]]:
        about = {"video_sha256": index.video_sha256, "tracks": len(templates), "fps": opts.fps}
        return identify(templates, about)

    info, reader, run = frames.info, frames.reader, frames.run
    period = 1.0 / opts.fps if opts.fps else 1.0 / (info.fps or 25.0)
    turned = reader.rotation % 180 != 0
    return replace(
        index,
        duration=None if info.duration is None else round(info.duration, 3),
        width=info.height if turned else info.width,
        height=info.width if turned else info.height,
        rotation=reader.rotation,
        fps=info.fps,
        sample_fps=opts.fps,
        frames_sampled=run.sampled,
        frames_analysed=run.analysed,
        people=_people(run, identify_tracks, cal, period=period, end=info.duration),
        text=run.timeline.items(end=info.duration) if run.timeline else [],
        complete=reader.error is None,
        errors=list(reader.errors),
        error=None if reader.error is None else reader.error.to_dict(),
    )


@dataclass(frozen=True, slots=True)
class _Frames:
    """The frame pass: faces tracked and text merged, and how reading went."""

    run: _Run
    reader: VideoReader
    info: VideoInfo


def _frame_pass(
    path: str | os.PathLike[str],
    engine: Engine,
    opts: IndexOptions,
    text_reader: TextReader | None,
    progress: Progress | None,
    *,
    extra: int,
) -> _Frames:
    """Decode, detect, embed, track and read text; ``extra`` progress units follow.

    Raises:
        VideoError: the video cannot be opened or holds no decodable frame.
    """
    cal = engine.pack.require_calibration()
    rate = None if opts.fps is None else max(opts.fps, opts.ocr_fps if opts.ocr else 0.0)
    thresholds = TrackerOptions(
        same_face=cal.threshold_for(opts.link_fmr), different_face=cal.threshold_for(DIFFERENT_FMR)
    )
    timeline = TextTimeline(period=1.0 / opts.ocr_fps) if opts.ocr else None
    run = _Run(opts, FaceTracker(thresholds), timeline)
    ocr = (text_reader or TextReader()) if opts.ocr else None

    def frame_progress(done: int, total: int) -> None:
        if progress is not None:
            progress(done, total + extra)

    with VideoReader(
        path,
        fps=rate,
        max_side=opts.max_side,
        time_budget=opts.time_budget,
        max_seconds=opts.max_seconds,
    ) as reader:
        info = reader.info
        per_second = rate or info.fps
        expected = int(info.duration * per_second) + 1 if info.duration and per_second else 0
        embed = partial(engine.embed, min_face_size=opts.min_face)
        run.pump(
            reader, embed, ocr, workers=engine.workers, expected=expected, progress=frame_progress
        )
    if run.sampled == 0:
        raise reader.error or VideoError("the video holds no decodable frame")
    return _Frames(run, reader, info)


def _people(
    run: _Run,
    identify: Callable[[FloatArray], list[list[Candidate]]],
    cal: Calibration,
    *,
    period: float,
    end: float | None,
) -> list[PersonAppearance]:
    """Identify every track once, link tracks into people, and describe each person."""
    opts = run.options
    # Faces too small to recognise are neither identified nor grouped into people.
    tracks = [t for _, t in sorted(run.tracks.items()) if t.size >= opts.person_face]
    dim = tracks[0].best[0][1].shape[0] if tracks else 0
    empty = np.zeros((0, dim), np.float32)
    templates = np.stack([t.template() for t in tracks]) if tracks else empty
    found = identify(templates)
    names = [c[0].person if c else None for c in found]
    frames = [set(t.frames) for t in tracks]
    threshold = cal.threshold_for(opts.link_fmr)
    people: list[PersonAppearance] = []
    for group in link_tracks(templates, frames, names, threshold=threshold):
        times = sorted(t for i in group for t in tracks[i].times)
        seen = time_intervals(times, period=0.0, max_gap=opts.max_gap)
        if sum(b - a for a, b in seen) < opts.min_seconds:
            continue
        intervals = time_intervals(times, period=period, max_gap=opts.max_gap, end=end)
        seconds = round(sum(b - a for a, b in intervals), 3)
        named = [i for i in group if names[i] is not None]
        candidates = found[max(named, key=lambda i: found[i][0].similarity)] if named else []
        confidence: float | None = candidates[0].similarity if candidates else None
        fmr: float | None = candidates[0].fmr if candidates else None
        if not candidates and len(group) > 1:
            sims = templates[group] @ templates[group].T
            confidence = round(float(sims[np.triu_indices(len(group), 1)].mean()), 5)
            fmr = cal.fmr_at(confidence)
        best = tracks[max(group, key=lambda i: tracks[i].crop_quality)]
        unknown = sum(1 for p in people if p.person is None) + 1
        people.append(
            PersonAppearance(
                label=str(candidates[0].person) if candidates else f"unknown person {unknown}",
                person=candidates[0].person if candidates else None,
                confidence=confidence,
                fmr=fmr,
                intervals=intervals,
                seconds=seconds,
                thumbnail=jpeg_base64(best.crop),
                thumbnail_time=round(best.crop_time, 3),
                box=best.crop_box,
                tracks=len(group),
                candidates=candidates,
            )
        )
    return people
