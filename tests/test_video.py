"""Video indexing: reader, tracker, OCR timeline, indexer on real clips, CLI and job API."""

from __future__ import annotations

import base64
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import av
import cv2
import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image, ImageDraw, ImageFont
from pydantic import TypeAdapter
from typer.testing import CliRunner

from faceledger.api.app import create_app
from faceledger.cli.context import set_data_dir
from faceledger.cli.video import video_app
from faceledger.config import Settings
from faceledger.errors import InvalidArgument, PurposeRequired, VideoError
from faceledger.ledger.keys import Role
from faceledger.service import FaceService
from faceledger.video import (
    FaceTracker,
    IndexOptions,
    TextLine,
    TextReader,
    TextTimeline,
    TimeSampler,
    TrackerOptions,
    VideoIndex,
    VideoReader,
    link_tracks,
)
from faceledger.video.ocr import blank_runs, restore_spaces
from faceledger.video.reader import rotate_image, time_intervals
from tests.media_fixtures import (
    JFK,
    SPEECH_VIDEO_FACE,
    SPEECH_VIDEO_TEXT,
    silent_audio,
    speech_video,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
HAMILTON = "face_recognition_examples/video/short_hamilton_clip.mp4"
PEDESTRIANS = "facenet_pytorch/video/video.mp4"
# Ground truth of the Hamilton clip, checked by eye: Lin-Manuel Miranda sings on stage
# (0.8-1.5 s, small) and in close-up (3.7-8.0 s); Alex Lacamoire is at the piano and in
# profile close-up; the audience from 8.0 s includes Barack Obama (the README names only
# the first two, but Obama is plainly in the audience shot).
LIN_ON_SCREEN = [(0.8, 1.55), (3.6, 8.05)]
IN_CLIP = {"lin_manuel_miranda", "alex_lacamoire", "barack_obama"}
TEXT_LINES = [  # (text, first visible second, first second gone, y)
    ("BREAKING NEWS", 0, 3, 70),
    ("Hello world 2024", 2, 5, 190),
    ("faceledger video test", 4, 6, 300),
]


def write_video(
    path: Path,
    frames: Iterator[np.ndarray] | list[np.ndarray],
    *,
    fps: int = 10,
    codec: str = "libx264",
    rotation: int | None = None,
) -> Path:
    """Encode RGB frames with PyAV (H.264 or MPEG-4 part 2) into ``path``."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.pix_fmt = "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, rgb in enumerate(frames):
            if i == 0:
                stream.height, stream.width = rgb.shape[:2]
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def text_frames(seconds: int = 6, fps: int = 10) -> Iterator[np.ndarray]:
    for i in range(seconds * fps):
        t = i / fps
        img = np.full((360, 640, 3), 30, np.uint8)
        cv2.rectangle(img, (500, 20), (620, 60), (90, 40, 40), -1)  # a static logo
        for text, start, stop, y in TEXT_LINES:
            if start <= t < stop:
                cv2.putText(img, text, (30, y), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 2)
        yield img


def moving_frames(n: int = 30) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(5)
    for i in range(n):  # a ball on fresh noise each frame (so every frame costs bytes)
        img = rng.integers(0, 60, (120, 160, 3), dtype=np.uint8)
        cv2.circle(img, (20 + 4 * i, 60), 12, (200, 180, 40), -1)
        yield img


@pytest.fixture(scope="module")
def text_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "text.mp4", text_frames())


@pytest.fixture(scope="module")
def stream_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3 s Matroska file: a truncated copy is readable up to the cut, and its header
    still states the full duration."""
    path = tmp_path_factory.mktemp("video") / "moving.mkv"
    return write_video(path, moving_frames(30), codec="mpeg4")


@pytest.fixture(scope="module")
def text_reader() -> TextReader:
    return TextReader()


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Iterator[FaceService]:
    """The six people of face_recognition_examples and the eight of faceapi_bbt."""
    svc = FaceService(Settings(data=tmp_path_factory.mktemp("enrolled") / "data"))
    svc.create_collection("people", require_consent=False)
    for tree in ("face_recognition_examples/identities", "faceapi_bbt/identities"):
        svc.enroll_folder("people", faces_dir / tree, consent="test", largest=True)
    yield svc
    svc.close()


# -- pure parts --------------------------------------------------------------------------
def test_time_sampler_follows_timestamps_not_frame_counts() -> None:
    sampler = TimeSampler(4.0)
    times = [i / 29.97 for i in range(300)]  # 10 s at 29.97 fps
    taken = [t for t in times if sampler.take(t)]
    assert len(taken) == 40
    assert all(0.2 < b - a < 0.3 for a, b in itertools.pairwise(taken))
    jittery = TimeSampler(2.0)  # variable frame rate: a burst, then a gap
    vfr = [0.0, 0.01, 0.02, 0.03, 0.9, 1.6, 1.61, 2.5]
    assert [t for t in vfr if jittery.take(t)] == [0.0, 0.9, 1.6, 2.5]
    assert all(TimeSampler(None).take(t) for t in vfr)
    with pytest.raises(InvalidArgument):
        TimeSampler(0.0)


def test_time_intervals_hold_each_sample_for_one_period() -> None:
    assert time_intervals([0.0, 0.25, 0.5, 2.0], period=0.25, max_gap=1.0) == [
        (0.0, 0.75),
        (2.0, 2.25),
    ]
    assert time_intervals([9.9], period=0.25, max_gap=1.0, end=10.0) == [(9.9, 10.0)]
    assert time_intervals([], period=1.0, max_gap=1.0) == []


def test_rotate_image_turns_counter_clockwise() -> None:
    img = np.zeros((2, 3, 3), np.uint8)
    img[0] = 255  # top row white
    turned = rotate_image(img, 90)
    assert turned.shape == (3, 2, 3) and turned[:, 0].min() == 255  # top became left
    assert rotate_image(img, -90)[:, -1].min() == 255
    assert rotate_image(img, 0) is img


def options(**kw: float) -> TrackerOptions:
    return TrackerOptions(same_face=0.25, different_face=0.15, **kw)


def unit(v: list[float]) -> np.ndarray:
    a = np.array(v, np.float32)
    return a / np.linalg.norm(a)


def test_tracker_keeps_ids_through_motion_and_crossing() -> None:
    tracker = FaceTracker(options())
    a, b = unit([1, 0, 0, 0]), unit([0, 1, 0, 0])
    ids = []
    for step in range(8):  # two faces walk towards each other and cross
        x_a, x_b = 10 + 12 * step, 110 - 12 * step
        boxes = np.array([[x_a, 10, x_a + 30, 40], [x_b, 12, x_b + 30, 42]], np.float32)
        ids.append(tracker.update(step * 0.25, boxes, np.array([0.9, 0.9]), np.stack([a, b])))
    assert all(frame == ids[0] for frame in ids) and len(set(ids[0])) == 2


def test_tracker_splits_on_appearance_and_ends_lost_tracks() -> None:
    tracker = FaceTracker(options(max_lost=1.0))
    box = np.array([[10, 10, 50, 50]], np.float32)
    score = np.array([0.9], np.float32)
    first = tracker.update(0.0, box, score, unit([1, 0, 0])[None])
    other = tracker.update(0.25, box, score, unit([0, 1, 0])[None])  # same place, new face
    assert first != other
    weak = tracker.update(0.5, box, np.array([0.55], np.float32), unit([0, 1, 0])[None])
    assert weak == other  # a weak detection extends a live track (ByteTrack's 2nd stage)
    assert tracker.update(0.75, box, np.array([0.55], np.float32), None) == other
    assert tracker.update(3.0, box, score, None) not in (first, other)  # lost too long
    assert tracker.update(3.0, np.zeros((0, 4), np.float32), np.zeros(0, np.float32)) == []
    with pytest.raises(InvalidArgument):
        tracker.update(2.0, box, score, None)


def test_tracker_reattaches_a_fast_face_by_appearance() -> None:
    tracker = FaceTracker(options())
    emb = unit([0.2, 1, 0])[None]
    score = np.array([0.9], np.float32)
    first = tracker.update(0.0, np.array([[0, 0, 40, 40]], np.float32), score, emb)
    jumped = tracker.update(0.25, np.array([[90, 0, 130, 40]], np.float32), score, emb)
    assert first == jumped


def test_link_tracks_never_merges_co_occurring_or_differently_named_tracks() -> None:
    a, b = unit([1, 0.1, 0]), unit([1, 0, 0.1])
    templates = np.stack([a, b, a, unit([0, 0, 1])])
    frames = [{0, 1}, {1, 2}, {5, 6}, {7}]
    groups = link_tracks(templates, frames, [None] * 4, threshold=0.5)
    assert [0, 1] not in groups  # tracks 0 and 1 share frame 1
    assert {tuple(g) for g in groups} == {(0, 2), (1,), (3,)}
    named = link_tracks(templates, frames, ["x", None, "y", None], threshold=0.5)
    assert [0, 2] not in named and [3] in named


def test_text_timeline_merges_readings_into_lines_with_intervals() -> None:
    timeline = TextTimeline(period=1.0)
    box = (10.0, 10.0, 200.0, 40.0)
    timeline.add(0.0, [TextLine("BREAKING NEWS", 0.99, box)])
    timeline.add(1.0, [TextLine("BREAKINGNEWS", 0.95, box), TextLine("Hello", 0.9, box)])
    timeline.add(2.0, [TextLine("Hello", 0.9, box)])
    timeline.add(3.0, [])
    timeline.add(4.0, [TextLine("BREAK1NG NEWS", 0.7, box)])
    items = {i.text: i for i in timeline.items(end=4.5)}
    assert set(items) == {"BREAKING NEWS", "Hello"}
    assert items["BREAKING NEWS"].intervals == [(0.0, 2.0), (4.0, 4.5)]
    assert items["Hello"].intervals == [(1.0, 3.0)]
    with pytest.raises(InvalidArgument):
        timeline.add(4.0, [])


def test_restore_spaces_puts_a_space_at_each_wide_gap_only() -> None:
    # "AB CD 12": letter gaps of 3 px, one 12 px word gap between B and C, a "1 2" gap
    chars, centres = list("ABCD12"), [10.0, 30.0, 60.0, 80.0, 110.0, 125.0]
    runs = [(19, 22), (39, 51), (69, 72), (89, 100), (116, 120)]
    assert restore_spaces(chars, centres, runs, 40) == "AB CD 12"  # digits never split
    assert restore_spaces(chars, centres, runs, 8) == "ABCD12"  # too small to measure
    assert restore_spaces(list("AB"), [10.0], runs, 40) == "AB"  # boxes do not match
    # a recogniser's own space calibrates the line: narrower gaps stay letter gaps
    chars, centres = list("ab cd"), [10.0, 20.0, 30.0, 40.0, 50.0]
    runs = [(14, 16), (24, 36), (44, 48)]
    assert restore_spaces(chars, centres, runs, 16) == "ab cd"
    runs, height = blank_runs(np.array([[0, 255, 0, 0, 0, 255, 0, 255]] * 4, np.uint8))
    assert runs == [(2, 5), (6, 7)] and height == 4


# Lines that PP-OCR's recogniser read with spaces lost ("BUDGETREVIEW2027"), drawn in
# fonts that ship with OpenCV and Pillow (no system fonts), at several sizes.
SPACED_LINES = ["BUDGET REVIEW 2027", "BREAKING NEWS", "Quarterly sales up 12 percent"]


def rendered_lines(draw: str, size: float) -> np.ndarray:
    """The spaced lines, one under the other, white on dark blue (``draw``: cv2 or pil)."""
    if draw == "cv2":
        img = np.full((300, 960, 3), (60, 30, 20), np.uint8)
        for i, text in enumerate(SPACED_LINES):
            y = 60 + i * 90
            cv2.putText(img, text, (20, y), cv2.FONT_HERSHEY_SIMPLEX, size, (255,) * 3, 2)
        return img
    canvas = Image.new("RGB", (960, 300), (20, 30, 60))
    font = ImageFont.load_default(size=size)
    for i, text in enumerate(SPACED_LINES):
        ImageDraw.Draw(canvas).text((20, 20 + i * 90), text, font=font, fill=(255, 255, 255))
    return np.asarray(canvas)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("draw", "size"), [("cv2", 0.7), ("cv2", 1.2), ("cv2", 1.8), ("pil", 24), ("pil", 48)]
)
def test_on_screen_text_keeps_word_boundaries(
    text_reader: TextReader, draw: str, size: float
) -> None:
    lines = text_reader.read(rendered_lines(draw, size))
    assert [line.text for line in lines] == SPACED_LINES


# -- reading ----------------------------------------------------------------------------
def test_reader_applies_rotation_metadata(tmp_path: Path) -> None:
    frames = []
    for _ in range(5):
        img = np.zeros((64, 96, 3), np.uint8)
        img[:16] = 255  # a white band along the top of the coded frame
        frames.append(img)
    path = write_video(tmp_path / "turned.mp4", frames, rotation=90)
    with VideoReader(path, fps=None) as reader:
        out = list(reader)
    assert reader.rotation == 90 and len(out) == 5
    assert out[0].image.shape == (96, 64, 3)
    assert out[0].image[:, :12].mean() > 200 and out[0].image[:, -12:].mean() < 50


@pytest.mark.parametrize(
    ("suffix", "codec"), [("mkv", "mpeg4"), ("avi", "mpeg4"), ("mov", "libx264")]
)
def test_reader_samples_any_container(tmp_path: Path, suffix: str, codec: str) -> None:
    path = write_video(tmp_path / f"clip.{suffix}", moving_frames(30), codec=codec)
    with VideoReader(path, fps=4.0) as reader:
        times = [f.time for f in reader]
    assert reader.error is None and len(times) == 12
    assert times[0] == 0.0 and abs(times[-1] - 2.75) < 0.06
    with VideoReader(path, fps=None, max_side=80) as reader:
        frames = list(reader)
    assert len(frames) == 30 and frames[0].image.shape == (60, 80, 3) and frames[0].scale == 0.5


def test_reader_stops_at_its_time_budget(stream_video: Path) -> None:
    with VideoReader(stream_video, fps=None, time_budget=0.0) as reader:
        frames = list(reader)
    assert frames == [] and reader.error is not None and "longer than" in reader.error.message


def packet_offsets(path: Path) -> list[int]:
    """Byte offsets of the video packets of a file (to cut or damage it between frames)."""
    with av.open(str(path)) as container:
        return [int(p.pos) for p in container.demux(video=0) if p.pos is not None and p.size]


def truncated(video: Path, out: Path, *, keep_packets: int) -> Path:
    out.write_bytes(video.read_bytes()[: packet_offsets(video)[keep_packets]])
    return out


@pytest.mark.timeout(60)
def test_reader_reports_truncated_and_corrupt_files(tmp_path: Path, stream_video: Path) -> None:
    cut = truncated(stream_video, tmp_path / "cut.mkv", keep_packets=15)
    with VideoReader(cut, fps=None) as reader:
        frames = list(reader)
    assert 10 <= len(frames) <= 15  # what could be read is read
    assert reader.error is not None and reader.error.code == "bad_video"
    assert "truncated" in reader.error.message and reader.error.to_dict()["at"] < 1.6
    noise = np.random.default_rng(0).integers(0, 256, 1 << 16, dtype=np.uint8).tobytes()
    for garbled in (
        stream_video,
        write_video(tmp_path / "moving.ts", moving_frames(30), codec="mpeg4"),
    ):
        data, offsets = garbled.read_bytes(), packet_offsets(garbled)
        damaged = tmp_path / f"damaged{garbled.suffix}"
        damaged.write_bytes(
            data[: offsets[8]] + noise[: offsets[20] - offsets[8]] + data[offsets[20] :]
        )
        with VideoReader(damaged, fps=None) as reader:
            frames = list(reader)
        assert len(frames) >= 8
        if reader.error is None:  # MPEG-TS resynchronises: decoding resumes after the damage
            assert garbled.suffix == ".ts" and frames[-1].time > 2.5
        else:  # Matroska stops at the damage: a partial read, reported
            assert garbled.suffix == ".mkv" and "damaged" in reader.error.message
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypmp42" + noise[:5000])
    with pytest.raises(VideoError, match="cannot open"):
        VideoReader(junk)
    if SHARED.is_dir():  # an MP4 whose index (the moov box, at its end) was cut off
        no_index = tmp_path / "no_index.mp4"
        no_index.write_bytes((SHARED / HAMILTON).read_bytes()[:300_000])
        with pytest.raises(VideoError, match="cannot open"):
            VideoReader(no_index)


# -- indexing -----------------------------------------------------------------------------
def overlap(intervals: list[tuple[float, float]], truth: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(b, d) - max(a, c)) for a, b in intervals for c, d in truth)


@pytest.mark.integration
def test_hamilton_clip_finds_lin_manuel_miranda_when_on_screen(enrolled: FaceService) -> None:
    with pytest.raises(PurposeRequired):
        enrolled.require_purpose = True
        try:
            enrolled.index_video("people", SHARED / HAMILTON)
        finally:
            enrolled.require_purpose = False
    seen: list[tuple[int, int]] = []
    result = enrolled.index_video(
        "people",
        SHARED / HAMILTON,
        options=IndexOptions(ocr=False, speech=False),
        purpose="test: who is in the clip",
        case_ref="T-5",
        progress=lambda done, total: seen.append((done, total)),
    )
    assert result.complete and result.error is None
    assert (result.width, result.height) == (640, 360) and result.frames_sampled >= 36
    named = {p.person: p for p in result.people if p.person is not None}
    assert set(named) <= IN_CLIP, f"identified someone not in the clip: {set(named) - IN_CLIP}"
    lin = named["lin_manuel_miranda"]
    on_screen = sum(b - a for a, b in lin.intervals)
    assert overlap(lin.intervals, [(3.8, 7.7)]) >= 3.5  # the close-up, nearly all of it
    assert overlap(lin.intervals, LIN_ON_SCREEN) >= 0.9 * on_screen  # and only when there
    assert lin.confidence is not None and lin.confidence >= result.threshold
    assert lin.fmr is not None and lin.fmr <= 1e-4
    assert base64.b64decode(lin.thumbnail)[:3] == b"\xff\xd8\xff"  # a JPEG
    unknown = [p.label for p in result.people if p.person is None]
    assert unknown == [f"unknown person {i + 1}" for i in range(len(unknown))]
    assert seen and seen[-1][0] == seen[-1][1] == result.frames_sampled
    entries = [e for e in enrolled.ledger.iter_all() if e["operation"] == "video.identify"]
    assert entries and entries[-1]["purpose"] == "test: who is in the clip"
    assert result.video_sha256 in json.dumps(dict(entries[-1]), default=str)


@pytest.mark.integration
def test_pedestrians_are_separate_unknown_people_stable_with_sampling_rate(
    enrolled: FaceService,
) -> None:
    counts = {}
    for fps in (4.0, 8.0):
        result = enrolled.index_video(
            "people",
            SHARED / PEDESTRIANS,
            options=IndexOptions(fps=fps, ocr=False, speech=False),
            purpose="test",
        )
        assert all(p.person is None for p in result.people)  # nobody here is enrolled
        duration = result.duration or 0.0
        for p in result.people:
            assert p.label.startswith("unknown person ")
            assert all(0.0 <= a < b <= duration + 1e-6 for a, b in p.intervals)
        # the three people walking towards the camera are on screen the whole clip
        assert sum(p.seconds > 0.9 * duration for p in result.people) >= 3
        counts[fps] = len(result.people)
    assert counts[4.0] == counts[8.0] and counts[4.0] >= 4


@pytest.mark.integration
def test_on_screen_text_lines_with_intervals(
    enrolled: FaceService, text_video: Path, text_reader: TextReader
) -> None:
    reads = 0
    original = text_reader.read

    def counting(image: np.ndarray, *, scale: float = 1.0) -> list[TextLine]:
        nonlocal reads
        reads += 1
        return original(image, scale=scale)

    text_reader.read = counting  # type: ignore[method-assign]
    try:
        result = enrolled.index_video("people", text_video, purpose="test", text_reader=text_reader)
    finally:
        del text_reader.read
    assert result.people == []
    assert result.frames_analysed < result.frames_sampled / 2  # unchanged frames skipped
    assert reads < 6  # 6 OCR samples, two of them unchanged
    found = {"".join(t.text.split()).casefold(): t for t in result.text}
    for text, start, stop, y in TEXT_LINES:
        item = found["".join(text.split()).casefold()]
        assert item.text == text  # word boundaries kept
        assert item.intervals == [(float(start), float(stop))], text
        assert item.confidence > 0.8
        assert item.box[1] < y < item.box[3] + 5 and item.box[0] < 40
    assert len(found) == len(TEXT_LINES)


@pytest.mark.integration
def test_partial_index_of_a_truncated_video(
    enrolled: FaceService, stream_video: Path, tmp_path: Path
) -> None:
    cut = truncated(stream_video, tmp_path / "cut.mkv", keep_packets=15)
    result = enrolled.index_video("people", cut, options=IndexOptions(ocr=False))
    assert not result.complete and result.frames_sampled > 0
    assert result.error is not None and result.error["code"] == "bad_video"
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoError, match="empty"):
        enrolled.index_video("people", tmp_path / "empty.mp4")
    with pytest.raises(VideoError, match="cannot open"):
        enrolled.index_video("people", tmp_path / "missing.mp4")


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_failing_consumer_stops_the_pipeline(enrolled: FaceService, text_video: Path) -> None:
    def stop_early(done: int, total: int) -> None:
        if done == 3:
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        enrolled.index_video(
            "people", text_video, options=IndexOptions(ocr=False), progress=stop_early
        )
    names = [t.name for t in threading.enumerate()]
    assert not any(n.startswith(("faceledger-video-decode", "faceledger-video_")) for n in names)


# -- speech ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def talking_video(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Path:
    """11 s: Joe Biden's photo and "BUDGET REVIEW 2027" on every frame, jfk.flac as sound."""
    return speech_video(
        tmp_path_factory.mktemp("speech") / "talk.mp4", faces_dir / SPEECH_VIDEO_FACE
    )


def words(text: str) -> list[str]:
    return "".join(c if c.isalnum() else " " for c in text.lower()).split()


@pytest.mark.integration
def test_one_index_names_the_person_reads_the_text_and_transcribes_the_speech(
    enrolled: FaceService, talking_video: Path, text_reader: TextReader
) -> None:
    seen: list[tuple[int, int]] = []
    result = enrolled.index_video(
        "people",
        talking_video,
        options=IndexOptions(fps=1.0),
        purpose="test: speech in video",
        text_reader=text_reader,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert result.complete and result.error is None and result.speech_problem is None
    duration = result.duration or 0.0
    assert [p.person for p in result.people] == ["joe_biden"]
    assert overlap(result.people[0].intervals, [(0.0, duration)]) >= 0.9 * duration
    assert [t.text for t in result.text] == [SPEECH_VIDEO_TEXT]  # as separate words
    said = [w for s in result.transcript for w in words(s.text)]
    reference = words(
        "And so my fellow Americans, ask not what your country can do for you, "
        "ask what you can do for your country."
    )
    assert len(set(reference) - set(said)) <= 1 and abs(len(said) - len(reference)) <= 2
    # sensible times: in order, inside the file, speech from about 0.3 s to 10.6 s
    times = [(s.start, s.end) for s in result.transcript]
    assert all(0.0 <= a < b <= duration + 0.05 for a, b in times)
    assert all(b1 <= a2 + 0.05 for (_, b1), (a2, _) in itertools.pairwise(times))
    assert times[0][0] < 1.5 and times[-1][1] > 9.5
    assert {s.language for s in result.transcript} == {"en"}
    assert all(s.text_en == s.text and 0 < s.confidence <= 1 for s in result.transcript)
    # progress runs over frames then speech, and ends at its total
    assert seen[-1][0] == seen[-1][1] > result.frames_sampled
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(seen))
    assert any(done == result.frames_sampled for done, _ in seen)


def damaged(video: Path, out: Path, *, kind: str) -> Path:
    """A copy of ``video`` with every packet of its first ``kind`` ("audio" or "video")
    stream overwritten by noise, the other stream intact."""
    with av.open(str(video)) as container:
        stream = (container.streams.audio if kind == "audio" else container.streams.video)[0]
        spans = [(p.pos, p.size) for p in container.demux(stream) if p.pos is not None and p.size]
    data = bytearray(video.read_bytes())
    rng = np.random.default_rng(3)
    for pos, size in spans:
        data[pos : pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    out.write_bytes(bytes(data))
    return out


@pytest.mark.integration
def test_bad_or_silent_audio_never_costs_the_faces_and_text_nor_bad_video_the_speech(
    enrolled: FaceService,
    talking_video: Path,
    text_reader: TextReader,
    tmp_path: Path,
    faces_dir: Path,
) -> None:
    quiet = silent_audio(tmp_path / "quiet.wav", seconds=3.0)
    silent = speech_video(tmp_path / "silent.mp4", faces_dir / SPEECH_VIDEO_FACE, audio=quiet)
    problems = {}
    for video in (silent, damaged(talking_video, tmp_path / "damaged.mp4", kind="audio")):
        result = enrolled.index_video(
            "people", video, options=IndexOptions(fps=1.0), text_reader=text_reader
        )
        assert [p.person for p in result.people] == ["joe_biden"], video.name
        assert [t.text for t in result.text] == [SPEECH_VIDEO_TEXT], video.name
        assert result.transcript == [] and result.error is None
        problems[video.name] = result.speech_problem
    assert problems["silent.mp4"] == "no speech found"
    assert "audio" in str(problems["damaged.mp4"]), problems
    # and the other way round: undecodable pictures, the speech is still indexed
    blind = damaged(talking_video, tmp_path / "blind.mp4", kind="video")
    result = enrolled.index_video("people", blind, options=IndexOptions(ocr=False))
    assert result.error is not None and result.error["code"] == "bad_video"
    assert not result.complete and result.people == [] and result.frames_sampled == 0
    assert "country" in " ".join(s.text for s in result.transcript).lower()
    heard = enrolled.index_video("people", quiet)  # audio only, and silent: a clear result
    assert heard.transcript == [] and heard.speech_problem == "no speech found"
    assert heard.people == [] and heard.text == [] and heard.width == heard.height == 0
    assert heard.duration == 3.0 and heard.complete
    with pytest.raises(VideoError, match="only audio"):
        enrolled.index_video("people", quiet, options=IndexOptions(speech=False))
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(VideoError, match="empty"):
        enrolled.index_video("people", tmp_path / "empty.wav")


def test_stored_results_from_before_speech_still_load() -> None:
    old = {
        "collection": "c",
        "video_sha256": "0" * 64,
        "duration": 3.0,
        "width": 160,
        "height": 120,
        "rotation": 0,
        "fps": 10.0,
        "sample_fps": 4.0,
        "frames_sampled": 12,
        "frames_analysed": 3,
        "people": [],
        "text": [{"text": "HI", "confidence": 0.9, "intervals": [[0, 1]], "box": [0, 0, 9, 9]}],
        "complete": True,
        "errors": [],
        "error": None,
        "max_fmr": 1e-4,
        "threshold": 0.3,
        "elapsed": 1.0,
    }
    index = TypeAdapter(VideoIndex).validate_python(old)
    assert index.transcript == [] and index.speech_problem is None
    assert index.text[0].intervals == [(0.0, 1.0)]


# -- fronts ------------------------------------------------------------------------------
@pytest.mark.integration
def test_cli_writes_the_index_and_fails_cleanly(tmp_path: Path, text_video: Path) -> None:
    data = tmp_path / "data"
    svc = FaceService(Settings(data=data))
    svc.create_collection("c", require_consent=False)
    svc.close()
    set_data_dir(data)
    try:
        runner = CliRunner()
        out = tmp_path / "index.json"
        args = ["index", str(text_video), "--collection", "c", "--json", str(out), "--no-ocr"]
        done = runner.invoke(video_app, [*args, "--fps", "2", "--purpose", "test"])
        assert done.exit_code == 0, done.output
        index = json.loads(out.read_text())
        assert index["people"] == [] and index["complete"] is True and index["sample_fps"] == 2
        junk = tmp_path / "junk.mp4"
        junk.write_bytes(b"not a video at all")
        failed = runner.invoke(video_app, ["index", str(junk), "--collection", "c", "--json", "-"])
        assert failed.exit_code == 7 and "bad_video" in failed.output  # bad_input
        assert "Traceback" not in failed.output
    finally:
        set_data_dir(None)


@pytest.mark.integration
def test_cli_indexes_speech_and_writes_subtitles(tmp_path: Path) -> None:
    data = tmp_path / "data"
    svc = FaceService(Settings(data=data))
    svc.create_collection("c", require_consent=False)
    svc.close()
    set_data_dir(data)
    try:
        runner = CliRunner()
        out, vtt, srt = tmp_path / "i.json", tmp_path / "s.vtt", tmp_path / "s.srt"
        args = ["index", str(JFK), "--collection", "c", "--purpose", "test"]
        subtitles = ["--vtt", str(vtt), "--srt", str(srt), "--english"]
        done = runner.invoke(video_app, [*args, "--json", str(out), *subtitles])
        assert done.exit_code == 0, done.output
        assert "speech segment(s) (languages: en)" in done.output
        index = json.loads(out.read_text())
        said = " ".join(s["text"] for s in index["transcript"]).lower()
        assert "ask not what your country can do for you" in said
        assert vtt.read_text().startswith("WEBVTT\n\n00:00:00.")
        assert "ask not what your country" in vtt.read_text().lower()
        assert srt.read_text().startswith("1\n00:00:00,") and " --> 00:00:1" in srt.read_text()
        mute = runner.invoke(video_app, [*args, "--json", "-", "--no-speech"])
        assert mute.exit_code == 7 and "only audio" in mute.output, mute.output
    finally:
        set_data_dir(None)


def wait_for(client: httpx.Client, job: str, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 180  # a shared 2-core machine: speech takes a few seconds
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/v1/videos/{job}", headers=headers).json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.1)
    raise AssertionError("the job did not finish")


@contextmanager
def serve_in_thread(settings: Settings) -> Iterator[tuple[httpx.Client, FaceService]]:
    """A real uvicorn server on a loopback port, in this process, with the video router."""
    from faceledger.api.routes import videos

    app = create_app(settings)
    if not any(getattr(r, "path", "") == "/v1/videos" for r in app.routes):
        app.include_router(videos.router)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client, app.state.service
    finally:
        server.should_exit = True
        thread.join(timeout=60)


@pytest.mark.integration
def test_job_api_reports_failures_and_keeps_serving(tmp_path: Path, stream_video: Path) -> None:
    settings = Settings(data=tmp_path / "data", rate_limit=0)
    with serve_in_thread(settings) as (client, service):
        service.create_collection("c", require_consent=False)
        searcher = {"X-API-Key": service.create_key(Role.SEARCHER).secret}
        other = {"X-API-Key": service.create_key(Role.SEARCHER).secret}
        no_purpose = client.post("/v1/videos?collection=c", content=b"x", headers=searcher)
        assert no_purpose.status_code == 422 and no_purpose.json()["code"] == "purpose_required"
        missing = client.post("/v1/videos?collection=no&purpose=t", content=b"x", headers=searcher)
        assert missing.status_code == 404
        corrupt = client.post(
            "/v1/videos?collection=c&purpose=test", content=b"\x00" * 4096, headers=searcher
        )
        assert corrupt.status_code == 202
        failed = wait_for(client, corrupt.json()["job"], searcher)
        assert failed["status"] == "failed" and failed["error"]["code"] == "bad_video"
        assert client.get("/healthz").status_code == 200
        good = client.post(
            "/v1/videos?collection=c&purpose=test&ocr=false",
            files={"video": ("moving.mkv", stream_video.read_bytes(), "video/x-matroska")},
            headers=searcher,
        )
        assert good.status_code == 202
        job = good.json()["job"]
        done = wait_for(client, job, searcher)
        assert done["status"] == "done" and done["progress"] == 100.0
        assert done["result"]["complete"] is True and done["error"] is None
        assert done["result"]["speech_problem"] == "the file holds no audio track"
        assert client.get(f"/v1/videos/{job}", headers=other).status_code == 404
        # an audio file as the raw body: the index is its transcript
        audio = client.post(
            "/v1/videos?collection=c&purpose=test&hotwords=Americans",
            content=JFK.read_bytes(),
            headers={**searcher, "Content-Type": "audio/flac"},
        )
        assert audio.status_code == 202
        heard = wait_for(client, audio.json()["job"], searcher)
        assert heard["status"] == "done" and heard["progress"] == 100.0, heard
        assert "ask not what your country" in " ".join(
            s["text"].lower() for s in heard["result"]["transcript"]
        )
        assert heard["result"]["people"] == [] and heard["result"]["width"] == 0
        mute = client.post(
            "/v1/videos?collection=c&purpose=test&speech=false",
            content=JFK.read_bytes(),
            headers={**searcher, "Content-Type": "audio/flac"},
        )
        refused = wait_for(client, mute.json()["job"], searcher)  # nothing left to index
        assert refused["status"] == "failed" and "only audio" in refused["error"]["message"]
        assert not list((settings.data / "tmp").iterdir())  # uploads are deleted
