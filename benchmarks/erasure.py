"""The cost of physical erasure in a large store, beside enrolling the same person again.

A store of ``--size`` synthetic 512-d faces (4 per person, shaped like real faces as in
``benchmarks/store.py``) is built and saved. Then, ``--persons`` times: a person of 4
faces is erased (``Store.delete_person``: rows deleted under SQLite ``secure_delete``,
the WAL checkpointed and truncated, the index's codes zeroed and its file rewritten before
the call returns) and, for comparison in the same run, a new person of 4 faces is enrolled
(``Store.add_faces``). Reports ms per erased person, ms per enrolled person and their
ratio, plus the index file size that each erasure rewrites. Prints JSON.
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
from store import filled, gallery


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--persons", type=int, default=20)
    parser.add_argument("--batch", type=int, default=5_000)
    args = parser.parse_args()
    vectors, _, _ = gallery(args.size, iid=False)
    rng = np.random.default_rng(7)
    erase_ms, enrol_ms = [], []
    with tempfile.TemporaryDirectory(prefix="faceledger-erasure-") as tmp:
        store = Store(Path(tmp))
        filled(store, vectors, args.batch)
        col = store.get_collection("bench")
        store.search(col, vectors[:1], 10)  # the index is built and current
        store.index(col).save()
        index_bytes = sum(p.stat().st_size for p in (Path(tmp) / "index").iterdir())
        victims = rng.choice(args.size // 4, size=args.persons, replace=False)
        for n, person in enumerate(victims):
            t0 = time.perf_counter()
            assert store.delete_person("bench", f"p{person}") == 4
            erase_ms.append((time.perf_counter() - t0) * 1000)
            faces = [
                NewFace(embedding=vectors[(4 * int(person) + k) % args.size]) for k in range(4)
            ]
            t0 = time.perf_counter()
            store.add_faces("bench", f"new{n}", faces, create_person=True)
            enrol_ms.append((time.perf_counter() - t0) * 1000)
        index = store.index(col)._index
        kind = type(getattr(index, "_inner", index)).__name__
        store.close()
    erase, enrol = float(np.median(erase_ms)), float(np.median(enrol_ms))
    print(
        json.dumps(
            {
                "faces": args.size,
                "index": kind,
                "index_file_bytes": index_bytes,
                "persons_erased": args.persons,
                "erase_ms_per_person_p50": round(erase, 1),
                "erase_ms_per_person_max": round(max(erase_ms), 1),
                "enrol_ms_per_person_p50": round(enrol, 1),
                "erase_to_enrol_ratio": round(erase / enrol, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
