"""faceledger: self-hosted, accountable face recognition.

The public Python API: :class:`Engine` finds and embeds faces; errors live in
:mod:`faceledger.errors`.
"""

from faceledger.client import Client
from faceledger.engine import Engine
from faceledger.service import FaceService
from faceledger.types import Box, Comparison, Face, Quality

__all__ = ["Box", "Client", "Comparison", "Engine", "Face", "FaceService", "Quality"]
__version__ = "0.1.0"
