"""The face pipeline interface a model pack provides, and the ONNX (InsightFace) pipeline."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from faceledger.models.align import align_face
from faceledger.models.arcface import ArcFaceEmbedder
from faceledger.models.scrfd import Detections, ScrfdDetector
from faceledger.types import FloatArray, UInt8Image


class FacePipeline(Protocol):
    """Detection, alignment and embedding for one model pack."""

    dim: int
    aligned_size: int

    def detect(self, image: UInt8Image, *, min_face_size: float, input_cap: int) -> Detections:
        """Faces of an RGB image with boxes, 5 landmarks and scores."""
        ...

    def align(self, image: UInt8Image, landmarks: FloatArray) -> UInt8Image:
        """The aligned crop ``(s, s, 3)`` of the face with ``landmarks (5, 2)``."""
        ...

    def embed_aligned(self, crops: UInt8Image) -> FloatArray:
        """Embeddings ``(n, dim)`` float32, L2-normalised, of aligned crops ``(n, s, s, 3)``."""
        ...


class OnnxPipeline:
    """SCRFD detection, ArcFace-template alignment and an ArcFace recogniser."""

    def __init__(self, detector: ScrfdDetector, embedder: ArcFaceEmbedder) -> None:
        self._detector = detector
        self._embedder = embedder
        self.dim = embedder.dim
        self.aligned_size = embedder.input_size

    def detect(self, image: UInt8Image, *, min_face_size: float, input_cap: int) -> Detections:
        return self._detector.detect(image, min_face_size=min_face_size, input_cap=input_cap)

    def align(self, image: UInt8Image, landmarks: FloatArray) -> UInt8Image:
        return align_face(image, landmarks, size=self.aligned_size)

    def embed_aligned(self, crops: UInt8Image) -> FloatArray:
        if crops.shape[0] == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._embedder.embed(crops)
