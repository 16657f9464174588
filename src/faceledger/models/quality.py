"""Face quality: size, sharpness, exposure, pose from landmarks, and an overall grade.

The grade plays the role of Azure's ``qualityForRecognition`` and Rekognition's quality
filter: ``low`` faces are refused for enrolment by default; ``medium`` and ``high`` are
accepted. Thresholds below were chosen by looking at the score distributions of the
faces in ``../shared/faces`` (crops of 25 px in ``imfdb_subset`` grade low; portraits grade
high) and are deliberately conservative: a low grade means recognition is unreliable.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from faceledger.types import FloatArray, Grade, Quality, UInt8Image

MIN_SIZE_LOW = 32.0
"""Faces whose shorter box side is below this (pixels) grade ``low``."""
MIN_SIZE_HIGH = 80.0
SHARPNESS_LOW = 0.15
SHARPNESS_HIGH = 0.35
EXPOSURE_LOW = 0.25
YAW_LOW = 50.0
YAW_HIGH = 25.0
PITCH_LOW = 45.0
FRONTAL_NOSE_RATIO = 0.58
NOSE_DEPTH = 1.0
"""Nose-tip depth in front of the eyes, in half inter-ocular distances."""
SHARPNESS_SCALE = 120.0
"""Laplacian variance at which sharpness is 0.5 (the normalisation ``v / (v + scale)``)."""


def estimate_pose(landmarks: FloatArray) -> tuple[float, float, float]:
    """Rough ``(yaw, pitch, roll)`` in degrees from 5 landmarks ``(5, 2)``.

    Roll is the eye-line angle. Yaw compares the nose's horizontal offset from the eye
    midpoint with half the inter-ocular distance (a rigid head model: ``tan(yaw)``);
    pitch compares the nose's vertical
    position between eyes and mouth with the median frontal ratio of detected faces (0.58;
    the ArcFace template has 0.49, but SCRFD places the nose tip lower than that template).
    """
    left_eye, right_eye, nose, mouth_l, mouth_r = (
        landmarks[i].astype(np.float64) for i in range(5)
    )
    eye_vec = right_eye - left_eye
    roll = math.degrees(math.atan2(eye_vec[1], eye_vec[0]))
    eye_dist = float(np.hypot(*eye_vec)) or 1e-6
    # Rotate into the eye-line frame so roll does not leak into yaw and pitch.
    c, s = math.cos(-math.radians(roll)), math.sin(-math.radians(roll))
    rot = np.array([[c, -s], [s, c]])
    eyes_mid = (left_eye + right_eye) / 2
    nose_r = rot @ (nose - eyes_mid)
    mouth_r_ = rot @ ((mouth_l + mouth_r) / 2 - eyes_mid)
    # With the nose tip about one half inter-ocular distance in front of the eyes, the
    # nose offset over half the (foreshortened) eye distance is tan(yaw).
    yaw = math.degrees(math.atan(float(nose_r[0] / (eye_dist / 2)) / NOSE_DEPTH))
    span = mouth_r_[1] if abs(mouth_r_[1]) > 1e-6 else 1e-6
    pitch_ratio = float(nose_r[1] / span)
    pitch = float(np.clip((pitch_ratio - FRONTAL_NOSE_RATIO) / 0.5, -1.0, 1.0)) * 90.0
    return yaw, pitch, roll


def sharpness_of(gray: UInt8Image) -> float:
    """Sharpness in 0..1 from the variance of the Laplacian of a grayscale crop."""
    var = float(cv2.Laplacian(gray, cv2.CV_64F).var())
    return var / (var + SHARPNESS_SCALE)


def exposure_of(gray: UInt8Image) -> float:
    """Exposure in 0..1: 1 for a well centred histogram, falling with darkness, glare, clipping."""
    mean = float(gray.mean()) / 255.0
    clipped = float(np.mean((gray <= 5) | (gray >= 250)))
    centred = 1.0 - min(1.0, abs(mean - 0.5) / 0.4)
    return max(0.0, centred - clipped)


def grade_of(
    *, face_size: float, sharpness: float, exposure: float, yaw: float, pitch: float
) -> Grade:
    """The overall ``low|medium|high`` grade from the individual measures."""
    if (
        face_size < MIN_SIZE_LOW
        or sharpness < SHARPNESS_LOW
        or exposure < EXPOSURE_LOW
        or abs(yaw) > YAW_LOW
        or abs(pitch) > PITCH_LOW
    ):
        return "low"
    if face_size >= MIN_SIZE_HIGH and sharpness >= SHARPNESS_HIGH and abs(yaw) <= YAW_HIGH:
        return "high"
    return "medium"


def assess(aligned: UInt8Image, landmarks: FloatArray, *, face_size: float) -> Quality:
    """Quality of one face from its aligned crop ``(s, s, 3)`` and its landmarks ``(5, 2)``."""
    # Measure on the central face region so background and borders do not count.
    s = aligned.shape[0]
    lo, hi = int(s * 0.2), int(s * 0.9)
    crop = np.ascontiguousarray(aligned[lo:hi, lo:hi])
    gray = np.asarray(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), dtype=np.uint8)
    # Sharpness depends on resolution: a small face upsampled into 112 px looks blurred,
    # which is exactly what recognition suffers from, so no size correction is applied.
    sharp = sharpness_of(gray)
    expo = exposure_of(gray)
    yaw, pitch, roll = estimate_pose(landmarks)
    grade = grade_of(face_size=face_size, sharpness=sharp, exposure=expo, yaw=yaw, pitch=pitch)
    return Quality(
        face_size=round(face_size, 1),
        sharpness=round(sharp, 3),
        exposure=round(expo, 3),
        yaw=round(yaw, 1),
        pitch=round(pitch, 1),
        roll=round(roll, 1),
        grade=grade,
    )
