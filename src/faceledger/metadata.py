"""Person metadata is bounded JSON: an object, finite numbers, limited depth, keys and size.

Checked by the store (so the CLI and library too) and by the API's request models, before
anything is written: metadata nested 900 levels deep was once stored and then broke every
page that showed it.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

from faceledger.errors import InvalidArgument

MAX_DEPTH: Final = 16
"""Containers inside containers (the object itself is depth 1)."""
MAX_ITEMS: Final = 1000
"""Keys and array elements in all."""
MAX_BYTES: Final = 64 * 1024
"""Size of the metadata as compact JSON (UTF-8)."""


def problem(metadata: Any) -> str | None:
    """Why ``metadata`` is refused, or ``None`` when it is acceptable."""
    if not isinstance(metadata, dict):
        return "metadata must be a JSON object"
    items = 0
    stack: list[tuple[Any, int]] = [(metadata, 1)]
    while stack:  # iterative: a deep document must not exhaust the interpreter's stack
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                return f"metadata is nested deeper than {MAX_DEPTH} levels"
            items += len(value)
            if items > MAX_ITEMS:
                return f"metadata holds more than {MAX_ITEMS} keys and elements"
            if isinstance(value, dict):
                if not all(isinstance(k, str) for k in value):
                    return "metadata keys must be strings"
                stack.extend((v, depth + 1) for v in value.values())
            else:
                stack.extend((v, depth + 1) for v in value)
        elif isinstance(value, float) and not math.isfinite(value):
            return "metadata numbers must be finite (NaN and Infinity are not JSON)"
        elif value is not None and not isinstance(value, str | int | float | bool):
            return f"metadata values must be JSON, not {type(value).__name__}"
    size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_BYTES:
        return f"metadata is {size} bytes as JSON, more than {MAX_BYTES}"
    return None


def check_metadata(metadata: Any) -> dict[str, Any]:
    """``metadata`` itself, or :class:`InvalidArgument` saying why it is refused."""
    why = problem(metadata)
    if why is not None:
        raise InvalidArgument(why)
    return dict(metadata)
