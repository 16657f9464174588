"""Speech in media files: decode audio, transcribe and translate it offline, write subtitles."""

from faceledger.speech.audio import MAX_AUDIO_SECONDS, DecodedAudio, decode_audio
from faceledger.speech.model import (
    SpeechModel,
    SpeechModelInfo,
    assemble_default_model,
    default_model_info,
    default_speech_model,
    directory_model_info,
    load_speech_model,
)
from faceledger.speech.transcribe import transcribe
from faceledger.speech.types import Transcript, TranscriptSegment

__all__ = [
    "MAX_AUDIO_SECONDS",
    "DecodedAudio",
    "SpeechModel",
    "SpeechModelInfo",
    "Transcript",
    "TranscriptSegment",
    "assemble_default_model",
    "decode_audio",
    "default_model_info",
    "default_speech_model",
    "directory_model_info",
    "load_speech_model",
    "transcribe",
]
