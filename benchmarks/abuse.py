"""Hold under abuse (#13): a real server driven by hostile traffic while a good client works.

For ``--seconds`` (default 40) it sends, at once: 16 concurrent crafted images (small
JPEG files of one colour whose header claims just under the pixel cap), a flood of 40
video uploads of random bytes, and requests without a key or with a wrong one, while a
well-behaved client identifies a real photo in a loop. Prints JSON: the server's peak
RSS (``VmHWM``), the good client's latency percentiles and errors by status, what the
hostile clients were answered, and the bytes left in ``DATA/tmp`` once the jobs have
finished or failed.

    .venv/bin/python benchmarks/abuse.py --seconds 40
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
PHOTO = SHARED / "faceapi_bbt" / "group" / "bbt1.jpg"
ENROL = SHARED / "faceapi_bbt" / "identities" / "sheldon"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _crafted(side: int) -> bytes:
    """A JPEG of one colour: a few kB on the wire, ``side x side`` pixels when decoded."""
    out = io.BytesIO()
    Image.new("RGB", (side, side), (120, 110, 100)).save(out, "JPEG", quality=10)
    return out.getvalue()


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=40.0)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="faceledger-abuse-"))
    data = root / "data"
    port = _port()
    url = f"http://127.0.0.1:{port}"
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "faceledger", "serve", "--data", str(data), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "FACELEDGER_RATE_LIMIT": "50"},
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        admin = {"X-API-Key": (data / "admin.key").read_text().strip()}
        httpx.post(
            f"{url}/v1/collections", json={"name": "s", "require_consent": False}, headers=admin
        )
        httpx.post(f"{url}/v1/collections/s/persons", json={"name": "sheldon"}, headers=admin)
        for image in sorted(ENROL.iterdir())[:3]:
            httpx.post(
                f"{url}/v1/collections/s/persons/sheldon/faces",
                content=image.read_bytes(),
                headers=admin,
                timeout=60,
            )
        keys = [
            {
                "X-API-Key": httpx.post(
                    f"{url}/v1/keys", json={"role": "searcher"}, headers=admin
                ).json()["key"]
            }
            for _ in range(18)
        ]
        good_key, video_key, crafted_keys = keys[0], keys[1], keys[2:]
        side = int(np.sqrt(40_000_000)) - 10  # just under the 40 Mpx cap
        crafted = _crafted(side)
        photo = PHOTO.read_bytes()
        stop = time.monotonic() + args.seconds
        answers: dict[str, Counter[int]] = {
            k: Counter() for k in ("crafted", "video", "unauthenticated", "good")
        }
        latencies: list[float] = []
        lock = threading.Lock()

        def record(kind: str, status: int) -> None:
            with lock:
                answers[kind][status] += 1

        def hostile_image(key: dict[str, str]) -> None:
            with httpx.Client(timeout=180) as c:
                while time.monotonic() < stop:
                    try:
                        r = c.post(f"{url}/v1/detect", content=crafted, headers=key)
                        record("crafted", r.status_code)
                        if r.status_code == 503:
                            time.sleep(float(r.headers.get("Retry-After", "1")))
                    except httpx.HTTPError:
                        record("crafted", 0)

        def videos() -> None:
            rng = np.random.default_rng(0)
            with httpx.Client(timeout=180) as c:
                for _ in range(40):
                    if time.monotonic() >= stop:
                        break
                    body = rng.integers(0, 256, 2 * 1024 * 1024, dtype=np.uint8).tobytes()
                    try:
                        r = c.post(
                            f"{url}/v1/videos?collection=s&purpose=abuse",
                            content=body,
                            headers=video_key,
                        )
                        record("video", r.status_code)
                    except httpx.HTTPError:
                        record("video", 0)

        def anonymous() -> None:
            with httpx.Client(timeout=30) as c:
                i = 0
                while time.monotonic() < stop:
                    i += 1
                    headers = {"X-API-Key": "fl_wrong"} if i % 2 else {}
                    try:
                        record(
                            "unauthenticated",
                            c.get(f"{url}/v1/collections", headers=headers).status_code,
                        )
                    except httpx.HTTPError:
                        record("unauthenticated", 0)
                    time.sleep(0.01)

        def good() -> None:
            with httpx.Client(timeout=180) as c:
                while time.monotonic() < stop:
                    t0 = time.perf_counter()
                    try:
                        r = c.post(
                            f"{url}/v1/collections/s/identify?purpose=benchmark",
                            content=photo,
                            headers=good_key,
                        )
                        status = r.status_code
                    except httpx.HTTPError:
                        status = 0
                    if status == 200:
                        with lock:
                            latencies.append(time.perf_counter() - t0)
                    record("good", status)
                    if status == 503:
                        time.sleep(1)

        threads = [threading.Thread(target=hostile_image, args=(k,)) for k in crafted_keys[:16]]
        threads += [threading.Thread(target=f) for f in (videos, anonymous, good)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        peak = _peak_rss(proc.pid)
        # let the queued video jobs finish or fail, then see what is left in DATA/tmp
        settle = time.monotonic() + 120
        while time.monotonic() < settle:
            jobs = httpx.get(f"{url}/v1/videos?limit=100", headers=admin).json()
            if all(j["status"] not in ("queued", "running") for j in jobs):
                break
            time.sleep(1)
        lat = np.array(latencies) if latencies else np.array([float("nan")])
        good_errors = {str(k): v for k, v in answers["good"].items() if k != 200}
        print(
            json.dumps(
                {
                    "seconds": args.seconds,
                    "crafted_image_pixels": side * side,
                    "crafted_image_bytes": len(crafted),
                    "server_peak_rss_mb": round(peak / 2**20, 1),
                    "good_requests_ok": answers["good"][200],
                    "good_p50_s": round(float(np.percentile(lat, 50)), 3),
                    "good_p99_s": round(float(np.percentile(lat, 99)), 3),
                    "good_errors": good_errors,
                    "good_5xx": sum(v for k, v in answers["good"].items() if k >= 500),
                    "answers": {k: {str(s): n for s, n in v.items()} for k, v in answers.items()},
                    "data_tmp_bytes_after": _dir_bytes(data / "tmp"),
                    "data_jobs_bytes_after": _dir_bytes(data / "jobs"),
                },
                indent=2,
            )
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


if __name__ == "__main__":
    main()
