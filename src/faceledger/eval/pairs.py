"""Verification on labelled pairs: the LFW View 2 protocol and CSV pair lists, scored
through the embedding cache."""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from faceledger.engine import Engine
from faceledger.errors import InvalidArgument
from faceledger.eval.cache import EmbeddingCache, Progress, embed_images
from faceledger.eval.metrics import kfold_accuracy, tar_at_far
from faceledger.types import FloatArray


@dataclass(frozen=True, slots=True)
class Pair:
    """Two image paths, whether they show the same person, and the pair's fold."""

    a: Path
    b: Path
    same: bool
    fold: int


def read_lfw_pairs(root: Path, *, folds: int | None = None) -> list[Pair]:
    """Pairs of LFW View 2 from ``root/meta/pairs.txt`` with images in ``root/images``.

    The file starts with ``<folds> <n>``, then per fold ``n`` matched lines
    ``name i j`` and ``n`` mismatched lines ``name1 i name2 j``.
    """
    path = root / "meta" / "pairs.txt"
    if not path.is_file():
        raise InvalidArgument(f"LFW pairs file not found: {path}")
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    n_folds, per_fold = int(lines[0][0]), int(lines[0][1])
    use = n_folds if folds is None else min(folds, n_folds)
    if use < 1:
        raise InvalidArgument("--folds must be at least 1")

    def image(name: str, idx: str) -> Path:
        return root / "images" / name / f"{name}_{int(idx):04d}.jpg"

    pairs: list[Pair] = []
    body = lines[1:]
    for fold in range(use):
        chunk = body[fold * 2 * per_fold : (fold + 1) * 2 * per_fold]
        if len(chunk) != 2 * per_fold:
            raise InvalidArgument(f"pairs.txt has too few lines for fold {fold + 1}")
        for parts in chunk:
            if len(parts) == 3:
                pairs.append(Pair(image(parts[0], parts[1]), image(parts[0], parts[2]), True, fold))
            elif len(parts) == 4:
                pairs.append(
                    Pair(image(parts[0], parts[1]), image(parts[2], parts[3]), False, fold)
                )
            else:
                raise InvalidArgument(f"malformed pairs.txt line: {' '.join(parts)}")
    return pairs


def read_csv_pairs(path: Path, *, folds: int = 10) -> list[Pair]:
    """Pairs from a CSV with columns ``file_x, file_y, same``.

    File names are resolved relative to the CSV's folder, then searched for under its
    parent tree (deepface's layout keeps images in ``../identities/<person>/``). Pairs
    are dealt into ``folds`` folds round-robin.
    """
    if not path.is_file():
        raise InvalidArgument(f"pairs file not found: {path}")
    base = path.parent
    index: dict[str, Path] | None = None

    def resolve(name: str) -> Path:
        nonlocal index
        direct = base / name
        if direct.is_file():
            return direct
        if index is None:
            index = {p.name: p for p in sorted(base.parent.rglob("*")) if p.is_file()}
        if name not in index:
            raise InvalidArgument(f"image {name!r} of {path.name} not found under {base.parent}")
        return index[name]

    pairs = []
    with path.open(newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            same = str(row["same"]).strip().lower() in ("1", "true", "yes", "same")
            pairs.append(Pair(resolve(row["file_x"]), resolve(row["file_y"]), same, i % folds))
    return pairs


@dataclass(frozen=True, slots=True)
class ScoredPairs:
    """Similarity ``(n,)`` float32 and same-person flag of each listed pair."""

    scores: FloatArray
    same: npt.NDArray[np.bool_]
    images: int
    faces_not_found: int
    images_failed: int


def score_pairs(
    engine: Engine,
    pairs: Sequence[Pair],
    *,
    cache: EmbeddingCache | None = None,
    progress: Progress | None = None,
) -> ScoredPairs:
    """Embed each distinct image of a pair list once and score the pairs, as ``eval pairs`` does.

    Where no face is found the image centre is used (the LFW protocol's fallback); a pair
    with an unreadable image scores -1.
    """
    if not pairs:
        raise InvalidArgument("no pairs to evaluate")
    images = sorted({p.a for p in pairs} | {p.b for p in pairs})
    found = embed_images(engine, images, mode="detected", cache=cache, progress=progress)
    missing = [i for i, r in enumerate(found) if r.embedding is None and r.error is None]
    centre = embed_images(engine, [images[i] for i in missing], mode="center", cache=cache)
    vectors = {path: r.embedding for path, r in zip(images, found, strict=True)}
    vectors.update((images[i], r.embedding) for i, r in zip(missing, centre, strict=True))

    def score(a: Path, b: Path) -> float:
        ea, eb = vectors[a], vectors[b]
        return -1.0 if ea is None or eb is None else float(ea @ eb)

    return ScoredPairs(
        scores=np.array([score(p.a, p.b) for p in pairs], dtype=np.float32),
        same=np.array([p.same for p in pairs], dtype=bool),
        images=len(images),
        faces_not_found=len(missing),
        images_failed=sum(1 for v in vectors.values() if v is None),
    )


def evaluate_pairs(
    engine: Engine,
    pairs: list[Pair],
    *,
    cache: EmbeddingCache | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Embed every distinct image once (through ``cache``), score the pairs, and report
    LFW-style figures.

    When no face is found the image centre is used (as the LFW protocol allows) and
    counted in ``faces_not_found``; unreadable images are counted in ``images_failed``
    and their pairs scored as non-matching (similarity -1). ``images_per_second`` counts
    the images found in the cache too.
    """
    start = time.perf_counter()
    scored = score_pairs(engine, pairs, cache=cache, progress=progress)
    elapsed = time.perf_counter() - start
    scores, labels = scored.scores, scored.same
    folds = np.array([p.fold for p in pairs])
    result = kfold_accuracy(scores, labels, folds)
    return {
        "pairs": len(pairs),
        "same_pairs": int(labels.sum()),
        "different_pairs": int((~labels).sum()),
        "folds": int(np.unique(folds).size),
        "accuracy": round(result.accuracy, 5),
        "accuracy_std": round(result.accuracy_std, 5),
        "fold_thresholds": [round(t, 4) for t in result.thresholds],
        "tar_at_far_1e-3": round(tar_at_far(scores, labels, 1e-3), 5),
        "images": scored.images,
        "images_per_second": round(scored.images / elapsed, 2) if elapsed > 0 else None,
        "faces_not_found": scored.faces_not_found,
        "images_failed": scored.images_failed,
        "model": engine.model_id,
    }
