"""Image folders laid out one subfolder per person: ``ROOT/<person>/<images>``."""

from __future__ import annotations

from pathlib import Path

from faceledger.errors import InvalidArgument

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


def person_folders(root: Path) -> dict[str, list[Path]]:
    """``person -> sorted image paths`` for each subfolder of ``root`` holding images.

    Raises:
        InvalidArgument: ``root`` is not a folder, or no subfolder of it holds an image
            (a flat folder of images has no person names to enrol under).
    """
    if not root.is_dir():
        raise InvalidArgument(f"folder not found: {root}")
    found: dict[str, list[Path]] = {}
    for person_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in person_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            found[person_dir.name] = files
    if not found:
        flat = any(p.suffix.lower() in IMAGE_SUFFIXES for p in root.iterdir())
        hint = " (its images lie directly in it)" if flat else ""
        raise InvalidArgument(
            f"no person subfolders with images in {root}{hint}: lay it out as "
            f"{root}/<person>/<images>, one subfolder per person"
        )
    return found
