"""Real-time factor of video indexing (video seconds per wall second) on the shared clips.

Usage: ``python benchmarks/video.py [--fps F] [--no-ocr] [--repeat N]``. Prints JSON with
the wall and CPU time of each run. Targets on 2 cores: at least 3x real time on the
640x360 clip and 1x on the 1080p clip. ``cpu_bound_rtf`` is the factor the run would reach
with the machine's cores to itself (video seconds over CPU seconds per core): on a shared
machine the wall-clock factor understates the pipeline.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from faceledger.config import Settings
from faceledger.service import FaceService
from faceledger.video.indexer import IndexOptions
from faceledger.video.ocr import TextReader

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
CLIPS = {
    "hamilton_640x360": SHARED / "face_recognition_examples/video/short_hamilton_clip.mp4",
    "pedestrians_1080p": SHARED / "facenet_pytorch/video/video.mp4",
}
TARGETS = {"hamilton_640x360": 3.0, "pedestrians_1080p": 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fps", type=float, default=4.0)
    parser.add_argument("--no-ocr", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        service = FaceService(Settings(data=Path(tmp) / "data"))
        service.create_collection("bench", require_consent=False)
        service.enroll_folder(
            "bench", SHARED / "face_recognition_examples/identities", consent="bench", largest=True
        )
        reader = None if args.no_ocr else TextReader()
        options = IndexOptions(fps=args.fps, ocr=not args.no_ocr)
        service.index_video("bench", CLIPS["hamilton_640x360"], options=options, text_reader=reader)
        results = {}
        for name, path in CLIPS.items():
            runs = []
            for _ in range(args.repeat):
                wall, cpu = time.perf_counter(), time.process_time()
                index = service.index_video("bench", path, options=options, text_reader=reader)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                runs.append((wall, cpu, index))
            wall, cpu, index = min(runs, key=lambda r: r[0])
            seconds = index.duration or 0.0
            results[name] = {
                "video_seconds": round(seconds, 3),
                "wall_seconds": round(wall, 3),
                "cpu_seconds": round(cpu, 3),
                "realtime_factor": round(seconds / wall, 2),
                "cpu_bound_rtf": round(seconds / (cpu / cores), 2),
                "target": TARGETS[name],
                "meets_target": seconds / wall >= TARGETS[name],
                "frames_sampled": index.frames_sampled,
                "frames_analysed": index.frames_analysed,
                "people": len(index.people),
                "text_lines": len(index.text),
            }
        service.close()
    print(
        json.dumps(
            {
                "fps": args.fps,
                "ocr": not args.no_ocr,
                "cores": cores,
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "clips": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
