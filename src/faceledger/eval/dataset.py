"""Labelled face datasets on disk, embedded once per image, with optional group labels.

A dataset is one or more folders. In the ``tree`` layout a folder holds
``<person>/<images>``; in the ``prefix`` layout the person is the file name without its
trailing number (``Avinash_12.jpg`` is ``Avinash``), wherever the file lies below the
folder. The same person name in two folders is the same person.

Group labels come from a CSV whose first column is ``person`` or ``image`` and whose
other columns are group columns (``person,gender``), or from a JSON object mapping a
person to a value (the column is named after the file: ``gender_distribution.json``
gives ``gender``) or to an object of columns. Person names are matched loosely:
``Barack Obama`` labels the folder ``barack_obama``.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from faceledger.engine import Engine
from faceledger.errors import InvalidArgument
from faceledger.eval.cache import EmbeddingCache, Progress, embed_images
from faceledger.eval.pairs import ScoredPairs, score_pairs
from faceledger.types import FloatArray

__all__ = [
    "DATASET_COLUMN",
    "IMAGE_SUFFIXES",
    "Counts",
    "DatasetCounts",
    "EmbeddedSet",
    "LabelTable",
    "Layout",
    "Progress",
    "ScoredPairs",
    "dataset_name",
    "describe",
    "embed_tree",
    "embed_trees",
    "group_columns",
    "list_tree",
    "normalise_name",
    "prefix_person",
    "read_labels",
    "score_pairs",
]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
Layout = Literal["tree", "prefix"]
DATASET_COLUMN = "dataset"
"""Group column added when a dataset spans several folders: the folder's name."""
_PREFIX = re.compile(r"^(?P<person>.+?)[_\- ]*\d+$")


@dataclass(frozen=True, slots=True)
class EmbeddedSet:
    """Embeddings ``(n, d)`` float32 with each row's person, path and source folder.

    ``skipped`` lists the images without a usable face.
    """

    embeddings: FloatArray
    labels: npt.NDArray[np.str_]
    paths: list[Path]
    skipped: list[Path]
    sources: list[str] = field(default_factory=list)


def dataset_name(root: Path) -> str:
    """A folder's display name: ``glint360k_celeb24`` for ``glint360k_celeb24/images``."""
    return root.parent.name if root.name in ("images", "identities") else root.name


def prefix_person(stem: str) -> str:
    """The person of a file in the prefix layout: the stem without its trailing number."""
    match = _PREFIX.match(stem)
    return match.group("person") if match else stem


def list_tree(
    root: Path, *, per_person: int | None = None, layout: Layout = "tree"
) -> list[tuple[str, Path]]:
    """``(person, image)`` for every image of a folder, sorted, optionally capped per person."""
    if not root.is_dir():
        raise InvalidArgument(f"dataset folder not found: {root}")
    if layout == "prefix":
        by_person: dict[str, list[Path]] = {}
        for f in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            by_person.setdefault(prefix_person(f.stem), []).append(f)
        return [(person, f) for person in sorted(by_person) for f in by_person[person][:per_person]]
    if layout != "tree":
        raise InvalidArgument(f"unknown dataset layout {layout!r}; known: tree, prefix")
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
    cache: EmbeddingCache | None = None,
    progress: Progress | None = None,
) -> EmbeddedSet:
    """Embed the largest face of each image (or the crop itself when ``aligned``)."""
    results = embed_images(
        engine,
        [p for _, p in items],
        mode="aligned" if aligned else "detected",
        cache=cache,
        progress=progress,
    )
    rows: list[FloatArray] = []
    labels: list[str] = []
    paths: list[Path] = []
    skipped: list[Path] = []
    for (person, path), result in zip(items, results, strict=True):
        if result.embedding is None:
            skipped.append(path)
        else:
            rows.append(result.embedding)
            labels.append(person)
            paths.append(path)
    dim = engine.pack.embedding_dim
    matrix = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)
    return EmbeddedSet(matrix, np.array(labels, dtype=np.str_), paths, skipped)


def embed_trees(
    engine: Engine,
    roots: Sequence[Path],
    *,
    aligned: bool = False,
    layout: Layout = "tree",
    per_person: int | None = None,
    cache: EmbeddingCache | None = None,
    progress: Progress | None = None,
) -> EmbeddedSet:
    """Embed several folders as one dataset; each row's ``sources`` entry names its folder."""
    if not roots:
        raise InvalidArgument("no dataset folder given")
    items: list[tuple[str, Path]] = []
    origin: dict[Path, str] = {}
    for root in roots:
        found = list_tree(root, per_person=per_person, layout=layout)
        if not found:
            raise InvalidArgument(f"no images found in {root} (layout {layout})")
        items.extend(found)
        origin.update((p, dataset_name(root)) for _, p in found)
    data = embed_tree(engine, items, aligned=aligned, cache=cache, progress=progress)
    return EmbeddedSet(
        data.embeddings, data.labels, data.paths, data.skipped, [origin[p] for p in data.paths]
    )


def normalise_name(name: str) -> str:
    """A person name for matching: lower case, runs of other characters as one ``_``."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


@dataclass(frozen=True, slots=True)
class LabelTable:
    """Group labels per person (normalised name) or per image (file name or ``person/file``)."""

    columns: tuple[str, ...]
    by_person: dict[str, dict[str, str]]
    by_image: dict[str, dict[str, str]]

    def lookup(self, person: str, path: Path) -> dict[str, str]:
        """The labels of one image: its own row, else its person's row, else none."""
        for key in (f"{path.parent.name}/{path.name}", path.name):
            if key in self.by_image:
                return self.by_image[key]
        return self.by_person.get(normalise_name(person), {})


def read_labels(path: Path) -> LabelTable:
    """Read group labels from a CSV (``person|image, columns...``) or a JSON object."""
    if not path.is_file():
        raise InvalidArgument(f"labels file not found: {path}")
    if path.suffix.lower() == ".json":
        data: Any = json.loads(path.read_text())
        if not isinstance(data, dict) or not data:
            raise InvalidArgument(f"{path.name}: expected an object mapping persons to labels")
        column = path.stem.split("_")[0]
        rows = {
            normalise_name(k): (
                {str(c): str(x) for c, x in v.items()} if isinstance(v, dict) else {column: str(v)}
            )
            for k, v in data.items()
        }
        columns = sorted({c for r in rows.values() for c in r})
        return LabelTable(tuple(columns), rows, {})
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        if len(header) < 2 or header[0].lower() not in ("person", "image"):
            raise InvalidArgument(
                f"{path.name}: the first column must be 'person' or 'image', then group columns"
            )
        key_is_image = header[0].lower() == "image"
        by_key: dict[str, dict[str, str]] = {}
        for row in reader:
            if not row or not row[0].strip():
                continue
            values = {c: v.strip() for c, v in zip(header[1:], row[1:], strict=False) if v.strip()}
            key = row[0].strip()
            by_key[key.replace("\\", "/") if key_is_image else normalise_name(key)] = values
    names = tuple(header[1:])
    return LabelTable(names, {}, by_key) if key_is_image else LabelTable(names, by_key, {})


def group_columns(data: EmbeddedSet, labels: LabelTable | None) -> dict[str, npt.NDArray[np.str_]]:
    """Each group column's value per row (``""``: unlabelled); ``dataset`` for several folders."""
    columns: dict[str, npt.NDArray[np.str_]] = {}
    if labels is not None:
        pairs = zip(data.labels, data.paths, strict=True)
        looked_up = [labels.lookup(str(person), path) for person, path in pairs]
        for column in labels.columns:
            columns[column] = np.array([r.get(column, "") for r in looked_up], dtype=np.str_)
    if len(set(data.sources)) > 1 and DATASET_COLUMN not in columns:
        columns[DATASET_COLUMN] = np.array(data.sources, dtype=np.str_)
    return columns


@dataclass(frozen=True, slots=True)
class Counts:
    """Images with a face, and the identities they show."""

    images: int
    identities: int


@dataclass(frozen=True, slots=True)
class DatasetCounts:
    """The report's "data used": counts per folder, per group value of each column, in all.

    ``groups`` maps a column to its values (``""``: unlabelled) in sorted order.
    """

    datasets: dict[str, Counts]
    images: int
    embedded_images: int
    images_without_face: int
    identities: int
    groups: dict[str, dict[str, Counts]]
    layout: Layout


def describe(
    data: EmbeddedSet, columns: dict[str, npt.NDArray[np.str_]], *, layout: Layout = "tree"
) -> DatasetCounts:
    """Counts of images and identities per folder and per group (the report's "data used")."""

    def counts(mask: npt.NDArray[np.bool_]) -> Counts:
        return Counts(int(mask.sum()), int(np.unique(data.labels[mask]).size))

    sources = np.array(data.sources, dtype=np.str_)
    return DatasetCounts(
        datasets={s: counts(sources == s) for s in sorted(set(data.sources))},
        images=len(data.paths) + len(data.skipped),
        embedded_images=len(data.paths),
        images_without_face=len(data.skipped),
        identities=int(np.unique(data.labels).size),
        groups={
            column: {g: counts(values == g) for g in sorted(set(values.tolist()))}
            for column, values in columns.items()
        },
        layout=layout,
    )
