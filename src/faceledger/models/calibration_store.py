"""Calibrations as versioned files: written beside the shipped one, found again by id.

A store is a folder ``ROOT/<model_id>/<calibration_id>.json``; a file is never rewritten
(its name is the hash of its content). Installed package data is never touched: the
shipped calibration of a pack is one version, read-only, and ``eval calibrate --write``
adds others to a store in the user's data folder.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceledger.errors import InvalidArgument, NotFound, StoreError
from faceledger.models.calibration import Calibration
from faceledger.permissions import private_umask


def model_of(calibration: Calibration) -> str:
    """The model id a calibration was made for (``unknown`` for old files without one)."""
    return str(
        calibration.provenance.get("model_id") or calibration.meta.get("model_id") or "unknown"
    )


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", name)


@dataclass(frozen=True, slots=True)
class CalibrationVersion:
    """One stored calibration: its id, model, date and source, and where it lies."""

    calibration_id: str
    model_id: str
    created: str | None
    source: str
    path: Path


class CalibrationStore:
    """Calibration files under ``root`` (created on the first write)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def save(self, calibration: Calibration) -> Path:
        """Write a calibration as a new version; the same content again is the same file.
        Folders it creates are 0700 and the file 0600, as everything in a data folder.

        Raises:
            StoreError: the folder cannot be written.
        """
        folder = self.root / _safe(model_of(calibration))
        path = folder / f"{calibration.calibration_id}.json"
        if path.is_file():
            return path
        text = json.dumps(calibration.to_dict(), indent=1) + "\n"
        try:
            with private_umask():  # the data folder's rule, whoever calls (a cohort is faces)
                folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except OSError as exc:
            raise StoreError(f"cannot write calibration to {folder}: {exc.strerror}") from exc
        return path

    def versions(self, model_id: str | None = None) -> list[CalibrationVersion]:
        """Stored calibrations (of one model when given), oldest first."""
        if not self.root.is_dir():
            return []
        folders = [self.root / _safe(model_id)] if model_id else sorted(self.root.iterdir())
        out = []
        for folder in folders:
            for path in sorted(folder.glob("cal-*.json")) if folder.is_dir() else []:
                cal = _read(path)
                out.append(
                    CalibrationVersion(
                        cal.calibration_id,
                        model_of(cal),
                        cal.provenance.get("created"),
                        cal.source,
                        path,
                    )
                )
        return sorted(out, key=lambda v: (v.created or "", v.calibration_id))

    def load(self, calibration_id: str) -> Calibration:
        """The stored calibration with this id.

        Raises:
            NotFound: no such calibration here.
        """
        if not re.fullmatch(r"cal-[0-9a-f]{16}", calibration_id):
            raise InvalidArgument(f"not a calibration id: {calibration_id!r}")
        if self.root.is_dir():
            for path in self.root.glob(f"*/{calibration_id}.json"):
                return _read(path)
        raise NotFound(f"calibration {calibration_id} not found in {self.root}")


def _read(path: Path) -> Calibration:
    try:
        stat = path.stat()
    except OSError as exc:
        raise StoreError(f"unreadable calibration file {path}: {exc.strerror}") from exc
    return _parse(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _parse(path: str, mtime_ns: int, size: int) -> Calibration:
    """A file parsed once per (path, mtime, size): a collection's searches each read their
    calibration, and one with a cohort takes some 45 ms to parse and check."""
    try:
        data: Any = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"unreadable calibration file {path}: {exc}") from exc
    return Calibration.from_dict(data)


def find_calibration(
    calibration_id: str, *, shipped: Calibration | None, roots: Sequence[Path] = ()
) -> Calibration:
    """A calibration by id: the pack's shipped one, else the first store that holds it.

    Raises:
        NotFound: neither the shipped calibration nor any store has this id.
    """
    if shipped is not None and shipped.calibration_id == calibration_id:
        return shipped
    for root in roots:
        try:
            return CalibrationStore(root).load(calibration_id)
        except NotFound:
            continue
    where = ", ".join(map(str, roots)) or "no store"
    raise NotFound(f"calibration {calibration_id} is neither shipped nor in {where}")
