"""``eval verify`` locally and with ``--ray`` on a local Ray cluster, side by side in one run.

Starts a Ray head on this machine (``--cpus`` CPUs, so as many worker actors; token
authentication, no dashboard) and runs ``faceledger eval verify --tree TREE`` three times
with the real CLI: locally into an empty cache, with ``--ray ADDRESS`` into another empty
cache, and with ``--ray`` again (everything cached: nothing is sent to the cluster).
Prints JSON: wall seconds and images per second of each, their ratio, what the cluster
did, and whether the figures are equal. The Ray run's time includes connecting and
loading a model per worker actor; the local run's includes loading the model once.

    .venv/bin/python benchmarks/ray_eval.py [--tree DIR] [--per-person N] [--cpus 2] [--no-aligned]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from _cli import timed_cli
from _ray_head import local_head, ray_env

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
RAY_LINE = re.compile(
    r"ray: (?P<embedded>\d+) images embedded on the cluster in (?P<tasks>\d+) tasks by "
    r"(?P<workers>\d+) workers"
)


def verify(env: dict[str, str], args: list[str], cache: Path) -> dict[str, Any]:
    proc, seconds = timed_cli(["eval", "verify", *args, "--cache-dir", str(cache)], env)
    out = json.loads(proc.stdout)
    said = RAY_LINE.search(proc.stderr)
    return {
        "seconds": round(seconds, 2),
        "images_per_s": round(out["images"] / seconds, 1),
        "images": out["images"],
        "eer": out["eer"],
        "auc": out["auc"],
        **({"cluster": {k: int(v) for k, v in said.groupdict().items()}} if said else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=SHARED / "glint360k_celeb24" / "images")
    parser.add_argument("--per-person", type=int, default=None, help="images per person")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs (worker actors) of the head")
    parser.add_argument("--no-aligned", action="store_true", help="the tree holds photos")
    args = parser.parse_args()
    env = ray_env()
    common = ["--tree", str(args.tree), "--json"]
    common += [] if args.no_aligned else ["--aligned"]
    common += [] if args.per_person is None else ["--per-person", str(args.per_person)]
    root = Path(tempfile.mkdtemp(prefix="fl-rayeval-"))
    try:
        local = verify(env, common, root / "local")
        with local_head(args.cpus, root / "ray") as (address, _):
            on_ray = verify(env, [*common, "--ray", address], root / "ray-cache")
            cached = verify(env, [*common, "--ray", address], root / "ray-cache")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        json.dumps(
            {
                "tree": str(args.tree),
                "per_person": args.per_person,
                "cpus": os.cpu_count(),
                "local": local,
                "ray": on_ray,
                "ray_all_cached": cached,
                "ray_vs_local_throughput": round(on_ray["images_per_s"] / local["images_per_s"], 2),
                "same_figures": (local["eer"], local["auc"]) == (on_ray["eer"], on_ray["auc"]),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
