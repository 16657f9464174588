"""The service a CLI command works on, built from ``--data`` / ``FACELEDGER_DATA``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from faceledger.config import Settings
from faceledger.service import FaceService

_state: dict[str, Path | None] = {"data": None}


def set_data_dir(path: Path | None) -> None:
    _state["data"] = path


def data_dir() -> Path | None:
    """The data directory chosen with ``--data`` (or None for the settings' default)."""
    return _state["data"]


@contextmanager
def open_service() -> Iterator[FaceService]:
    """A service on the chosen data directory, closed (indexes saved) afterwards."""
    settings = Settings()
    if _state["data"] is not None:
        settings = settings.model_copy(update={"data": _state["data"]})
    service = FaceService(settings)
    try:
        yield service
    finally:
        service.close()
