"""Media made in the tests: a talking-head video whose faces, text and speech are all known.

:func:`speech_video` draws a shared face photo with a line of text on every frame and
muxes it with a shared recording (``../shared/audio/jfk.flac`` by default) into an MP4
(H.264 + AAC) with PyAV, so one small file exercises faces, on-screen text and speech.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from faceledger.imaging import decode_image

AUDIO = Path(__file__).resolve().parents[1].parent / "shared" / "audio"
JFK = AUDIO / "jfk.flac"
SPEECH_VIDEO_FACE = "face_recognition_examples/identities/joe_biden/biden2.jpg"
"""A photo of Joe Biden (enrol ``joe_biden/biden.jpg``, a different photo, to name him)."""
SPEECH_VIDEO_TEXT = "BUDGET REVIEW 2027"
SPEECH_VIDEO_WORDS = ["ask", "country", "americans"]
"""Words said in ``jfk.flac`` (J. F. Kennedy, 11 s, speech from about 0.3 s to 10.6 s)."""


def speech_video(
    path: Path,
    face_photo: Path,
    *,
    text: str = SPEECH_VIDEO_TEXT,
    audio: Path = JFK,
    fps: int = 5,
    size: tuple[int, int] = (640, 360),
) -> Path:
    """Write an MP4 to ``path``: ``face_photo`` on the left, ``text`` along the bottom on
    every frame, for as long as ``audio``, which is muxed as AAC. Returns ``path``."""
    width, height = size
    frame = np.full((height, width, 3), 40, np.uint8)
    photo = decode_image(face_photo)
    fit = min((width // 2) / photo.shape[1], (height - 80) / photo.shape[0])
    photo = cv2.resize(photo, (int(photo.shape[1] * fit), int(photo.shape[0] * fit)))
    frame[10 : 10 + photo.shape[0], 10 : 10 + photo.shape[1]] = photo
    cv2.putText(frame, text, (20, height - 25), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 2)
    with av.open(str(audio)) as source:
        in_stream = source.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=16000)
        chunks = [r.to_ndarray() for f in source.decode(in_stream) for r in resampler.resample(f)]
        chunks += [r.to_ndarray() for r in resampler.resample(None)]
    samples = np.concatenate(chunks, axis=1)  # (1, n) float32 at 16 kHz
    seconds = samples.shape[1] / 16000
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = out.add_stream("aac", rate=16000, layout="mono")
        for i in range(int(seconds * fps) + 1):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts, picture.time_base = i, Fraction(1, fps)
            out.mux(video.encode(picture))
        out.mux(video.encode(None))
        for start in range(0, samples.shape[1], 1024):  # the AAC frame size
            piece = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples[:, start : start + 1024]), format="fltp", layout="mono"
            )
            piece.sample_rate, piece.pts, piece.time_base = 16000, start, Fraction(1, 16000)
            out.mux(sound.encode(piece))
        out.mux(sound.encode(None))
    return path


def silent_audio(path: Path, *, seconds: float, rate: int = 16000) -> Path:
    """Write ``seconds`` of digital silence as a 16-bit mono WAV to ``path``."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout="mono")
        total, step = int(seconds * rate), 1024
        for start in range(0, total, step):
            chunk = np.zeros((1, min(step, total - start)), np.int16)
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path
