"""The face store end to end: bulk enrolment into SQLite + index, reopen, search latency.

Synthetic 512-d faces (4 per identity, generated as in ``benchmarks/search.py``; ``--iid``
for independent random identities, a flatter and harder gallery) go through
``Store.add_faces_bulk`` in batches (one transaction each: rows, change log, vectors);
then the store is closed (index saved), reopened, and single queries are timed through
``Store.search`` (which also catches up with the database's change log and, on the HNSW
index, re-ranks 32 candidates against the embeddings read back from SQLite). Probes are
new faces of enrolled identities; ``recall_at_10`` is the share of the exact top 10 (a
brute-force scan of the gallery) that the store returns, ``own_mates_found`` the share of
the probe's identity's 4 faces in the store's top 10. Different identities here are
independent random directions, so past the mates the exact top 10 are random-direction
impostors, the hard case for any graph index. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from faceledger.store import NewFace, Store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search import Synthetic


def gallery(n: int, *, iid: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` faces (4 per identity), 100 probes (new faces of random identities) and the
    probes' identities. Identities are shaped like real faces (``search.Synthetic``), or
    with ``iid`` independent random directions (the harder, flatter case)."""
    rng = np.random.default_rng(seed)
    who = rng.integers(0, n // 4, size=100)
    if not iid:
        gen = Synthetic(n // 4 + 1, seed)
        owners = np.repeat(np.arange(n // 4 + 1, dtype=np.int64), 4)[:n]
        return gen.faces(owners, seed + 4), gen.faces(who, seed + 5), who
    ids = rng.normal(size=(n // 4 + 1, 512)).astype(np.float32)
    faces = np.repeat(ids, 4, axis=0)[:n] + rng.normal(scale=1.0, size=(n, 512)).astype(np.float32)
    probes = ids[who] + rng.normal(scale=1.0, size=(100, 512)).astype(np.float32)
    unit = [x / np.linalg.norm(x, axis=1, keepdims=True) for x in (faces, probes)]
    return unit[0], unit[1], who


def filled(store: Store, vectors: np.ndarray, batch: int) -> list[int]:
    """Collection ``bench`` of ``store`` holding ``vectors`` as persons ``p<i // 4>``,
    enrolled in bulk batches; the face ids in order."""
    store.create_collection(
        "bench",
        model_pack="synthetic",
        model_id="synthetic@1",
        embedding_dim=512,
        require_consent=False,
    )
    face_ids: list[int] = []
    for lo in range(0, len(vectors), batch):
        items = [
            (f"p{i // 4}", NewFace(embedding=vectors[i]))
            for i in range(lo, min(lo + batch, len(vectors)))
        ]
        face_ids += store.add_faces_bulk("bench", items)
    return face_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--iid", action="store_true", help="independent random identities")
    args = parser.parse_args()
    vectors, probes, who = gallery(args.size, iid=args.iid)
    with tempfile.TemporaryDirectory(prefix="faceledger-store-") as tmp:
        store = Store(Path(tmp))
        start = time.perf_counter()
        face_ids = filled(store, vectors, args.batch)
        enrol_seconds = time.perf_counter() - start
        store.close()
        db_bytes = sum(p.stat().st_size for p in Path(tmp).glob("faceledger.db*"))
        index_bytes = sum(p.stat().st_size for p in (Path(tmp) / "index").iterdir())
        start = time.perf_counter()
        store = Store(Path(tmp))
        col = store.get_collection("bench")
        store.search(col, vectors[:1], 10)
        reopen = time.perf_counter() - start
        times, found = [], []
        for q in probes:
            t0 = time.perf_counter()
            found.append(store.search(col, q[None], 10).ids[0])
            times.append(time.perf_counter() - t0)
        store.close()
    position = np.full(max(face_ids) + 1, -1, dtype=np.int64)
    position[face_ids] = np.arange(len(face_ids))
    exact = np.argsort(-(probes @ vectors.T), axis=1)[:, :10]
    hits = sum(
        len(set(e.tolist()) & set(position[f[f >= 0]].tolist()))
        for e, f in zip(exact, found, strict=True)
    )
    mates = sum(int((position[f[f >= 0]] // 4 == p).sum()) for f, p in zip(found, who, strict=True))
    print(
        json.dumps(
            {
                "faces": args.size,
                "gallery": "iid" if args.iid else "face-like",
                "bulk_enrol_faces_per_second": round(args.size / enrol_seconds, 1),
                "reopen_seconds": round(reopen, 3),
                "search_p50_ms": round(float(np.percentile(times, 50)) * 1000, 2),
                "search_p99_ms": round(float(np.percentile(times, 99)) * 1000, 2),
                "recall_at_10": round(hits / exact.size, 4),
                "own_mates_found": round(mates / (4 * len(probes)), 4),
                "database_bytes_per_face": round(db_bytes / args.size),
                "index_bytes_per_face": round(index_bytes / args.size),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
