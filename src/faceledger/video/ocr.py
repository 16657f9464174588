"""On-screen text: OCR of sampled frames with RapidOCR, merged into lines with intervals.

:class:`TextReader` runs RapidOCR (PP-OCR models shipped inside the
``rapidocr-onnxruntime`` package, on ONNX Runtime) on one frame. :class:`TextTimeline`
is pure: it merges the lines read at successive sample times into one item per
distinct line, with the intervals where it was on screen.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any

import cv2
import numpy as np

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
                found, _ = self._ocr(bgr)
        except Exception as exc:  # onnxruntime and RapidOCR raise untyped errors
            raise ModelError(f"OCR failed: {exc}") from exc
        factor = 1.0 / (fit * scale)
        lines = []
        for points, text, confidence in found or []:
            text = _SPACES.sub(" ", str(text)).strip()
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
