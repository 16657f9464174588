"""What batch work passes between the driver, its workers and the service (no Ray here).

These are plain frozen dataclasses that pickle, so a Ray worker can build them and the
driver can hand them to the service: an engine's settings (:class:`EngineSpec`), an image
to embed (:class:`ImageJob`) and what embedding it found (:class:`EmbeddedImage`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from faceledger.engine import Engine, ImageInput
from faceledger.errors import FaceledgerError, ModelError
from faceledger.imaging import ImageLimits
from faceledger.types import Face


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """How to build an engine equal to the driver's, in another process or on another node.

    ``model_id`` is the driver's model (pack name plus weight hashes): a worker whose
    weights differ refuses to start rather than embed into another space.
    """

    pack: str
    model_id: str
    min_face_size: float
    detector_input_cap: int
    max_bytes: int
    max_pixels: int
    max_faces: int

    @classmethod
    def of(cls, engine: Engine, *, pack: str) -> EngineSpec:
        """The spec of ``engine``, loaded from the pack called ``pack``."""
        return cls(
            pack=pack,
            model_id=engine.model_id,
            min_face_size=engine.min_face_size,
            detector_input_cap=engine.detector_input_cap,
            max_bytes=engine.limits.max_bytes,
            max_pixels=engine.limits.max_pixels,
            max_faces=engine.max_faces,
        )

    def build(self, *, workers: int = 1) -> Engine:
        """An engine with these settings (one inference thread by default).

        Raises:
            ModelError: this process's pack holds other weights than the driver's.
        """
        engine = Engine(
            self.pack,
            workers=workers,
            min_face_size=self.min_face_size,
            detector_input_cap=self.detector_input_cap,
            limits=ImageLimits(self.max_bytes, self.max_pixels),
            max_faces=self.max_faces,
        )
        if engine.model_id != self.model_id:
            engine.close()
            raise ModelError(
                f"pack {self.pack!r} here is {engine.model_id}, the driver's is {self.model_id}: "
                "install the same model weights on every node"
            )
        return engine


@dataclass(frozen=True, slots=True)
class ImageJob:
    """One image of a person to embed: its encoded bytes, named by ``source``."""

    person: str
    source: str
    image_sha256: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class EmbeddedImage:
    """One enrolment image as an engine saw it: its faces (largest first) or why none.

    Built where the engine runs (the service's threads or a batch worker); the service
    chooses the face to enrol and stores it. ``image`` is the submitted bytes, kept only
    when the collection stores images.
    """

    source: str
    image_sha256: str | None
    faces: list[Face] = field(default_factory=list)
    error: FaceledgerError | None = None
    image: bytes | None = field(default=None, repr=False)


def enrolment_faces(
    engine: Engine, source: str, image: ImageInput, *, sha256: str | None, aligned: bool
) -> EmbeddedImage:
    """Embed one enrolment image the way enrolment does, keeping a refusal as data.

    With ``aligned`` the image is an aligned face crop (no detection); otherwise it is also
    searched upside down, so an inverted face grades low.
    """
    try:
        faces = [engine.embed_aligned_face(image)] if aligned else engine.embed(image, upright=True)
    except FaceledgerError as exc:
        return EmbeddedImage(source, sha256, error=exc)
    return EmbeddedImage(source, sha256, faces=faces)


class Embedder(Protocol):
    """Embeds batches of enrolment images somewhere else (a cluster), one result per job."""

    def embed(
        self, spec: EngineSpec, chunks: Iterable[list[ImageJob]], *, aligned: bool
    ) -> Iterator[tuple[list[ImageJob], list[EmbeddedImage]]]:
        """Each chunk with its results in job order, as chunks finish (any order)."""
        ...
