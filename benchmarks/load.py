"""Load test: many concurrent clients identify and enrol against a running server.

Starts its own server on a loopback port (fresh data directory, rate limit off) unless
``--url`` and ``--key`` are given, enrols the faceapi_bbt cast, then runs ``--clients``
concurrent clients for ``--seconds``: each alternates an identify of a scene photo and
an enrolment of a face crop. Prints JSON: requests per second, p50/p99 latency per
operation, error count, and whether every acknowledged enrolment is present afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "faces"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    port = free_port()
    env = {**os.environ, "FACELEDGER_RATE_LIMIT": "0"}
    cmd = [sys.executable, "-m", "faceledger", "serve", "--data", str(data), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url, (data / "admin.key").read_text().strip()
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start")


async def run(
    url: str, key: str, *, clients: int, seconds: float, person_prefix: str = "load"
) -> dict[str, Any]:
    """``person_prefix``: the clients' person names start with it (several runs on one database
    each enrol their own persons; see benchmarks/replicas.py)."""
    bbt = SHARED / "faceapi_bbt"
    scenes = [p.read_bytes() for p in sorted((bbt / "group").glob("bbt*.jpg"))]
    crops = [p.read_bytes() for p in sorted((bbt / "identities").rglob("*.png"))]
    headers = {"X-API-Key": key}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as http:
        await http.post("/v1/collections", json={"name": "load", "require_consent": False})
        for person in sorted((bbt / "identities").iterdir()):
            await http.post("/v1/collections/load/persons", json={"name": person.name})
            for image in sorted(person.iterdir())[:3]:
                await http.post(
                    f"/v1/collections/load/persons/{person.name}/faces", content=image.read_bytes()
                )
        latencies: dict[str, list[float]] = {"identify": [], "enroll": []}
        errors: list[str] = []
        acknowledged: list[int] = []
        deadline = time.perf_counter() + seconds

        async def client(n: int) -> None:
            person, enrolled, i = f"{person_prefix}-{n}-0", 0, 0
            await http.post("/v1/collections/load/persons", json={"name": person})
            while time.perf_counter() < deadline:
                if i % 2 == 0:
                    op, t0 = "identify", time.perf_counter()
                    r = await http.post(
                        "/v1/collections/load/identify",
                        params={"purpose": "load test"},
                        content=scenes[(n + i) % len(scenes)],
                    )
                else:
                    if enrolled == 200:  # stay under the 250 faces per person limit
                        person, enrolled = f"{person_prefix}-{n}-{i}", 0
                        await http.post("/v1/collections/load/persons", json={"name": person})
                    op, t0 = "enroll", time.perf_counter()
                    r = await http.post(
                        f"/v1/collections/load/persons/{person}/faces",
                        params={"allow_low_quality": "true"},
                        content=crops[(n + i) % len(crops)],
                    )
                    if r.status_code == 201:
                        acknowledged.append(int(r.json()["face_id"]))
                        enrolled += 1
                latencies[op].append(time.perf_counter() - t0)
                if r.status_code >= 300:
                    errors.append(f"{op} {r.status_code} {r.text[:120]}")
                i += 1

        start = time.perf_counter()
        await asyncio.gather(*(client(n) for n in range(clients)))
        elapsed = time.perf_counter() - start
        # Every acknowledged enrolment must be present afterwards.
        present: set[int] = set()
        persons = (await http.get("/v1/collections/load/persons", params={"limit": 1000})).json()[
            "persons"
        ]
        for p in persons:
            faces = (await http.get(f"/v1/collections/load/persons/{p['name']}/faces")).json()
            present.update(int(f["id"]) for f in faces)
        missing = sorted(set(acknowledged) - present)

    def stats(values: list[float]) -> dict[str, Any]:
        if not values:
            return {"count": 0}
        arr = np.array(values) * 1000
        return {
            "count": len(values),
            "p50_ms": round(float(np.percentile(arr, 50)), 1),
            "p99_ms": round(float(np.percentile(arr, 99)), 1),
        }

    total = sum(len(v) for v in latencies.values())
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": total,
        "requests_per_second": round(total / elapsed, 1),
        "identify": stats(latencies["identify"]),
        "enroll": stats(latencies["enroll"]),
        "errors": len(errors),
        "error_samples": errors[:5],
        "acknowledged_enrolments": len(acknowledged),
        "missing_after_run": len(missing),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url")
    parser.add_argument("--key")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    proc = None
    with tempfile.TemporaryDirectory(prefix="faceledger-load-") as tmp:
        if args.url:
            url, key = args.url, args.key
        else:
            proc, url, key = start_server(Path(tmp) / "data")
        try:
            result = asyncio.run(run(url, key, clients=args.clients, seconds=args.seconds))
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=60)
    print(json.dumps(result, indent=2))
    if result["errors"] or result["missing_after_run"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
