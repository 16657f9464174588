"""Media: index a video against a collection (one audited search for all its tracks)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from faceledger.ledger.audit import Actor
from faceledger.search.ranking import Candidate
from faceledger.service.core import LOCAL_ACTOR, Progress
from faceledger.service.search import SearchOps
from faceledger.types import FloatArray

if TYPE_CHECKING:  # imported when a video is indexed: SciPy's optimiser takes about 1 s
    from faceledger.video import IndexOptions, TextReader, VideoIndex


class MediaOps(SearchOps):
    """Video indexing: who appears when, and the text on screen."""

    def check_video_request(self, collection: str, purpose: str | None) -> None:
        """Refuse an indexing request early: unknown collection or a missing required purpose."""
        self.store.get_collection(collection)
        self.check_purpose(purpose)

    def index_video(
        self,
        collection: str,
        path: str | os.PathLike[str],
        *,
        options: IndexOptions | None = None,
        purpose: str | None = None,
        case_ref: str | None = None,
        actor: Actor = LOCAL_ACTOR,
        progress: Progress | None = None,
        text_reader: TextReader | None = None,
    ) -> VideoIndex:
        """Index a video file: its people against ``collection`` and its on-screen text.

        The identification of the video's face tracks is one search in the audit ledger
        (operation ``video.identify``, with the video's SHA-256).

        Raises:
            PurposeRequired: the service requires a purpose and none was given.
            NotFound: the collection does not exist.
            VideoError: the file cannot be read at all.
        """
        from faceledger.video import IndexOptions, index_video

        self.check_video_request(collection, purpose)
        opts = options or IndexOptions()
        _, engine = self.collection_engine(collection)

        def identify(templates: FloatArray, about: dict[str, Any]) -> list[list[Candidate]]:
            return self.identify_embeddings(
                collection,
                templates,
                top=opts.top,
                max_fmr=opts.max_fmr,
                purpose=purpose,
                case_ref=case_ref,
                operation="video.identify",
                request=about,
                actor=actor,
            )

        return index_video(
            path,
            engine=engine,
            collection=collection,
            identify=identify,
            options=opts,
            progress=progress,
            text_reader=text_reader,
        )
