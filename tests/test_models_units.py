"""Pure maths of the model layer: SCRFD decoding, NMS, input fitting, alignment, pose."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceledger.imaging import decode_image
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


def _plain_session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_graph_rewrite_of_the_detector_is_exact(faces_dir: Path) -> None:
    """SCRFD's sibling heads merged into one convolution per stride give the same outputs
    bit for bit, on a real group photo at a fitted input size."""
    import onnx

    from faceledger.models.graph import merge_sibling_convs
    from faceledger.models.packs import load_pack
    from faceledger.models.session import open_session

    detector = next(f for f in load_pack("default").files if f.role == "detector")
    assert merge_sibling_convs(onnx.load(str(detector.path))) == 6  # 3 strides x (3 -> 1)
    image = decode_image(faces_dir / "insightface_pkg" / "group" / "t1.jpg")[:448, :640]
    blob = np.ascontiguousarray((image.astype(np.float32).transpose(2, 0, 1)[None] - 127.5) / 128)
    plain = _plain_session(detector.path)
    fast = open_session(detector.path, expected_sha256=detector.sha256)
    name = plain.get_inputs()[0].name
    for want, got in zip(plain.run(None, {name: blob}), fast.run(None, {name: blob}), strict=True):
        np.testing.assert_array_equal(want, got)


def test_graph_rewrites_keep_the_recogniser_s_outputs_on_real_faces(faces_dir: Path) -> None:
    """The rewritten recogniser (PRelu and paired-group convolutions) computes the original
    model's embeddings up to float32 rounding, on real aligned faces of several identities,
    so the calibrated thresholds still hold."""
    import onnx

    from faceledger.models.graph import merge_sibling_convs, rewrite_prelu, split_channel_pairs
    from faceledger.models.packs import load_pack
    from faceledger.models.session import open_session

    recogniser = next(f for f in load_pack("default").files if f.role == "recognizer")
    model = onnx.load(str(recogniser.path))
    assert merge_sibling_convs(model) == 0
    assert split_channel_pairs(model) == 1 and rewrite_prelu(model) == 35  # 34 + the copy

    plain = _plain_session(recogniser.path)
    fast = open_session(recogniser.path, expected_sha256=recogniser.sha256)
    paths = sorted((faces_dir / "glint360k_celeb24" / "images").glob("*/*"))[::97][:16]
    crops = np.stack([decode_image(p) for p in paths]).astype(np.float32)
    batch = np.ascontiguousarray((crops.transpose(0, 3, 1, 2) - 127.5) / 127.5)
    name = plain.get_inputs()[0].name
    want, got = plain.run(None, {name: batch})[0], fast.run(None, {name: batch})[0]
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    unit = [e / np.linalg.norm(e, axis=1, keepdims=True) for e in (want, got)]
    assert np.abs(unit[0] @ unit[0].T - unit[1] @ unit[1].T).max() < 1e-5


@pytest.mark.parametrize("opset", [11, 13])
def test_sibling_merge_keeps_outputs_and_leaves_different_kernels_apart(opset: int) -> None:
    """Convolutions over one input merge only when their kernels match, also when the
    model leaves ``kernel_shape`` implicit; the Split suits the model's opset."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from faceledger.models.graph import merge_sibling_convs

    rng = np.random.default_rng(opset)
    kernels = {"a": (2, 3), "b": (5, 3), "c": (4, 1)}  # out channels, side
    inits, nodes = [], []
    for name, (out, side) in kernels.items():
        weight = rng.normal(size=(out, 8, side, side)).astype(np.float32)
        inits += [
            numpy_helper.from_array(weight, f"{name}_w"),
            numpy_helper.from_array(rng.normal(size=out).astype(np.float32), f"{name}_b"),
        ]
        nodes.append(helper.make_node("Conv", ["x", f"{name}_w", f"{name}_b"], [name]))
    graph = helper.make_graph(
        nodes,
        "siblings",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 9, 9])],
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, out, 10 - side, 10 - side])
            for name, (out, side) in kernels.items()
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    original = model.SerializeToString()
    assert merge_sibling_convs(model) == 1  # a and b (3x3) merge; c (1x1) stays
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["Conv", "Split", "Conv"]
    x = rng.normal(size=(1, 8, 9, 9)).astype(np.float32)
    sessions = [
        ort.InferenceSession(m, providers=["CPUExecutionProvider"])
        for m in (original, model.SerializeToString())
    ]
    want, got = (s.run(list(kernels), {"x": x}) for s in sessions)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(w, g)


def test_a_rewrite_that_fails_leaves_the_original_model_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Graph rewrites are an optimisation: one that raises, or a rewritten graph ONNX
    Runtime rejects, must not stop a (directory-pack) model from loading."""
    import faceledger.models.graph as graph
    import faceledger.models.session as session
    from faceledger.models.packs import load_pack

    recogniser = next(f for f in load_pack("default").files if f.role == "recognizer")
    x = np.zeros((1, 3, 112, 112), np.float32)
    want = _plain_session(recogniser.path).run(None, {"input.1": x})[0]

    def broken(model: Any) -> int:
        raise IndexError("unforeseen layout")

    monkeypatch.setattr(graph, "rewrite_prelu", broken)
    assert graph.optimise(recogniser.path) is None
    monkeypatch.setattr(session, "optimise", lambda path: b"not an onnx model")
    loaded = session.open_session(recogniser.path, expected_sha256=recogniser.sha256)
    np.testing.assert_array_equal(loaded.run(None, {"input.1": x})[0], want)


@pytest.mark.parametrize("producer_group", [1, 8])
def test_paired_group_split_matches_the_grouped_convolution(producer_group: int) -> None:
    """A grouped convolution with two channels per group fed by PRelu(Conv) becomes two
    depthwise convolutions with the same outputs; a grouped producer (whose permuted copy
    would mix its groups) is left alone."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from faceledger.models.graph import split_channel_pairs

    rng = np.random.default_rng(producer_group)
    pad = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    inits = [
        numpy_helper.from_array(
            rng.normal(size=(8, 8 // producer_group, 3, 3)).astype(np.float32), "w0"
        ),
        numpy_helper.from_array(rng.normal(size=8).astype(np.float32), "b0"),
        numpy_helper.from_array(rng.uniform(-0.5, 0.9, (8, 1, 1)).astype(np.float32), "s"),
        numpy_helper.from_array(rng.normal(size=(8, 2, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(size=8).astype(np.float32), "b1"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["c"], group=producer_group, **pad),
        helper.make_node("PRelu", ["c", "s"], ["p"]),
        helper.make_node("Conv", ["p", "w1", "b1"], ["y"], group=4, **pad),
    ]
    graph = helper.make_graph(
        nodes,
        "pairs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 6, 6])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    original = model.SerializeToString()
    assert split_channel_pairs(model) == (1 if producer_group == 1 else 0)
    x = rng.normal(size=(1, 8, 6, 6)).astype(np.float32)
    want, got = (
        ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        for m in (original, model.SerializeToString())
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
