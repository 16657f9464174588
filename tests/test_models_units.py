"""Pure maths of the model layer: SCRFD decoding, NMS, input fitting, alignment, pose."""

from __future__ import annotations

import numpy as np

from faceledger.models.align import ARCFACE_TEMPLATE, align_face, estimate_transform
from faceledger.models.quality import estimate_pose, grade_of
from faceledger.models.scrfd import (
    anchor_centers,
    distance_to_box,
    distance_to_keypoints,
    fitted_input_size,
    nms,
)


def test_fitted_input_size_is_small_for_small_images_and_capped() -> None:
    assert fitted_input_size(250, 250, cap=640) == (1.0, 256, 256)
    scale, h, w = fitted_input_size(1080, 1920, cap=640)
    assert w == 640 and h == 384 and abs(scale - 640 / 1920) < 1e-9
    assert fitted_input_size(10, 10, cap=640)[1:] == (32, 32)


def test_anchor_centres_two_per_cell_in_xy_order() -> None:
    c = anchor_centers(64, 96, 32)
    assert c.shape == (2 * 3 * 2, 2)
    np.testing.assert_array_equal(c[:6], [[0, 0], [0, 0], [32, 0], [32, 0], [64, 0], [64, 0]])


def test_distance_decoding() -> None:
    centers = np.array([[10.0, 20.0]], dtype=np.float32)
    box = distance_to_box(centers, np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32))
    np.testing.assert_array_equal(box, [[9, 18, 13, 24]])
    kps = distance_to_keypoints(centers, np.arange(10, dtype=np.float32)[None])
    assert kps.shape == (1, 5, 2)
    np.testing.assert_array_equal(kps[0, 1], [12, 23])


def test_nms_keeps_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=np.float32)
    scores = np.array([0.8, 0.9, 0.7], dtype=np.float32)
    assert nms(boxes, scores, iou_threshold=0.4).tolist() == [1, 2]


def test_alignment_maps_landmarks_onto_template() -> None:
    rng = np.random.default_rng(0)
    angle, scale, shift = 0.3, 2.5, np.array([40.0, 70.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = (ARCFACE_TEMPLATE @ rot.T * scale + shift).astype(np.float32)
    matrix = estimate_transform(landmarks)
    mapped = landmarks @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(mapped, ARCFACE_TEMPLATE, atol=1e-3)
    image = rng.integers(0, 255, (400, 400, 3), dtype=np.uint8)
    crop = align_face(image, landmarks)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8 and crop.flags.c_contiguous


def test_pose_of_template_is_frontal_and_roll_is_measured() -> None:
    yaw, _, roll = estimate_pose(ARCFACE_TEMPLATE)
    assert abs(yaw) < 5 and abs(roll) < 1
    angle = np.radians(20)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    _, _, roll = estimate_pose((ARCFACE_TEMPLATE @ rot.T).astype(np.float32))
    assert abs(roll - 20) < 0.5


def test_grade_thresholds() -> None:
    good = {"face_size": 120.0, "sharpness": 0.8, "exposure": 0.7, "yaw": 5.0, "pitch": 0.0}
    assert grade_of(**good) == "high"
    assert grade_of(**{**good, "face_size": 20.0}) == "low"
    assert grade_of(**{**good, "yaw": 70.0}) == "low"
    assert grade_of(**{**good, "face_size": 60.0}) == "medium"


def test_prelu_rewrite_is_exact_and_keeps_the_pinned_hash() -> None:
    import onnxruntime as ort

    from faceledger.models.graph import fast_prelu
    from faceledger.models.packs import load_pack
    from faceledger.models.session import open_session

    path = next(f.path for f in load_pack("default").files if f.role == "recognizer")
    assert fast_prelu(path) is not None  # w600k_mbf has PRelu layers to rewrite
    options = ort.SessionOptions()
    options.log_severity_level = 3
    plain = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    fast = open_session(path, expected_sha256=load_pack("default").files[1].sha256)
    x = np.random.default_rng(0).uniform(-1, 1, (4, 3, 112, 112)).astype(np.float32)
    name = plain.get_inputs()[0].name
    np.testing.assert_array_equal(plain.run(None, {name: x})[0], fast.run(None, {name: x})[0])
