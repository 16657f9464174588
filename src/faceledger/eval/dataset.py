"""Labelled face datasets on disk: a ``<person>/<images>`` tree, embedded once per image."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from faceledger.engine import Engine
from faceledger.errors import FaceledgerError, InvalidArgument
from faceledger.types import FloatArray

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class EmbeddedSet:
    """Embeddings ``(n, d)`` with the person label and path of each row, plus skipped files."""

    embeddings: FloatArray
    labels: npt.NDArray[np.str_]
    paths: list[Path]
    skipped: list[Path]


def list_tree(root: Path, *, per_person: int | None = None) -> list[tuple[str, Path]]:
    """``(person, image)`` for every image in ``root/<person>/``, sorted, optionally capped."""
    if not root.is_dir():
        raise InvalidArgument(f"dataset folder not found: {root}")
    items: list[tuple[str, Path]] = []
    for person_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in person_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        items.extend((person_dir.name, f) for f in files[:per_person])
    return items


def embed_tree(
    engine: Engine,
    items: list[tuple[str, Path]],
    *,
    aligned: bool = False,
    progress: Progress | None = None,
) -> EmbeddedSet:
    """Embed the largest face of each image (or the crop itself when ``aligned``)."""
    rows: list[FloatArray] = []
    labels: list[str] = []
    paths: list[Path] = []
    skipped: list[Path] = []

    def one(path: Path) -> FloatArray | None:
        try:
            if aligned:
                row: FloatArray = engine.embed_aligned([path])[0]
                return row
            faces = engine.embed(path)
            return faces[0].embedding if faces else None
        except FaceledgerError:
            return None

    for i, ((person, path), emb) in enumerate(
        zip(items, engine.map(one, [p for _, p in items]), strict=True)
    ):
        if emb is None:
            skipped.append(path)
        else:
            rows.append(emb)
            labels.append(person)
            paths.append(path)
        if progress:
            progress(i + 1, len(items))
    dim = engine.pack.embedding_dim
    matrix = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)
    return EmbeddedSet(matrix, np.array(labels), paths, skipped)
