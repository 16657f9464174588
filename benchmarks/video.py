"""Real-time factors of video indexing and of speech recognition on the shared media.

Usage: ``python benchmarks/video.py [--fps F] [--no-ocr] [--no-speech] [--repeat N]``.
Prints JSON. Real-time factor = media seconds per wall second (best of ``--repeat``
runs).

- ``clips``: the whole index (faces, on-screen text and, unless ``--no-speech``, speech)
  of the shared clips. Targets on 2 cores: 3x real time on the 640x360 Hamilton clip
  (with speech) and 1x on the 1080p clip. ``hamilton_640x360_no_speech`` is the same clip
  without the speech pass, in the same run, so the cost of speech reads side by side.
- ``speech``: the default speech model (Whisper base, CTranslate2 int8, 2 threads) on
  ``../shared/audio`` (target 5x real time), with the word error rate after
  normalisation (lower case, no punctuation) against ``transcripts.json``.

``cpu_bound_rtf`` is the factor a run would reach with the machine's cores to itself
(media seconds over CPU seconds per core): on a shared machine the wall-clock factor
understates the pipeline, and ``load_average`` says how shared it was.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from faceledger.config import Settings
from faceledger.service import FaceService
from faceledger.speech import Transcript, load_speech_model, transcribe
from faceledger.video.indexer import IndexOptions
from faceledger.video.ocr import TextReader

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FACES = SHARED / "faces"
AUDIO = SHARED / "audio"
CLIPS = {
    "hamilton_640x360": FACES / "face_recognition_examples/video/short_hamilton_clip.mp4",
    "pedestrians_1080p": FACES / "facenet_pytorch/video/video.mp4",
}
TARGETS = {"hamilton_640x360": 3.0, "pedestrians_1080p": 1.0, "speech": 5.0}
T = TypeVar("T")


def best_of(repeat: int, run: Callable[[], T]) -> tuple[float, float, T]:
    """(wall seconds, CPU seconds, result) of the fastest of ``repeat`` runs."""
    runs = []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        runs.append((time.perf_counter() - wall, time.process_time() - cpu, result))
    return min(runs, key=lambda r: r[0])


def factors(seconds: float, wall: float, cpu: float, cores: int, target: float) -> dict[str, Any]:
    return {
        "media_seconds": round(seconds, 3),
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "realtime_factor": round(seconds / wall, 2),
        "cpu_bound_rtf": round(seconds / (cpu / cores), 2),
        "target": target,
        "meets_target": seconds / wall >= target,
    }


def words(text: str) -> list[str]:
    return re.sub(r"[^\w\s]|_", " ", text.lower()).split()


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level edit distance over the reference length."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        previous, row[0] = row[0], i
        for j, h in enumerate(hyp, start=1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
    return round(row[-1] / max(1, len(ref)), 3)


def speech_results(repeat: int, cores: int, cache: Path) -> dict[str, Any]:
    """RTF and WER of the default model on jfk.flac and multilingual.mp3."""
    references = json.loads((AUDIO / "transcripts.json").read_text())
    model = load_speech_model(cache_dir=cache)
    transcribe(AUDIO / "jfk.flac", model=model)  # warm up
    out: dict[str, Any] = {"model": model.info.name, "threads": model.threads}
    for name in ("jfk.flac", "multilingual.mp3"):
        wall, cpu, result = best_of(repeat, partial(transcribe, AUDIO / name, model=model))
        row = factors(result.duration, wall, cpu, cores, TARGETS["speech"])
        row["languages"] = result.languages
        for segment in references[name]["segments"]:
            said = _said(result, segment["language"])
            row[f"wer_{segment['language']}"] = wer(segment["text"], said)
        out[name] = row
    return out


def _said(result: Transcript, language: str) -> str:
    return " ".join(s.text for s in result.segments if s.language == language)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fps", type=float, default=4.0)
    parser.add_argument("--no-ocr", action="store_true")
    parser.add_argument("--no-speech", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    speech = not args.no_speech
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data=Path(tmp) / "data", cache_dir=Path(tmp) / "cache")
        service = FaceService(settings)
        service.create_collection("bench", require_consent=False)
        service.enroll_folder(
            "bench", FACES / "face_recognition_examples/identities", consent="bench", largest=True
        )
        reader = None if args.no_ocr else TextReader()
        options = IndexOptions(fps=args.fps, ocr=not args.no_ocr, speech=speech)
        runs = {name: (path, options) for name, path in CLIPS.items()}
        if speech:
            silent = IndexOptions(fps=args.fps, ocr=not args.no_ocr, speech=False)
            runs["hamilton_640x360_no_speech"] = (CLIPS["hamilton_640x360"], silent)
        service.index_video("bench", CLIPS["hamilton_640x360"], options=options, text_reader=reader)
        results = {}
        for name, (path, opts) in runs.items():
            wall, cpu, index = best_of(
                args.repeat,
                partial(service.index_video, "bench", path, options=opts, text_reader=reader),
            )
            target = TARGETS[name.removesuffix("_no_speech")]
            results[name] = {
                **factors(index.duration or 0.0, wall, cpu, cores, target),
                "frames_sampled": index.frames_sampled,
                "frames_analysed": index.frames_analysed,
                "people": len(index.people),
                "text_lines": len(index.text),
                "speech_segments": len(index.transcript),
                "speech_problem": index.speech_problem,
            }
        service.close()
        speech_figures = speech_results(args.repeat, cores, settings.cache_dir) if speech else {}
    print(
        json.dumps(
            {
                "fps": args.fps,
                "ocr": not args.no_ocr,
                "speech": speech,
                "cores": cores,
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "clips": results,
                "speech_model": speech_figures,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
