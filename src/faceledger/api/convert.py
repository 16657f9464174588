"""Domain results to response models (no logic beyond reshaping)."""

from __future__ import annotations

from faceledger.api.schemas import DetectedFace
from faceledger.types import Face


def detected(face: Face) -> DetectedFace:
    return DetectedFace.model_validate(face.public())
