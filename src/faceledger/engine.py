"""The face engine: decode, detect, align, assess quality and embed, over any model pack."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any, TypeVar

import cv2
import numpy as np

from faceledger.budget import Gate
from faceledger.errors import InvalidArgument, NoFace
from faceledger.imaging import ImageLimits, decode_image, shrink
from faceledger.models.align import ARCFACE_TEMPLATE
from faceledger.models.packs import ModelPack, load_pack
from faceledger.models.quality import assess
from faceledger.models.scrfd import Detections
from faceledger.types import Box, Comparison, Face, FloatArray, Quality, UInt8Image

ImageInput = bytes | str | os.PathLike[str] | np.ndarray[Any, Any]
T = TypeVar("T")
R = TypeVar("R")

CONTEXT_PAD = 0.5
"""When nothing is found, the image is padded by this fraction per side and searched again:
a tight face crop without surrounding context is otherwise missed by the detector."""


RECOGNISER_BATCH = 2
"""Most faces per recogniser call. On one ONNX Runtime thread MobileFaceNet takes about the
same time per face in batches of 2 to 4 112x112 crops (batches of 6-8 outgrow the L2
cache and are slower); batches of 2 spread a photo's faces over the most workers (group
photos on 2 workers: 3% faster than batches of 4, measured twice)."""


@dataclass(frozen=True)
class _Located:
    """The faces of one image before embedding: detections, aligned crops and quality."""

    detections: Detections
    crops: UInt8Image
    qualities: list[Quality]


def _iou(box: FloatArray, boxes: FloatArray) -> FloatArray:
    """Intersection over union of one box ``(4,)`` with each of ``boxes (n, 4)``."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-6), dtype=np.float32)


def _batches(crops: UInt8Image) -> list[UInt8Image]:
    """``crops`` split into near-equal recogniser batches of at most ``RECOGNISER_BATCH``
    (one empty batch when there are none, which embeds to zero rows)."""
    return list(np.array_split(crops, max(1, -(-len(crops) // RECOGNISER_BATCH))))


def similarity(a: FloatArray, b: FloatArray) -> float:
    """Cosine similarity of two L2-normalised embeddings."""
    return float(np.dot(a, b))


class Engine:
    """Finds faces in images and turns them into comparable embeddings.

    Inputs are a path, encoded bytes or an RGB NumPy array. Work over many images runs
    in parallel threads (ONNX Runtime releases the GIL), one inference thread each.
    """

    def __init__(
        self,
        pack: str | ModelPack = "default",
        *,
        workers: int = 0,
        min_face_size: float = 10.0,
        detector_input_cap: int = 640,
        limits: ImageLimits | None = None,
        gate: Gate | None = None,
        max_faces: int = 0,
    ) -> None:
        self.pack = load_pack(pack) if isinstance(pack, str) else pack
        self.model_id = self.pack.model_id
        self.workers = workers or os.cpu_count() or 1
        self.min_face_size = min_face_size
        self.detector_input_cap = detector_input_cap
        self.limits = limits or ImageLimits()
        self.max_faces = max_faces
        """Only the largest this many faces of an image are aligned and embedded (0: all)."""
        self.gate = gate or Gate(self.workers)
        """Every image is decoded, located and embedded in one slot of this gate."""
        self._pipeline = self.pack.build(threads=1)
        self._pool: ThreadPoolExecutor | None = None

    # -- images -----------------------------------------------------------------------
    def load(self, image: ImageInput) -> UInt8Image:
        """Decode an input into an RGB uint8 array within the configured limits."""
        return decode_image(
            image, max_bytes=self.limits.max_bytes, max_pixels=self.limits.max_pixels
        )

    def _detections(self, rgb: UInt8Image, min_face_size: float) -> Detections:
        det = self._pipeline.detect(
            rgb, min_face_size=min_face_size, input_cap=self.detector_input_cap
        )
        if len(det) > 0:
            return det
        h, w = rgb.shape[:2]
        pad_y, pad_x = int(h * CONTEXT_PAD), int(w * CONTEXT_PAD)
        # Shrunk to the detector's input before padding, not after: padding a 40 Mpx
        # photo first held a 160 Mpx canvas (480 MB) that the detector then shrank.
        fit = min(1.0, self.detector_input_cap / max(h + 2 * pad_y, w + 2 * pad_x))
        small = rgb
        if fit < 1.0:
            small = shrink(rgb, (max(1, round(w * fit)), max(1, round(h * fit))))
        fy, fx = small.shape[0] / h, small.shape[1] / w
        py, px = round(pad_y * fy), round(pad_x * fx)
        mean = [int(v) for v in small.reshape(-1, 3).mean(axis=0)]
        padded = np.asarray(
            cv2.copyMakeBorder(small, py, py, px, px, cv2.BORDER_CONSTANT, value=mean),
            dtype=np.uint8,
        )
        det = self._pipeline.detect(
            padded, min_face_size=min_face_size * fx, input_cap=self.detector_input_cap
        )
        if len(det) == 0:
            return det
        shift = np.array([px, py], dtype=np.float32)
        factor = np.array([fx, fy], dtype=np.float32)
        boxes = np.divide(det.boxes - np.tile(shift, 2), np.tile(factor, 2), dtype=np.float32)
        np.clip(boxes[:, 0::2], 0, w, out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0, h, out=boxes[:, 1::2])
        landmarks = np.divide(det.landmarks - shift, factor, dtype=np.float32)
        return Detections(boxes, landmarks, det.scores)

    def _locate(self, rgb: UInt8Image, min_face_size: float | None) -> _Located:
        """Detect, align and grade the faces of a decoded image (everything but embedding)."""
        det = self._detections(rgb, self.min_face_size if min_face_size is None else min_face_size)
        if 0 < self.max_faces < len(det):  # the cap applies before any face costs an embedding
            area = (det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])
            keep = np.sort(np.argsort(-area, kind="stable")[: self.max_faces])
            det = Detections(det.boxes[keep], det.landmarks[keep], det.scores[keep])
        size = self._pipeline.aligned_size
        crops = np.empty((len(det), size, size, 3), dtype=np.uint8)
        qualities = []
        for i in range(len(det)):
            crops[i] = self._pipeline.align(rgb, det.landmarks[i])
            x1, y1, x2, y2 = (float(v) for v in det.boxes[i])
            qualities.append(assess(crops[i], det.landmarks[i], face_size=min(x2 - x1, y2 - y1)))
        return _Located(det, crops, qualities)

    def _locate_and_start_embedding(
        self, image: ImageInput
    ) -> tuple[_Located, FloatArray, list[Future[FloatArray]]]:
        """Decode and locate, hand any recogniser batches after the first to the other
        workers at once, then embed the first batch (all faces of most photos) here."""
        with self.gate.slot():
            located = self._locate(self.load(image), None)
            first, *rest = _batches(located.crops)
            pool = self._executor()
            later = [pool.submit(self._pipeline.embed_aligned, batch) for batch in rest]
            return located, self._pipeline.embed_aligned(first), later

    def _embed_crops(self, crops: UInt8Image) -> FloatArray:
        """Embeddings of aligned crops, run in recogniser batches (``RECOGNISER_BATCH``)."""
        return np.concatenate([self._pipeline.embed_aligned(c) for c in _batches(crops)])

    def _faces(self, located: _Located, embeddings: FloatArray | None) -> list[Face]:
        det = located.detections
        faces = []
        for i in range(len(det)):
            x1, y1, x2, y2 = (float(v) for v in det.boxes[i])
            faces.append(
                Face(
                    box=Box(x1, y1, x2, y2),
                    landmarks=det.landmarks[i],
                    score=float(det.scores[i]),
                    quality=located.qualities[i],
                    model=self.model_id,
                    embedding=None if embeddings is None else embeddings[i],
                )
            )
        faces.sort(key=lambda f: f.box.width * f.box.height, reverse=True)
        return faces

    # -- public API ---------------------------------------------------------------------
    def detect(self, image: ImageInput, *, min_face_size: float | None = None) -> list[Face]:
        """Faces in an image with boxes, landmarks, scores and quality, largest first."""
        with self.gate.slot():
            return self._faces(self._locate(self.load(image), min_face_size), None)

    def embed(
        self, image: ImageInput, *, min_face_size: float | None = None, upright: bool = False
    ) -> list[Face]:
        """Faces in an image with their embeddings ``(dim,)``, largest first.

        With ``upright`` (enrolment) the image is also searched upside down: a face found
        there with a higher detector score is an inverted face (the detector reads an
        upside-down face as an upright one with the mouth for eyes, and its embedding
        matches nobody), so its roll is reported as 180 degrees and it grades ``low``.
        """
        with self.gate.slot():
            rgb = self.load(image)
            located = self._locate(rgb, min_face_size)
            if upright and len(located.detections):
                self._mark_inverted(rgb, located, min_face_size)
            return self._faces(located, self._embed_crops(located.crops))

    def _mark_inverted(
        self, rgb: UInt8Image, located: _Located, min_face_size: float | None
    ) -> None:
        h, w = rgb.shape[:2]
        # Turned at the detector's input size, not the photo's: turning a 40 Mpx photo
        # whole held another 120 MB per request for a decision made at 640 px.
        factor = min(1.0, self.detector_input_cap / max(h, w))
        small = rgb
        if factor < 1.0:
            small = shrink(rgb, (max(1, round(w * factor)), max(1, round(h * factor))))
        sh, sw = small.shape[:2]
        min_size = self.min_face_size if min_face_size is None else min_face_size
        turned = self._pipeline.detect(
            np.ascontiguousarray(small[::-1, ::-1]),
            min_face_size=min_size * sw / w,
            input_cap=self.detector_input_cap,
        )
        if not len(turned):
            return
        back = np.stack(
            [
                sw - turned.boxes[:, 2],
                sh - turned.boxes[:, 3],
                sw - turned.boxes[:, 0],
                sh - turned.boxes[:, 1],
            ],
            axis=1,
        ) * np.array([w / sw, h / sh, w / sw, h / sh], dtype=np.float32)
        det = located.detections
        for i in range(len(det)):
            overlap = _iou(det.boxes[i], back)
            j = int(np.argmax(overlap))
            if overlap[j] > 0.3 and float(turned.scores[j]) > float(det.scores[i]):
                located.qualities[i] = replace(located.qualities[i], roll=180.0, grade="low")

    def embed_largest(self, image: ImageInput) -> Face:
        """The embedded largest face of an image.

        Raises:
            NoFace: the image holds no detectable face.
        """
        faces = self.embed(image)
        if not faces:
            raise NoFace("no face found in the image")
        return faces[0]

    def _aligned_crop(self, image: ImageInput) -> UInt8Image:
        """A decoded aligned crop at the recogniser's size (resized when it is not)."""
        rgb = self.load(image)
        size = self._pipeline.aligned_size
        if rgb.shape[:2] != (size, size):
            rgb = np.asarray(cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA), np.uint8)
        return rgb

    def embed_aligned(self, images: Sequence[ImageInput]) -> FloatArray:
        """Embeddings ``(n, dim)`` of already aligned face crops, without detection.

        Crops that are not the recogniser's size (112 px) are resized to it.
        """
        with self.gate.slot():
            crops = [self._aligned_crop(image) for image in images]
            if not crops:
                return np.zeros((0, self.pack.embedding_dim), dtype=np.float32)
            return self._pipeline.embed_aligned(np.stack(crops))

    def embed_aligned_face(self, image: ImageInput) -> Face:
        """An already aligned crop as a face: template landmarks, quality, embedding."""
        with self.gate.slot():
            rgb = self._aligned_crop(image)
            size = self._pipeline.aligned_size
            landmarks = (ARCFACE_TEMPLATE * (size / 112.0)).astype(np.float32)
            emb = self._pipeline.embed_aligned(rgb[None])[0]
        return Face(
            box=Box(0.0, 0.0, float(size), float(size)),
            landmarks=landmarks,
            score=1.0,
            quality=assess(rgb, landmarks, face_size=float(size)),
            model=self.model_id,
            embedding=emb,
        )

    def embed_center(self, image: ImageInput) -> Face:
        """Embed the image centre as a face (the LFW protocol's fallback when none is found)."""
        with self.gate.slot():
            rgb = self.load(image)
            h, w = rgb.shape[:2]
            side = min(h, w) * 0.6
            landmarks = (ARCFACE_TEMPLATE / 112.0 * side + [(w - side) / 2, (h - side) / 2]).astype(
                np.float32
            )
            crop = self._pipeline.align(rgb, landmarks)
            emb = self._pipeline.embed_aligned(crop[None])[0]
        box = Box((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
        return Face(
            box=box,
            landmarks=landmarks,
            score=0.0,
            quality=assess(crop, landmarks, face_size=side),
            model=self.model_id,
            embedding=emb,
            fallback=True,
        )

    def compare(self, a: ImageInput, b: ImageInput, *, max_fmr: float = 1e-4) -> Comparison:
        """Compare the largest faces of two images at a stated false match rate.

        Raises:
            NoFace: one image holds no face; ``image`` (``first``/``second``) says which.
        """
        found = list(self.map(self.embed, [a, b]))
        for which, faces in zip(("first", "second"), found, strict=True):
            if not faces:
                raise NoFace(
                    f"no face found in the {which} image: give a photo with a visible face",
                    image=which,
                )
        fa, fb = (faces[0].require_embedding() for faces in found)
        return self.compare_embeddings(fa, fb, max_fmr=max_fmr)

    def compare_embeddings(
        self, a: FloatArray, b: FloatArray, *, max_fmr: float = 1e-4
    ) -> Comparison:
        """Similarity of two embeddings of this pack with the threshold for ``max_fmr``."""
        if a.shape != (self.pack.embedding_dim,) or b.shape != a.shape:
            raise InvalidArgument(f"embeddings must be ({self.pack.embedding_dim},) of this pack")
        cal = self.pack.require_calibration()
        sim = similarity(a, b)
        threshold = cal.threshold_for(max_fmr)
        return Comparison(
            similarity=round(sim, 5),
            threshold=round(threshold, 5),
            max_fmr=max_fmr,
            fmr=cal.fmr_at(sim),
            same_person=sim >= threshold,
            model=self.model_id,
        )

    # -- parallel work -----------------------------------------------------------------
    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """Apply ``fn`` to ``items`` on the engine's worker threads, keeping order."""
        if self.workers <= 1:
            return map(fn, items)
        # each item runs in a copy of the caller's context (its request's budget and guard)
        contexts = ((copy_context(), item) for item in items)
        return self._executor().map(lambda ci: ci[0].run(fn, ci[1]), contexts)

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="faceledger-engine")
        return self._pool

    def embed_many(self, images: Iterable[ImageInput]) -> Iterator[list[Face]]:
        """``embed`` over many images in parallel, results in input order.

        Work is split finer than one image: as soon as a photo's faces are found, its
        recogniser batches after the first go to the other workers while the first is
        embedded in place, and the next images are already being decoded and searched, so
        a photo with many faces does not leave cores idle (nor does the last photo).
        """
        if self.workers <= 1:
            return map(self.embed, images)
        return self._embed_pipelined(iter(images))

    def _embed_pipelined(self, images: Iterator[ImageInput]) -> Iterator[list[Face]]:
        pool = self._executor()
        start = self._locate_and_start_embedding
        ahead = deque(
            pool.submit(copy_context().run, start, image)
            for image in islice(images, 2 * self.workers)
        )
        while ahead:
            located, first, later = ahead.popleft().result()
            for image in islice(images, 1):
                ahead.append(pool.submit(copy_context().run, start, image))
            embeddings = np.concatenate([first, *(f.result() for f in later)])
            yield self._faces(located, embeddings)

    def close(self) -> None:
        """Stop the worker threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
