"""The searchable media index: store each indexed video's timeline, search it, expire it.

Storing and searching are audited units of work (``media.store``, ``media.search``,
``media.expire``). A search by person is a search of the face database: it needs a
purpose like identify, and the ledger names the person by pseudonym. The words searched
for are recorded as SHA-256 digests of their normalised form (an auditor holding the
words can check them; the ledger, which is never erased, holds no free text).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceledger.ledger.audit import Actor
from faceledger.service.core import LOCAL_ACTOR, ServiceCore
from faceledger.store.db import flush_log
from faceledger.store.media import (
    MediaPage,
    MediaQuery,
    MediaStore,
    NewMediaIndex,
    NewSegment,
    StoredVideo,
    words,
)
from faceledger.store.repository import now

if TYPE_CHECKING:
    from faceledger.video import VideoIndex

MEDIA_SWEEPER = Actor(key_id=None, role="system", name="retention-sweeper")


def media_entry(index: VideoIndex, file_name: str) -> NewMediaIndex:
    """What the media index keeps of a video index: every interval of every person, line
    of text and transcript segment (no thumbnails, boxes or candidates)."""
    segments: list[NewSegment] = []
    for person in index.people:
        for start, end in person.intervals:
            segments.append(
                NewSegment(
                    "person",
                    start,
                    end,
                    person=person.person,
                    label=None if person.person is not None else person.label,
                    confidence=person.confidence,
                )
            )
    for item in index.text:
        for start, end in item.intervals:
            segments.append(
                NewSegment("text", start, end, text=item.text, confidence=item.confidence)
            )
    for said in index.transcript:
        segments.append(
            NewSegment(
                "speech",
                said.start,
                said.end,
                text=said.text,
                text_en=said.text_en,
                language=said.language,
                confidence=said.confidence,
            )
        )
    return NewMediaIndex(
        video_sha256=index.video_sha256,
        file_name=file_name,
        duration=index.duration,
        complete=index.complete,
        segments=segments,
        speech_problem=index.speech_problem,
    )


def words_digest(query: str | None) -> str | None:
    """SHA-256 of a query's words, lower-cased and space-separated (None for None)."""
    if query is None:
        return None
    return hashlib.sha256(" ".join(words(query.casefold())).encode()).hexdigest()


def _video_ref(video: str | None) -> str | None:
    """How the ledger names a video filter: its SHA-256, or ``name:`` and the file name's."""
    if video is None or re.fullmatch(r"[0-9a-fA-F]{64}", video):
        return None if video is None else video.lower()
    return "name:" + hashlib.sha256(video.encode()).hexdigest()


class MediaIndexOps(ServiceCore):
    """Indexed videos as a searchable archive of who appears, what is shown and said."""

    @property
    def media_index(self) -> MediaStore:
        return MediaStore(self.store.engine)

    def store_video_index(
        self,
        collection: str,
        index: VideoIndex,
        *,
        file_name: str | Path,
        actor: Actor = LOCAL_ACTOR,
    ) -> int:
        """Keep a video's index in the collection's media index (replacing the same file's
        earlier one); audited as ``media.store``. Returns the number of segments kept."""
        name = Path(file_name).name
        entry = media_entry(index, name)
        request = {"video_sha256": index.video_sha256}
        with self.audited(actor, "media.store", collection=collection, request=request) as work:
            stored = self.media_index.put(work.tx.conn, collection, entry, now())
            work.result["segments"] = stored
            return stored

    def media_videos(self, collection: str) -> list[StoredVideo]:
        """The collection's indexed videos (what the media index holds), newest first."""
        self.store.get_collection(collection)
        return self.media_index.videos(collection)

    def search_media(
        self,
        collection: str,
        *,
        person: str | None = None,
        said: str | None = None,
        shown: str | None = None,
        start: float | None = None,
        end: float | None = None,
        video: str | None = None,
        offset: int = 0,
        limit: int = 50,
        purpose: str | None = None,
        case_ref: str | None = None,
        actor: Actor = LOCAL_ACTOR,
    ) -> MediaPage:
        """Where in the collection's videos ``person`` appears, ``said`` is said and
        ``shown`` is shown (all of those given, at the same time), within ``[start, end]``.

        Raises:
            InvalidArgument: no person and no words, a malformed range or page.
            PurposeRequired: a search by person without the purpose the service requires.
            NotFound: no such collection or person.
        """
        query = MediaQuery(
            person=person,
            said=said,
            shown=shown,
            start=start,
            end=end,
            video=video,
            offset=offset,
            limit=limit,
        )
        if person is not None:
            self.check_purpose(purpose)
        request: dict[str, Any] = {
            "said_sha256": words_digest(said),
            "shown_sha256": words_digest(shown),
            "start": start,
            "end": end,
            "video": _video_ref(video),
            "offset": offset,
            "limit": limit,
        }
        with self.audited(
            actor,
            "media.search",
            collection=collection,
            purpose=purpose,
            case_ref=case_ref,
            request=request,
        ) as work:
            page = self.media_index.search(collection, query)
            if person is not None:
                work.request["person"] = work.pseudonym(collection, person)
            work.result.update(
                total=page.total,
                hits=len(page.hits),
                videos=sorted({h.video_sha256 for h in page.hits}),
            )
            return page

    def expire_media(
        self, *, at: datetime | None = None, actor: Actor = MEDIA_SWEEPER
    ) -> list[tuple[str, str]]:
        """Erase media results older than ``media_retention_days`` (0: kept for ever).

        Returns the ``(collection, video SHA-256)`` pairs erased; audited as ``media.expire``
        only when something expired.
        """
        days = self.settings.media_retention_days
        if days <= 0:
            return []
        before = (at or now()) - timedelta(days=days)
        if not self.media_index.expired(before):
            return []
        request = {"retention_days": days}
        with self.audited(actor, "media.expire", request=request) as work:
            gone = self.media_index.expire(work.tx.conn, before)
            work.result["videos"] = [sha for _, sha in gone]
        flush_log(self.store.engine)  # the log still holds the erased rows' pages
        return gone
