"""faceledger: self-hosted, accountable face recognition.

The public Python API: :class:`Engine` finds and embeds faces, :class:`FaceService` is the
face database with its audit ledger, :class:`Client` calls a running server; errors live
in :mod:`faceledger.errors`. The three are imported on first use, so that importing one
lower layer (``faceledger.store``, ``faceledger.index``...) does not load the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from faceledger.types import Box, Comparison, Face, Quality

if TYPE_CHECKING:
    from faceledger.client import Client
    from faceledger.engine import Engine
    from faceledger.service import FaceService

__all__ = ["Box", "Client", "Comparison", "Engine", "Face", "FaceService", "Quality"]
__version__ = "0.1.0"
_LAZY = {
    "Client": "faceledger.client",
    "Engine": "faceledger.engine",
    "FaceService": "faceledger.service",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'faceledger' has no attribute {name!r}")
