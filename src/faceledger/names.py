"""Collection and person names are identifiers: one rule, applied by the store, API and CLI.

A name is normalised to Unicode NFC (so "José" typed with a combining accent and with a
precomposed one is the same person), then refused if it is empty, longer than
:data:`MAX_NAME_LENGTH` characters, has outer spaces, is ``.`` or ``..``, or holds a
control or format character (Unicode categories Cc and Cf, which include NUL and the
bidirectional overrides) or a path/URL character (``/ ? # %``). A backslash is allowed
(it is not a separator in URLs, and the client encodes it). Display names with any
characters belong in a person's metadata.
"""

from __future__ import annotations

import unicodedata
from typing import Final

from faceledger.errors import InvalidArgument

MAX_NAME_LENGTH: Final = 256
FORBIDDEN_CHARACTERS: Final = frozenset("/?#%")
RULE: Final = (
    f"1-{MAX_NAME_LENGTH} characters, no outer spaces, not '.' or '..', no control or "
    "format characters, none of / ? # %"
)


def normalize(name: str) -> str:
    """The NFC form under which a name is stored and looked up (no validation)."""
    return unicodedata.normalize("NFC", name)


def problem(name: str) -> str | None:
    """Why ``name`` (already NFC) is not a valid identifier, or ``None`` when it is."""
    if not name:
        return "empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"longer than {MAX_NAME_LENGTH} characters"
    if name != name.strip():
        return "outer spaces"
    if name in {".", ".."}:
        return "'.' and '..' are path segments"
    for ch in name:
        if ch in FORBIDDEN_CHARACTERS:
            return f"character {ch!r} is not allowed"
        if unicodedata.category(ch) in {"Cc", "Cf"}:
            return f"control or format character U+{ord(ch):04X} is not allowed"
    return None


def check_name(name: str, what: str = "name") -> str:
    """Return ``name`` normalised to NFC, or raise :class:`InvalidArgument` saying why not."""
    if not isinstance(name, str):
        raise InvalidArgument(f"invalid {what} name: not a string")
    nfc = normalize(name)
    why = problem(nfc)
    if why is not None:
        raise InvalidArgument(f"invalid {what} name {name!r}: {why} ({RULE})")
    return nfc
