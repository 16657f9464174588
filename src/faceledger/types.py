"""Frozen value types passed between modules: boxes, landmarks, quality, faces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
UInt8Image = npt.NDArray[np.uint8]
"""An RGB image, shape ``(h, w, 3)`` uint8, C-contiguous."""

Grade = Literal["low", "medium", "high"]


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned box in pixel coordinates of the decoded image."""

    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    def as_list(self) -> list[float]:
        return [round(self.x1, 2), round(self.y1, 2), round(self.x2, 2), round(self.y2, 2)]


@dataclass(frozen=True, slots=True)
class Quality:
    """Per-face quality measures and the overall grade used to accept enrolments."""

    face_size: float
    """Inter-ocular-scaled face size in pixels (the shorter side of the box)."""
    sharpness: float
    """Variance of the Laplacian of the aligned crop, normalised to 0..1."""
    exposure: float
    """0..1, 1 when the crop's brightness is well centred and not clipped."""
    yaw: float
    """Estimated yaw in degrees from the landmarks (0 frontal)."""
    pitch: float
    """Estimated pitch in degrees from the landmarks (rough)."""
    roll: float
    """Roll in degrees, from the eye line."""
    grade: Grade


@dataclass(frozen=True, slots=True)
class DetectedFace:
    """One detected face: box, 5 landmarks ``(5, 2)`` float32, detector score."""

    box: Box
    landmarks: FloatArray
    score: float


@dataclass(frozen=True, slots=True)
class Face:
    """A detected face with its quality and (when computed) its embedding.

    ``embedding`` is ``(d,)`` float32, L2-normalised, in the space of ``model``.
    """

    box: Box
    landmarks: FloatArray
    score: float
    quality: Quality
    model: str
    embedding: FloatArray | None = field(default=None, repr=False)
    fallback: bool = False
    """True when no face was detected and the whole image was used (evaluation only)."""

    def require_embedding(self) -> FloatArray:
        """The embedding of a face the engine embedded (an error if it was only detected)."""
        if self.embedding is None:
            raise ValueError("this face was detected but not embedded")
        return self.embedding

    def public(self) -> dict[str, object]:
        """Box, landmarks, score and quality as plain JSON values (never the embedding)."""
        return {
            "box": self.box.as_list(),
            "landmarks": np.round(self.landmarks.astype(np.float64), 2).tolist(),
            "score": round(self.score, 4),
            "quality": {k: getattr(self.quality, k) for k in Quality.__slots__},
        }


@dataclass(frozen=True, slots=True)
class Comparison:
    """Result of comparing two faces: similarity and its stated error rate."""

    similarity: float
    threshold: float
    max_fmr: float
    fmr: float
    """Estimated false match rate at this similarity (from the pack's calibration)."""
    same_person: bool
    model: str
