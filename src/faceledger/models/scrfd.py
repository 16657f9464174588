"""SCRFD face detector: fitted input size, stride 8/16/32 decoding, NMS, 5 landmarks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from faceledger.errors import ModelError
from faceledger.imaging.resize import shrink
from faceledger.types import FloatArray, UInt8Image

STRIDES = (8, 16, 32)
ANCHORS_PER_CELL = 2


@dataclass(frozen=True, slots=True)
class Detections:
    """Detections in image pixels: ``boxes (n, 4)``, ``landmarks (n, 5, 2)``, ``scores (n,)``."""

    boxes: FloatArray
    landmarks: FloatArray
    scores: FloatArray

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def fitted_input_size(height: int, width: int, *, cap: int) -> tuple[float, int, int]:
    """Scale and padded input ``(scale, h, w)``: long side at most ``cap``, multiple of 32."""
    scale = min(1.0, cap / max(height, width))
    new_h = max(32, math.ceil(height * scale / 32) * 32)
    new_w = max(32, math.ceil(width * scale / 32) * 32)
    return scale, new_h, new_w


def anchor_centers(height: int, width: int, stride: int) -> FloatArray:
    """Anchor centres ``(h/stride * w/stride * 2, 2)`` as (x, y), two anchors per cell."""
    rows, cols = height // stride, width // stride
    ys, xs = np.mgrid[:rows, :cols]
    centers = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centers, ANCHORS_PER_CELL, axis=0)


def distance_to_box(centers: FloatArray, dist: FloatArray) -> FloatArray:
    """Boxes ``(n, 4)`` from centres ``(n, 2)`` and distances to the left/top/right/bottom."""
    return np.concatenate([centers - dist[:, 0:2], centers + dist[:, 2:4]], axis=1)


def distance_to_keypoints(centers: FloatArray, dist: FloatArray) -> FloatArray:
    """Keypoints ``(n, 5, 2)`` from centres ``(n, 2)`` and offsets ``(n, 10)``."""
    return centers[:, None, :] + dist.reshape(-1, 5, 2)


def nms(boxes: FloatArray, scores: FloatArray, *, iou_threshold: float) -> npt.NDArray[np.intp]:
    """Indices kept by greedy non-maximum suppression, highest score first."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep: list[int] = []
    while order.size > 0:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[iou <= iou_threshold]
    return np.array(keep, dtype=np.intp)


class ScrfdDetector:
    """Runs an SCRFD ``*_bnkps`` ONNX model (score, bbox and keypoint heads per stride)."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self._session = session
        self._input_name = session.get_inputs()[0].name
        names = [o.name for o in session.get_outputs()]
        if len(names) != 9:
            raise ModelError(f"SCRFD with keypoints has 9 outputs, this model has {len(names)}")
        self._output_names = names
        # Outputs are ordered score x3, bbox x3, kps x3 (InsightFace export convention).
        self._center_cache: dict[tuple[int, int, int], FloatArray] = {}

    @staticmethod
    def accepts(session: ort.InferenceSession) -> bool:
        """True when the model's outputs look like SCRFD with keypoints."""
        outputs = session.get_outputs()
        return len(outputs) == 9 and outputs[6].shape[-1] == 10

    def _centers(self, height: int, width: int, stride: int) -> FloatArray:
        key = (height, width, stride)
        cached = self._center_cache.get(key)
        if cached is None:
            cached = anchor_centers(height, width, stride)
            if len(self._center_cache) < 64:
                self._center_cache[key] = cached
        return cached

    def detect(
        self,
        image: UInt8Image,
        *,
        input_cap: int = 640,
        score_threshold: float = 0.5,
        iou_threshold: float = 0.4,
        min_face_size: float = 0.0,
    ) -> Detections:
        """Detect faces in an RGB image; the network input is fitted to the image size."""
        height, width = image.shape[:2]
        scale, in_h, in_w = fitted_input_size(height, width, cap=input_cap)
        resized = image
        if scale != 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            resized = shrink(image, size)
        canvas = np.zeros((in_h, in_w, 3), dtype=np.float32)
        rh, rw = resized.shape[:2]
        canvas[:rh, :rw] = resized
        canvas -= 127.5
        canvas *= 1.0 / 128.0
        blob = canvas.transpose(2, 0, 1)[None]
        try:
            outputs = self._session.run(self._output_names, {self._input_name: blob})
        except Exception as exc:
            raise ModelError(f"detector failed: {exc}") from exc
        boxes, kpss, scores = [], [], []
        for i, stride in enumerate(STRIDES):
            score = np.asarray(outputs[i]).reshape(-1)
            keep = np.nonzero(score >= score_threshold)[0]
            if keep.size == 0:
                continue
            centers = self._centers(in_h, in_w, stride)[keep]
            bbox = np.asarray(outputs[i + 3]).reshape(-1, 4)[keep] * stride
            kps = np.asarray(outputs[i + 6]).reshape(-1, 10)[keep] * stride
            boxes.append(distance_to_box(centers, bbox))
            kpss.append(distance_to_keypoints(centers, kps))
            scores.append(score[keep])
        if not scores:
            return Detections(
                np.zeros((0, 4), np.float32),
                np.zeros((0, 5, 2), np.float32),
                np.zeros(0, np.float32),
            )
        all_boxes = np.concatenate(boxes) / scale
        all_kps = np.concatenate(kpss) / scale
        all_scores = np.concatenate(scores)
        kept = nms(all_boxes, all_scores, iou_threshold=iou_threshold)
        all_boxes, all_kps, all_scores = all_boxes[kept], all_kps[kept], all_scores[kept]
        np.clip(all_boxes[:, 0::2], 0, width, out=all_boxes[:, 0::2])
        np.clip(all_boxes[:, 1::2], 0, height, out=all_boxes[:, 1::2])
        if min_face_size > 0:
            sides = np.minimum(all_boxes[:, 2] - all_boxes[:, 0], all_boxes[:, 3] - all_boxes[:, 1])
            big = sides >= min_face_size
            all_boxes, all_kps, all_scores = all_boxes[big], all_kps[big], all_scores[big]
        return Detections(
            all_boxes.astype(np.float32), all_kps.astype(np.float32), all_scores.astype(np.float32)
        )
