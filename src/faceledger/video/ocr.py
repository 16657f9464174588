"""On-screen text: OCR of sampled frames with RapidOCR, merged into lines with intervals.

:class:`TextReader` runs RapidOCR (PP-OCR models shipped inside the
``rapidocr-onnxruntime`` package, on ONNX Runtime) on one frame. :class:`TextTimeline`
is pure: it merges the lines read at successive sample times into one item per
distinct line, with the intervals where it was on screen.

Word boundaries: PP-OCR's recogniser often drops the narrow spaces of tightly set text
("BUDGET REVIEW 2027" read as ``BUDGETREVIEW2027``), which defeats word search. Each
line's crop is binarised and its blank columns measured; a blank run much wider than the
line's letter gaps (:data:`WORD_GAP`) that falls between two recognised characters (their
positions come from RapidOCR's ``return_word_box``) becomes a space (:func:`restore_spaces`).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from faceledger.errors import InvalidArgument, ModelError
from faceledger.imaging.resize import shrink
from faceledger.types import UInt8Image
from faceledger.video.reader import time_intervals

DEFAULT_OCR_FPS = 1.0
OCR_MAX_SIDE = 960
"""Frames are scaled down to this long side before text detection (cost grows with area)."""
MIN_CONFIDENCE = 0.5
SAME_TEXT = 0.8
"""Readings whose normalised texts are at least this similar are one line."""
MISSED = 2.5
"""Sightings up to this many periods apart are one interval (OCR may miss one sample)."""
WORD_GAP = 0.25
"""A blank run at least this fraction of the ink height (and :data:`WORD_GAP_TO_MEDIAN`
times the line's median gap) separates words; letter gaps measured on OpenCV's Hershey
fonts stay at or below 0.22 of the height (digits excepted), word gaps are 0.3 to 0.5."""
WORD_GAP_TO_MEDIAN = 1.8
THIN_GLYPH = 0.2
"""Ink narrower than this fraction of the height (I, l, 1) does not bound a word gap."""
MIN_INK_HEIGHT = 10
"""Lines with less ink height (pixels) keep the recogniser's spacing: too coarse to measure."""
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class TextLine:
    """One line of text read in a frame: box ``[x1, y1, x2, y2]`` in source pixels."""

    text: str
    confidence: float
    box: tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class TextItem:
    """A distinct line of on-screen text and when it was visible."""

    text: str
    confidence: float
    """Mean recognition confidence over the samples that read it."""
    intervals: list[tuple[float, float]]
    """``[start, end]`` in seconds."""
    box: list[float]
    """``[x1, y1, x2, y2]`` in source pixels, from the most confident reading."""


def normalise(text: str) -> str:
    """The matching key of a reading: case-folded, without whitespace."""
    return _SPACES.sub("", text).casefold()


def same_text(a: str, b: str) -> bool:
    """Whether two normalised readings are the same line (allowing a few OCR slips)."""
    if a == b:
        return True
    return SequenceMatcher(None, a, b, autojunk=False).ratio() >= SAME_TEXT


class TextReader:
    """Reads text lines in RGB frames with RapidOCR; calls are serialised (one at a time)."""

    def __init__(
        self,
        *,
        max_side: int = OCR_MAX_SIDE,
        min_confidence: float = MIN_CONFIDENCE,
        threads: int = 1,
    ) -> None:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:
            raise ModelError("on-screen text needs the rapidocr-onnxruntime package") from exc
        self.max_side = max_side
        self.min_confidence = min_confidence
        try:
            self._ocr: Any = RapidOCR(
                intra_op_num_threads=threads,
                inter_op_num_threads=1,
                det_limit_type="max",
                text_score=min_confidence,
            )
        except Exception as exc:  # RapidOCR raises untyped errors while loading
            raise ModelError(f"the OCR models could not be loaded: {exc}") from exc
        self._lock = threading.Lock()

    def read(self, image: UInt8Image, *, scale: float = 1.0) -> list[TextLine]:
        """Text lines of an RGB ``(h, w, 3)`` uint8 frame, top to bottom.

        ``scale`` is the frame's pixels per source pixel; boxes are returned in source
        pixels.

        Raises:
            ModelError: the OCR models failed to run.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InvalidArgument("OCR needs an RGB (h, w, 3) uint8 image")
        h, w = image.shape[:2]
        fit = min(1.0, self.max_side / max(h, w))
        if fit < 1.0:
            image = shrink(image, (max(1, round(w * fit)), max(1, round(h * fit))))
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        try:
            with self._lock:
                found, _ = self._ocr(bgr, return_word_box=True)
        except Exception as exc:  # onnxruntime and RapidOCR raise untyped errors
            raise ModelError(f"OCR failed: {exc}") from exc
        factor = 1.0 / (fit * scale)
        gray: UInt8Image = np.asarray(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), dtype=np.uint8)
        lines = []
        for points, text, confidence, *word_info in found or []:
            text = _with_spaces(gray, points, str(text), word_info)
            text = _SPACES.sub(" ", text).strip()
            if not text or float(confidence) < self.min_confidence:
                continue
            pts = np.asarray(points, dtype=np.float32) * factor
            box = (
                round(float(pts[:, 0].min()), 1),
                round(float(pts[:, 1].min()), 1),
                round(float(pts[:, 0].max()), 1),
                round(float(pts[:, 1].max()), 1),
            )
            lines.append(TextLine(text, round(float(confidence), 4), box))
        return lines


def blank_runs(gray: UInt8Image) -> tuple[list[tuple[int, int]], int]:
    """Blank column runs ``[start, end)`` between the first and last inked columns of a
    text-line crop, and the ink height in pixels (0 when there is no ink).

    The crop is split into ink and background by Otsu's threshold; the background is the
    class that holds most of the crop's border (light text on dark or dark on light).
    """
    if gray.ndim != 2 or gray.size == 0:
        return [], 0
    _, binary = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink: npt.NDArray[np.bool_] = binary > 0
    border = np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]])
    if border.mean() > 0.5:
        ink = ~ink
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if len(cols) == 0:
        return [], 0
    inked = np.asarray(ink.any(axis=0), dtype=bool)[cols[0] : cols[-1] + 1]
    edges = np.flatnonzero(np.diff(inked.astype(np.int8)))
    starts, ends = edges[inked[edges]] + 1, edges[~inked[edges]] + 1
    runs = [(int(a + cols[0]), int(b + cols[0])) for a, b in zip(starts, ends, strict=False)]
    return runs, int(rows[-1] - rows[0] + 1)


def restore_spaces(
    chars: list[str],
    centres: list[float],
    runs: list[tuple[int, int]],
    ink_height: int,
) -> str:
    """The characters joined, with a space at each wide blank run between two of them.

    Pure. ``centres`` are the characters' x positions (same pixels as ``runs``); a run is a
    word gap when it is at least :data:`WORD_GAP` of ``ink_height`` and
    :data:`WORD_GAP_TO_MEDIAN` times the median run, and the ink on both sides of it is
    wider than :data:`THIN_GLYPH`. Two digits are never split (a "1" carries wide blank
    sides), nor is a character pair already around a space.
    """
    if len(chars) != len(centres) or len(chars) < 2 or ink_height < MIN_INK_HEIGHT:
        return "".join(chars)
    widths = np.array([b - a for a, b in runs], dtype=np.float64)
    if len(widths) == 0:
        return "".join(chars)
    wide = max(WORD_GAP * ink_height, WORD_GAP_TO_MEDIAN * float(np.median(widths)))
    # The spaces the recogniser did read show this line's word spacing: a new space must
    # be at least as wide as the narrowest of them, and then needs no thin-glyph rule.
    known = [_run_at(runs, c) for ch, c in zip(chars, centres, strict=True) if ch.isspace()]
    calibrated = [float(widths[k]) for k in known if k is not None]
    if calibrated:
        wide = max(wide, min(calibrated))
    thin = -1.0 if calibrated else THIN_GLYPH * ink_height
    gaps = []
    for k, ((a, b), w) in enumerate(zip(runs, widths, strict=True)):
        # the ink beside a gap: a thin glyph (I, l, 1) carries wide blank sides of its own
        ink_left = a - runs[k - 1][1] if k > 0 else thin + 1
        ink_right = runs[k + 1][0] - b if k + 1 < len(runs) else thin + 1
        if w >= wide and ink_left > thin and ink_right > thin:
            gaps.append((a + b) / 2)
    out = [chars[0]]
    for i in range(1, len(chars)):
        left, right = chars[i - 1], chars[i]
        between = any(centres[i - 1] < g < centres[i] for g in gaps)
        if (
            between
            and not left.isspace()
            and not right.isspace()
            and not (left.isdigit() and right.isdigit())
        ):
            out.append(" ")
        out.append(right)
    return "".join(out)


def _run_at(runs: list[tuple[int, int]], x: float) -> int | None:
    """The blank run holding ``x`` (or within 2 pixels of it), if any."""
    for k, (a, b) in enumerate(runs):
        if a - 2 <= x <= b + 2:
            return k
    return None


def _with_spaces(gray: UInt8Image, points: Any, text: str, word_info: list[Any]) -> str:
    """``text`` with the word gaps seen in its crop (RapidOCR's per-character boxes)."""
    if len(word_info) < 2 or not word_info[0] or len(word_info[1]) != len(word_info[0]):
        return text  # no per-character boxes: keep the recogniser's text
    quad = np.asarray(points, dtype=np.float32)
    x1, y1 = np.floor(quad.min(axis=0)).astype(int)
    x2, y2 = np.ceil(quad.max(axis=0)).astype(int)
    tilt = abs(float(quad[1][1] - quad[0][1])) / max(1.0, float(quad[1][0] - quad[0][0]))
    if tilt > 0.1 or x2 - x1 < 2 or y2 - y1 < 2:
        return text  # a slanted or vertical line: columns do not separate its words
    x1, y1 = max(0, x1), max(0, y1)
    runs, height = blank_runs(gray[y1:y2, x1:x2])
    boxes = np.asarray(word_info[0], dtype=np.float32)
    centres = [float(c) - x1 for c in boxes[:, :, 0].mean(axis=1)]
    return restore_spaces([str(c) for c in word_info[1]], centres, runs, height)


@dataclass(slots=True)
class _Item:
    key: str
    times: list[float] = field(default_factory=list)
    readings: dict[str, float] = field(default_factory=dict)
    confidences: list[float] = field(default_factory=list)
    best: TextLine | None = None
    last: float = -1.0


class TextTimeline:
    """Merges the lines read at successive sample times into items with intervals."""

    def __init__(self, *, period: float) -> None:
        if period <= 0:
            raise InvalidArgument("the OCR sampling period must be positive")
        self.period = period
        self._items: list[_Item] = []
        self._previous = -1.0

    def add(self, time: float, lines: list[TextLine]) -> None:
        """Record the lines read at ``time`` seconds (times must increase)."""
        if time <= self._previous:
            raise InvalidArgument("OCR sample times must increase")
        seen: set[int] = set()
        for line in lines:
            key = normalise(line.text)
            if not key:
                continue
            item = self._find(key, seen)
            if item is None:
                item = _Item(key)
                self._items.append(item)
            seen.add(id(item))
            if item.last != time:
                item.times.append(time)
                item.last = time
            item.readings[line.text] = item.readings.get(line.text, 0.0) + line.confidence
            item.confidences.append(line.confidence)
            if item.best is None or line.confidence > item.best.confidence:
                item.best = line
        self._previous = time

    def _find(self, key: str, taken: set[int]) -> _Item | None:
        # Prefer the item on screen at the previous sample, then any earlier one.
        candidates = [i for i in self._items if id(i) not in taken and same_text(i.key, key)]
        if not candidates:
            return None
        return max(candidates, key=lambda i: (i.last, i.key == key))

    def items(self, *, end: float | None = None) -> list[TextItem]:
        """The distinct lines in order of first appearance, with their intervals."""
        out = []
        for item in sorted(self._items, key=lambda i: i.times[0]):
            assert item.best is not None  # every item holds at least one reading
            text = max(item.readings, key=lambda t: item.readings[t])
            out.append(
                TextItem(
                    text=text,
                    confidence=round(float(np.mean(item.confidences)), 4),
                    intervals=time_intervals(
                        item.times, period=self.period, max_gap=self.period * MISSED, end=end
                    ),
                    box=list(item.best.box),
                )
            )
        return out
