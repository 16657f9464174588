"""Media: index a video against a collection (one audited search for all its tracks)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceledger.ledger.audit import Actor
from faceledger.search.ranking import Candidate
from faceledger.service.core import LOCAL_ACTOR, Progress
from faceledger.service.mediaindex import MediaIndexOps
from faceledger.service.search import SearchOps
from faceledger.types import FloatArray

if TYPE_CHECKING:  # imported when a video is indexed: SciPy's optimiser takes about 1 s
    from faceledger.speech import SpeechModel, Transcript
    from faceledger.video import IndexOptions, TextReader, VideoIndex
    from faceledger.video.soundtrack import SpeechProgress, Transcriber


class MediaOps(SearchOps, MediaIndexOps):
    """Video indexing: who appears when, and the text on screen."""

    def check_video_request(self, collection: str, purpose: str | None) -> None:
        """Refuse an indexing request early: unknown collection or a missing required purpose."""
        self.store.get_collection(collection)
        self.check_purpose(purpose)

    def video_identifier(
        self,
        collection: str,
        options: IndexOptions,
        *,
        purpose: str | None,
        case_ref: str | None,
        actor: Actor,
    ) -> Callable[[FloatArray, dict[str, Any]], list[list[Candidate]]]:
        """How a video's track templates are identified against ``collection``: one
        audited ``video.identify`` search per video (also for tracks made elsewhere, e.g.
        on a Ray cluster)."""

        def identify(templates: FloatArray, about: dict[str, Any]) -> list[list[Candidate]]:
            return self.identify_embeddings(
                collection,
                templates,
                top=options.top,
                max_fmr=options.max_fmr,
                purpose=purpose,
                case_ref=case_ref,
                operation="video.identify",
                request=about,
                actor=actor,
            )

        return identify

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
        speech_model: SpeechModel | None = None,
        file_name: str | None = None,
    ) -> VideoIndex:
        """Index a video file: its people against ``collection`` and its on-screen text.

        The identification of the video's face tracks is one search in the audit ledger
        (operation ``video.identify``, with the video's SHA-256). With ``options.speech``
        the audio is transcribed by ``speech_model`` (the default Whisper base, loaded
        once per process, when None); an audio-only file is indexed for speech alone.
        The result is kept in the collection's media index under ``file_name`` (default:
        the path's file name), replacing an earlier index of the same file.

        Raises:
            PurposeRequired: the service requires a purpose and none was given.
            NotFound: the collection does not exist.
            VideoError: the file cannot be read at all.
        """
        from faceledger.video import IndexOptions, index_video

        self.check_video_request(collection, purpose)
        opts = options or IndexOptions()
        _, engine = self.collection_engine(collection)

        identify = self.video_identifier(
            collection, opts, purpose=purpose, case_ref=case_ref, actor=actor
        )
        result = index_video(
            path,
            engine=engine,
            collection=collection,
            identify=identify,
            options=opts,
            progress=progress,
            text_reader=text_reader,
            transcriber=self._transcriber(speech_model, opts) if opts.speech else None,
        )
        self.store_video_index(
            collection, result, file_name=file_name or Path(path).name, actor=actor
        )
        return result

    def speech_model(self) -> SpeechModel:
        """The default speech model (Whisper base), loaded once per process and cache.

        Raises:
            ModelError: the model's packages are missing or it fails to load.
        """
        from faceledger.speech import default_speech_model

        return default_speech_model(self.settings.cache_dir)

    def _transcriber(self, model: SpeechModel | None, opts: IndexOptions) -> Transcriber:
        """What the indexer calls to transcribe a file (the model is loaded on first use)."""
        from faceledger.speech import transcribe

        def run(path: str | os.PathLike[str], *, progress: SpeechProgress | None) -> Transcript:
            return transcribe(
                path,
                model=model or self.speech_model(),
                hotwords=opts.hotwords,
                progress=progress,
            )

        return run
