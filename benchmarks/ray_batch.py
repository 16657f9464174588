"""enroll-folder locally and on a local Ray cluster, side by side in one run.

Starts a Ray head on this machine (``--cpus`` CPUs, so as many worker actors; token
authentication, no dashboard) and enrols the same tree (default: the 2,259 aligned
crops of glint360k_celeb24) into two fresh data folders with the real CLI, first locally
(the engine's threads) then with ``--ray ADDRESS``. Prints JSON: wall seconds and images
per second of each, their ratio, and what each stored (which must be equal). The Ray run's
time includes connecting to the cluster and loading a model per worker actor; the local
run's includes loading the model once. On one small machine Ray adds work (serialising
images to the object store, a process per worker) and cannot win: it pays off when the
cluster has more cores than one machine.

    .venv/bin/python benchmarks/ray_batch.py [--tree DIR] [--cpus 2] [--no-aligned]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "faces"


def cli(data: Path, env: dict[str, str], *args: str) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "faceledger", "--data", str(data), *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode not in (0, 5):  # 5: some images refused (quality), the run went on
        raise SystemExit(f"{args} failed: {proc.stderr[-2000:]}")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=SHARED / "glint360k_celeb24" / "images")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs (worker actors) of the head")
    parser.add_argument("--no-aligned", action="store_true", help="the tree holds photos")
    args = parser.parse_args()
    env = {
        **os.environ,
        "RAY_DISABLE_USAGE_STATS": "1",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
    }
    os.environ.update(env)
    import ray

    extra = [] if args.no_aligned else ["--aligned"]
    root = Path(tempfile.mkdtemp(prefix="fl-raybench-"))
    try:
        local = enrol(root, env, args.tree, extra)
        started = time.perf_counter()
        ray.init(
            num_cpus=args.cpus,
            include_dashboard=False,
            object_store_memory=200 * 1024 * 1024,
            _temp_dir=str(root / "ray"),
            configure_logging=False,
            log_to_driver=False,
        )
        head_seconds = time.perf_counter() - started
        address = ray.get_runtime_context().gcs_address
        try:
            on_ray = enrol(root, env, args.tree, [*extra, "--ray", address])
        finally:
            ray.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        json.dumps(
            {
                "tree": str(args.tree),
                "cpus": os.cpu_count(),
                "ray_head_start_s": round(head_seconds, 2),
                "local": local,
                "ray": on_ray,
                "ray_vs_local_throughput": round(on_ray["images_per_s"] / local["images_per_s"], 2),
                "same_result": (local["enrolled"], local["refused"])
                == (on_ray["enrolled"], on_ray["refused"]),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
