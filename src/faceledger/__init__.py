"""faceledger: self-hosted, accountable face recognition.

The public Python API: :class:`Engine` finds and embeds faces; errors live in
:mod:`faceledger.errors`.
"""

from faceledger.engine import Engine
from faceledger.types import Box, Comparison, Face, Quality

__all__ = ["Box", "Comparison", "Engine", "Face", "Quality"]
__version__ = "0.1.0"
