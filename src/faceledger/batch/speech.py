"""The speech model of a batch worker: the driver's weights, checked by SHA-256, loaded once.

:class:`SpeechSpec` says which CTranslate2 Whisper model the driver would use (the default
Whisper base, assembled from its two pip packages, or a ``--asr-model`` directory) and
its ``model.bin`` SHA-256; a worker actor builds it once with :meth:`SpeechSpec.load` and
hands :meth:`WorkerSpeech.transcriber` to ``video.index_video``, which transcribes through
:func:`faceledger.speech.transcribe` exactly as a local index does. Nothing downloads: the
default model comes from the installed packages, a directory must exist on every node.
No Ray here: these are plain objects that pickle.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from faceledger.errors import ModelError
from faceledger.speech import (
    SpeechModel,
    Transcript,
    default_model_info,
    directory_model_info,
    load_speech_model,
    transcribe,
)
from faceledger.video.soundtrack import SpeechProgress, Transcriber

WORKER_THREADS = 1
"""Inference threads of a worker's speech model: a worker actor holds one CPU (its
transcripts equal those of the local default of 2 threads on the test videos)."""


@dataclass(frozen=True, slots=True)
class SpeechSpec:
    """How to load the driver's speech model in another process or on another node."""

    directory: str | None
    """A CTranslate2 Whisper directory; None for the default Whisper base."""
    cache_dir: str
    """Where the default model is assembled (absolute; created if missing)."""
    sha256: str
    """The driver's ``model.bin`` SHA-256: a worker whose weights differ has no speech."""
    threads: int = WORKER_THREADS

    @classmethod
    def of(cls, asr_model: Path | None, *, cache_dir: Path) -> SpeechSpec:
        """The spec of the default model (``asr_model=None``) or of a model directory.

        Raises:
            ModelError: ``asr_model`` is not a complete CTranslate2 Whisper directory.
        """
        info = default_model_info() if asr_model is None else directory_model_info(asr_model)
        if info.sha256 is None:  # both cards carry one; a guard for the type
            raise ModelError(f"the speech model {info.name} has no SHA-256")
        directory = None if asr_model is None else os.fspath(asr_model.resolve())
        return cls(directory, os.fspath(cache_dir.resolve()), info.sha256)

    def load(self) -> WorkerSpeech:
        """The model loaded here, or why it could not be (kept, never raised: locally too a
        model that fails to load leaves each video's ``speech_problem``, not a failed job)."""
        try:
            model = load_speech_model(
                None if self.directory is None else Path(self.directory),
                cache_dir=Path(self.cache_dir),
                threads=self.threads,
            )
        except ModelError as exc:
            return WorkerSpeech(None, exc)
        if model.info.sha256 != self.sha256:
            return WorkerSpeech(
                None,
                ModelError(
                    f"the speech model here is {model.info.sha256}, the driver's is "
                    f"{self.sha256}: install the same speech model on every node"
                ),
            )
        return WorkerSpeech(model, None)


@dataclass(frozen=True, slots=True)
class WorkerSpeech:
    """A worker's loaded speech model, or the error that stopped it loading."""

    model: SpeechModel | None
    error: ModelError | None

    def transcriber(self, hotwords: str | None) -> Transcriber:
        """What ``video.index_video`` calls for each file: :func:`faceledger.speech.transcribe`
        with this model, or raising the load error (the index's ``speech_problem``)."""
        if self.model is not None:
            return partial(transcribe, model=self.model, hotwords=hotwords)
        error = self.error or ModelError("no speech model")

        def unavailable(
            path: str | os.PathLike[str], *, progress: SpeechProgress | None
        ) -> Transcript:
            raise error

        return unavailable
