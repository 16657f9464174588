"""What an audit entry is made of, and the bytes its hash covers.

``entry_hash`` = SHA-256 of :func:`canonical` (the fields below as sorted, compact JSON,
``prev_hash`` included), and the entry's Merkle leaf data is the 32 raw bytes of that
hash. Kept apart from :mod:`faceledger.ledger.audit` so that offline verification needs
neither the database layer nor any secret.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
"""The ``prev_hash`` of the first entry."""
FIELDS = (
    "seq",
    "ts",
    "key_id",
    "role",
    "actor",
    "operation",
    "collection",
    "purpose",
    "case_ref",
    "image_sha256",
    "request",
    "result",
    "prev_hash",
)


def canonical(values: Mapping[str, Any]) -> bytes:
    """The bytes hashed for an entry: its fields as sorted, compact JSON."""
    return json.dumps(
        {k: values[k] for k in FIELDS}, sort_keys=True, separators=(",", ":"), default=str
    ).encode()


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: an API key (id and role) or a local user of the CLI or library."""

    key_id: str | None
    role: str | None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """What an operation records besides who did it."""

    operation: str
    collection: str | None = None
    purpose: str | None = None
    case_ref: str | None = None
    image_sha256: str | None = None
    request: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
