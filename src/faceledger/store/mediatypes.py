"""What the media index stores and answers: timelines to keep, queries, hits and pages.

Pure values (no SQL): :mod:`faceledger.store.media` stores and searches them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from faceledger.errors import InvalidArgument

SegmentKind = Literal["person", "text", "speech"]
MAX_QUERY_WORDS = 32
MAX_PAGE = 1000
MAX_FILE_NAME = 255
"""Characters of a stored file name (most file systems allow 255 bytes)."""
_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class NewSegment:
    """One entry of a video's timeline to store (times in seconds, ``start <= end``)."""

    kind: SegmentKind
    start: float
    end: float
    person: str | None = None
    """The enrolled person's name (stored as their id); None for an unknown person."""
    label: str | None = None
    """An unknown person's label in this video ("unknown person 2")."""
    text: str | None = None
    text_en: str | None = None
    language: str | None = None
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class NewMediaIndex:
    """What is stored of one indexed video."""

    video_sha256: str
    file_name: str
    duration: float | None
    complete: bool
    segments: Sequence[NewSegment]
    speech_problem: str | None = None


@dataclass(frozen=True, slots=True)
class MediaQuery:
    """A search of a collection's media; at least one of person, said, shown."""

    person: str | None = None
    said: str | None = None
    """Words said (all of them, in one transcript segment, original or English)."""
    shown: str | None = None
    """Words shown on screen (all of them, in one line)."""
    start: float | None = None
    end: float | None = None
    """Hits must overlap ``[start, end]`` (seconds from the video's start)."""
    video: str | None = None
    """Only this video: its SHA-256 or its file name."""
    offset: int = 0
    limit: int = 50

    def __post_init__(self) -> None:
        if self.person is None and not self.said and not self.shown:
            raise InvalidArgument("search by person, by words said or by words shown (or several)")
        for what in ("said", "shown"):
            value = getattr(self, what)
            if value is not None:
                found = words(value)
                if not found:
                    raise InvalidArgument(f"{what}: no word to search for in {value!r}")
                if len(found) > MAX_QUERY_WORDS:
                    raise InvalidArgument(f"{what}: at most {MAX_QUERY_WORDS} words")
        if self.start is not None and self.end is not None and self.end < self.start:
            raise InvalidArgument("the time range ends before it starts")
        if (self.start is not None and self.start < 0) or (self.end is not None and self.end < 0):
            raise InvalidArgument("times are seconds from the start of the video (not negative)")
        if self.offset < 0 or not 1 <= self.limit <= MAX_PAGE:
            raise InvalidArgument(f"offset must be >= 0 and limit in [1, {MAX_PAGE}]")


@dataclass(frozen=True, slots=True)
class PersonSpan:
    """A person's appearance interval that a hit lies in."""

    label: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class SpeechSpan:
    """A transcript segment whose words matched."""

    start: float
    end: float
    text: str
    text_en: str | None
    language: str | None
    confidence: float | None


@dataclass(frozen=True, slots=True)
class TextSpan:
    """An interval in which a matching line was on screen."""

    start: float
    end: float
    text: str
    confidence: float | None


@dataclass(frozen=True, slots=True)
class MediaHit:
    """Where in which video everything asked for holds at once: ``[start, end]``."""

    video_sha256: str
    file_name: str
    start: float
    end: float
    person: PersonSpan | None = None
    said: SpeechSpan | None = None
    shown: TextSpan | None = None


@dataclass(frozen=True, slots=True)
class MediaPage:
    """One page of hits, ordered by video then time; ``total`` counts every hit."""

    hits: list[MediaHit]
    total: int
    offset: int
    limit: int


@dataclass(frozen=True, slots=True)
class StoredVideo:
    """An indexed video as stored, with its number of segments of each kind."""

    collection: str
    video_sha256: str
    file_name: str
    duration: float | None
    complete: bool
    speech_problem: str | None
    indexed_at: datetime
    segments: dict[str, int]


@dataclass(frozen=True, slots=True)
class MediaAppearance:
    """One stored interval naming a person: where and when they were seen."""

    collection: str
    video_sha256: str
    file_name: str
    start: float
    end: float


def check_file_name(name: str) -> str:
    """A video's file name as given by a user, NFC-normalised, or :class:`InvalidArgument`.

    A plain file name, not an identifier: any characters but control and format ones
    (Unicode Cc, Cf) and path separators (``/``, ``\\``); 1-255 characters, no outer spaces,
    not ``.`` or ``..``.
    """
    nfc = unicodedata.normalize("NFC", name)
    why = None
    if not nfc or len(nfc) > MAX_FILE_NAME:
        why = f"1-{MAX_FILE_NAME} characters"
    elif nfc != nfc.strip():
        why = "outer spaces"
    elif nfc in {".", ".."}:
        why = "'.' and '..' are path segments"
    elif any(ch in "/\\" for ch in nfc):
        why = "a file name, without its folder (no / or \\)"
    elif any(unicodedata.category(ch) in {"Cc", "Cf"} for ch in nfc):
        why = "no control or format characters"
    if why is not None:
        raise InvalidArgument(f"invalid file name {name[:300]!r}: {why}")
    return nfc


def words(query: str) -> list[str]:
    """The words of a query: runs of Unicode letters, digits and underscores."""
    return _WORD.findall(query)
