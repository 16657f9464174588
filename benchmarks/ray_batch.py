"""enroll-folder, or video index-archive, locally and on a local Ray cluster, side by side.

Starts a Ray head on this machine (``--cpus`` CPUs, so as many worker actors; token
authentication, no dashboard) and runs the same work into two fresh data folders with the
real CLI, first locally (the engine's threads) then with ``--ray ADDRESS``:

- by default, enrols a tree (default: the 2,259 aligned crops of glint360k_celeb24).
  Prints wall seconds and images per second of each, their ratio, and what each stored
  (which must be equal);
- with ``--archive``, indexes a folder of videos with speech on (default: the 8 shared
  clips, two with a sound track: the Hamilton clip's speech and the 1080p pedestrians')
  into an empty collection. Prints wall seconds and real-time factor (media seconds per wall
  second) of each, their ratio, and whether the people and transcripts are equal.

The Ray run's time includes connecting to the cluster and loading the models per worker
actor (face engine, and the speech model with ``--archive``); the local run's includes
loading them once. On one small machine Ray adds work (serialising to the object store, a
process per worker) and cannot win: it pays off when the cluster has more cores than one
machine.

    .venv/bin/python benchmarks/ray_batch.py [--tree DIR] [--cpus 2] [--no-aligned]
    .venv/bin/python benchmarks/ray_batch.py --archive [--videos DIR] [--cpus 2]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

from _cli import timed_cli
from _ray_head import local_head, ray_env

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "faces"


def cli(data: Path, env: dict[str, str], *args: str) -> tuple[dict[str, Any], float]:
    # exit code 5: some images refused (quality), the run went on
    proc, elapsed = timed_cli(["--data", str(data), *args, "--json"], env, ok=(0, 5))
    return json.loads(proc.stdout), elapsed


def enrol(root: Path, env: dict[str, str], tree: Path, extra: list[str]) -> dict[str, Any]:
    data = root / f"data-{secrets.token_hex(3)}"
    cli(data, env, "collection", "create", "bench", "--no-require-consent")
    out, seconds = cli(data, env, "enroll-folder", "bench", str(tree), *extra)
    images = out["summary"]["enrolled"] + out["summary"]["refused"] + out["summary"]["skipped"]
    return {
        "seconds": round(seconds, 2),
        "images_per_s": round(images / seconds, 1),
        "images": images,
        "enrolled": out["summary"]["enrolled"],
        "refused": out["summary"]["refused"],
        **({"workers": out["cluster"]["workers"]} if "cluster" in out else {}),
    }


def shared_clips(root: Path) -> Path:
    """A folder of links to every shared video clip (unique names: two are video.mp4)."""
    folder = root / "clips"
    folder.mkdir()
    for clip in sorted(SHARED.rglob("*.mp4")):
        (folder / "-".join(clip.relative_to(SHARED).parts)).symlink_to(clip)
    return folder


def index_archive(
    root: Path, env: dict[str, str], videos: Path, extra: list[str]
) -> dict[str, Any]:
    data = root / f"data-{secrets.token_hex(3)}"
    cli(data, env, "collection", "create", "bench", "--no-require-consent")
    doc = root / f"archive-{secrets.token_hex(3)}.json"
    command = ["video", "index-archive", str(videos), "--collection", "bench", "--json"]
    _, seconds = timed_cli(["--data", str(data), *command, str(doc), *extra], env)
    out = json.loads(doc.read_text())
    indexes = {Path(v["path"]).name: v["index"] for v in out["videos"]}
    media = sum(i["duration"] or 0.0 for i in indexes.values())
    return {
        "seconds": round(seconds, 2),
        "media_seconds": round(media, 2),
        "real_time_factor": round(media / seconds, 2),
        "videos": len(indexes),
        "transcript_segments": sum(len(i["transcript"]) for i in indexes.values()),
        **({"workers": out["cluster"]["workers"]} if "cluster" in out else {}),
        "_people": {
            n: [(p["label"], p["intervals"]) for p in i["people"]] for n, i in indexes.items()
        },
        "_speech": {n: (i["transcript"], i["speech_problem"]) for n, i in indexes.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=SHARED / "glint360k_celeb24" / "images")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs (worker actors) of the head")
    parser.add_argument("--no-aligned", action="store_true", help="the tree holds photos")
    parser.add_argument("--archive", action="store_true", help="index videos, speech on")
    parser.add_argument("--videos", type=Path, help="with --archive (default: shared clips)")
    args = parser.parse_args()
    env = ray_env()
    extra = [] if args.no_aligned else ["--aligned"]
    root = Path(tempfile.mkdtemp(prefix="fl-raybench-"))
    try:
        if args.archive:
            videos = args.videos or shared_clips(root)

            def work(more: list[str]) -> dict[str, Any]:
                return index_archive(root, env, videos, more)

        else:

            def work(more: list[str]) -> dict[str, Any]:
                return enrol(root, env, args.tree, [*extra, *more])

        local = work([])
        with local_head(args.cpus, root / "ray") as (address, head_seconds):
            on_ray = work(["--ray", address])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    summary: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "ray_head_start_s": round(head_seconds, 2),
    }
    if args.archive:
        same = {k: local.pop(k) == on_ray.pop(k) for k in ("_people", "_speech")}
        rate = "real_time_factor"
        summary.update(
            videos=str(args.videos or "shared clips"),
            same_people=same["_people"],
            same_transcripts=same["_speech"],
        )
    else:
        rate = "images_per_s"
        summary.update(
            tree=str(args.tree),
            same_result=(local["enrolled"], local["refused"])
            == (on_ray["enrolled"], on_ray["refused"]),
        )
    summary.update(
        local=local, ray=on_ray, ray_vs_local_throughput=round(on_ray[rate] / local[rate], 2)
    )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
