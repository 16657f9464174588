"""Face alignment: similarity transform of 5 landmarks to the ArcFace 112x112 template."""

from __future__ import annotations

import cv2
import numpy as np

from faceledger.types import FloatArray, UInt8Image

ARCFACE_TEMPLATE: FloatArray = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)
"""Left eye, right eye, nose tip, left and right mouth corners in a 112x112 crop."""


def estimate_transform(landmarks: FloatArray, *, size: int = 112) -> FloatArray:
    """The ``(2, 3)`` similarity transform taking ``landmarks (5, 2)`` onto the template."""
    dst = ARCFACE_TEMPLATE * (size / 112.0)
    matrix, _ = cv2.estimateAffinePartial2D(landmarks.astype(np.float32), dst, method=cv2.LMEDS)
    if matrix is None:  # degenerate landmarks (all equal): fall back to a plain scale
        matrix = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    return matrix.astype(np.float32)


def align_face(image: UInt8Image, landmarks: FloatArray, *, size: int = 112) -> UInt8Image:
    """Warp the face with ``landmarks (5, 2)`` out of ``image`` into a ``size``-square crop."""
    matrix = estimate_transform(landmarks, size=size)
    crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)
    return np.ascontiguousarray(crop)
