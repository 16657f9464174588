"""Domain results to response models (no logic beyond reshaping)."""

from __future__ import annotations

import numpy as np

from faceledger.api.schemas import DetectedFace, QualityPublic
from faceledger.types import Face


def detected(face: Face) -> DetectedFace:
    return DetectedFace(
        box=face.box.as_list(),
        landmarks=np.round(face.landmarks.astype(np.float64), 2).tolist(),
        score=round(face.score, 4),
        quality=QualityPublic.model_validate(face.quality),
    )
