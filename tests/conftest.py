"""Shared fixtures: the real face data beside the repo and one engine per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from faceledger.config import Settings
from faceledger.engine import Engine
from faceledger.service import FaceService

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "faces"


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """``../shared/faces``: real photos with identity labels (read-only)."""
    if not SHARED.is_dir():
        pytest.skip("../shared/faces is not present")
    return SHARED


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """The default-pack engine, loaded once."""
    eng = Engine("default")
    yield eng
    eng.close()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[FaceService]:
    """A face service on a fresh data directory."""
    svc = FaceService(Settings(data=tmp_path / "data"))
    yield svc
    svc.close()
