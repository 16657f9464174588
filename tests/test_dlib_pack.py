"""The dlib model pack: loading, geometry, detection and verification on real faces."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

dlib = pytest.importorskip("dlib")
pytest.importorskip("face_recognition_models")

from faceledger.engine import Engine  # noqa: E402
from faceledger.errors import InvalidArgument, ModelError  # noqa: E402
from faceledger.eval.pairs import evaluate_pairs, read_csv_pairs  # noqa: E402
from faceledger.models.dlib_pack import (  # noqa: E402
    CHIP_LANDMARKS,
    CHIP_SIZE,
    DLIB_TEMPLATE_5,
    FACELEDGER_TEMPLATE,
    DlibPipeline,
    build_dlib_pipeline,
    landmarks_from_dlib5,
    similarity_transform,
    upsample_times,
)
from faceledger.models.packs import ModelFile, load_pack  # noqa: E402

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
needs_faces = pytest.mark.skipif(not FACES.is_dir(), reason="../shared/faces is not present")


@pytest.fixture(scope="module")
def dlib_engine() -> Iterator[Engine]:
    eng = Engine("dlib")
    yield eng
    eng.close()


# -- pure geometry ----------------------------------------------------------------------
def test_similarity_transform_recovers_a_known_transform() -> None:
    angle, scale, shift = 0.3, 2.5, np.array([10.0, -4.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = DLIB_TEMPLATE_5 @ rot.T + shift
    fit = similarity_transform(DLIB_TEMPLATE_5, dst)
    assert np.allclose(fit[:, :2], rot, atol=1e-9)
    assert np.allclose(fit[:, 2], shift, atol=1e-9)


def test_template_parts_map_to_the_faceledger_template() -> None:
    # A face that is exactly dlib's template, scaled and moved, gives the template's points.
    parts = DLIB_TEMPLATE_5 * 200 + 30
    got = landmarks_from_dlib5(parts)
    assert np.allclose(got, FACELEDGER_TEMPLATE * 200 + 30, atol=1e-3)
    # faceledger order: image-left eye first, mouth below nose below eyes.
    assert got[0, 0] < got[1, 0]
    assert got[3, 0] < got[4, 0]
    assert got[0, 1] < got[2, 1] < got[3, 1]


def test_chip_landmarks_lie_inside_the_chip() -> None:
    assert CHIP_LANDMARKS.shape == (5, 2)
    assert (CHIP_LANDMARKS > 0).all() and (CHIP_LANDMARKS < CHIP_SIZE).all()


@pytest.mark.parametrize(
    ("long_side", "scale", "min_face", "expected"),
    [
        (640, 1.0, 10.0, 1),  # a capped photo: one doubling keeps it within 1280
        (250, 1.0, 10.0, 2),  # a small image: up to two doublings
        (250, 1.0, 100.0, 0),  # big faces only: no doubling needed
        (1280, 1.0, 10.0, 0),  # already at the working limit
        (640, 0.5, 80.0, 1),  # shrunk image: an 80 px face is 40 px now
    ],
)
def test_upsample_times(long_side: int, scale: float, min_face: float, expected: int) -> None:
    got = upsample_times(long_side, scale=scale, min_face_size=min_face, input_cap=640)
    assert got == expected


# -- pack loading -----------------------------------------------------------------------
def test_pack_spec() -> None:
    pack = load_pack("dlib")
    assert pack.kind == "dlib"
    assert pack.embedding_dim == 128
    assert "CC0" in pack.license
    assert {f.role for f in pack.files} >= {"landmarks", "recognizer"}
    assert all(f.path.is_file() and f.sha256 for f in pack.files)
    assert pack.model_id.startswith("dlib@")
    pipeline = pack.build()
    assert isinstance(pipeline, DlibPipeline)
    assert (pipeline.dim, pipeline.aligned_size) == (128, 150)


def test_pack_is_calibrated() -> None:
    cal = load_pack("dlib").require_calibration()
    assert cal.impostor_pairs >= 1000
    assert 0.0 < cal.threshold_for(1e-3) < cal.threshold_for(1e-5) < 1.0


def test_wrong_hash_is_refused() -> None:
    pack = load_pack("dlib")
    files = tuple(
        dataclasses.replace(f, sha256="0" * 64) if f.role == "recognizer" else f for f in pack.files
    )
    with pytest.raises(ModelError, match="SHA-256"):
        build_dlib_pipeline(dataclasses.replace(pack, files=files))


def test_unknown_detector_is_refused() -> None:
    pack = dataclasses.replace(load_pack("dlib"), extra={"detector": "yolo"})
    with pytest.raises(ModelError, match="detector"):
        build_dlib_pipeline(pack)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    pack = load_pack("dlib")
    files = (ModelFile("landmarks", tmp_path / "nothing.dat", None), *pack.files[1:])
    with pytest.raises(ModelError, match="not found"):
        build_dlib_pipeline(dataclasses.replace(pack, files=files))


def test_embed_aligned_shapes() -> None:
    pipeline = load_pack("dlib").build()
    assert pipeline.embed_aligned(np.zeros((0, 150, 150, 3), np.uint8)).shape == (0, 128)
    with pytest.raises(InvalidArgument):
        pipeline.embed_aligned(np.zeros((1, 112, 112, 3), np.uint8))
    with pytest.raises(InvalidArgument):
        pipeline.align(np.zeros((50, 50, 3), np.uint8), np.zeros((4, 2), np.float32))


def test_blank_image_has_no_face(dlib_engine: Engine) -> None:
    assert dlib_engine.detect(np.full((200, 300, 3), 255, np.uint8)) == []


# -- real faces -------------------------------------------------------------------------
@needs_faces
@pytest.mark.integration
@pytest.mark.parametrize(
    ("image", "count"),
    [("facenet_pytorch/group/multiface.jpg", 6), ("insightface_pkg/group/t1.jpg", 6)],
)
def test_group_photo_faces(dlib_engine: Engine, image: str, count: int) -> None:
    faces = dlib_engine.embed(FACES / image)
    assert len(faces) == count
    for face in faces:
        assert face.embedding is not None and face.embedding.shape == (128,)
        assert abs(float(np.linalg.norm(face.embedding)) - 1.0) < 1e-4
        assert 0.5 <= face.score < 1.0
        lm = face.landmarks
        assert lm.shape == (5, 2)
        assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # image-left points first
        box = face.box
        inside = (lm[:, 0] >= box.x1 - 5) & (lm[:, 0] <= box.x2 + 5)
        assert inside.all()


@needs_faces
@pytest.mark.integration
def test_chip_matches_dlibs_own_face_chip(dlib_engine: Engine) -> None:
    """align() from faceledger's five points gives the descriptor of dlib's get_face_chip."""
    import face_recognition_models

    image = dlib_engine.load(FACES / "skimage_data" / "astronaut.png")
    face = dlib_engine.detect(image)[0]
    predictor = dlib.shape_predictor(
        face_recognition_models.pose_predictor_five_point_model_location()
    )
    b = face.box
    shape = predictor(image, dlib.rectangle(int(b.x1), int(b.y1), int(b.x2) - 1, int(b.y2) - 1))
    reference = np.asarray(dlib.get_face_chip(image, shape, size=150, padding=0.25))
    pipeline = dlib_engine.pack.build()
    ours = pipeline.align(image, face.landmarks)
    assert ours.shape == (150, 150, 3) and ours.dtype == np.uint8
    emb = pipeline.embed_aligned(np.stack([ours, reference]))
    assert float(emb[0] @ emb[1]) > 0.999


@needs_faces
@pytest.mark.integration
def test_compare_same_and_different_people(dlib_engine: Engine) -> None:
    people = FACES / "face_recognition_examples" / "identities"
    obama, obama2 = people / "barack_obama" / "obama.jpg", people / "barack_obama" / "obama2.jpg"
    biden = people / "joe_biden" / "biden.jpg"
    same = dlib_engine.compare(obama, obama2, max_fmr=1e-3)
    other = dlib_engine.compare(obama, biden, max_fmr=1e-3)
    assert same.same_person and not other.same_person
    assert same.similarity > other.similarity


@needs_faces
@pytest.mark.integration
@pytest.mark.slow
def test_deepface_pairs_accuracy(dlib_engine: Engine) -> None:
    # Measured: 0.99615 (10-fold), TAR@FAR=1e-3 1.0, every face found.
    pairs = read_csv_pairs(FACES / "deepface_tests" / "pairs" / "pairs_all.csv")
    result = evaluate_pairs(dlib_engine, pairs)
    assert result["pairs"] == 520
    assert result["faces_not_found"] <= 1
    assert result["accuracy"] >= 0.98
    assert result["model"] == dlib_engine.model_id
