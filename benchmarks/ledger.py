"""The cost of a ledger anyone can check: signing, checkpointing, appending, proving.

- ``sign_ms`` / ``verify_ms``: one Ed25519 checkpoint signature made / checked;
- ``checkpoint_ms``: :meth:`Ledger.checkpoint` after ``--batch`` new entries: read and
  check them (hash, chain, HMAC seal), extend the stored frontier, sign, store, and
  append to a witness file with fsync; median of the rounds;
- ``appends_per_s``: audited units of work (one write transaction each, entry + commit +
  head file + any due checkpoint) with checkpoints every 100 entries (the default), every
  entry, and never (``FACELEDGER_CHECKPOINT_EVERY_ENTRIES=0``, ``..._SECONDS=0``);
- ``merkle``: the in-memory tree over ``--leaves`` leaves (build once, then one inclusion
  and one consistency proof), and offline verification of an export (entries per second).

SQLite runs with ``synchronous=FULL`` as in the service, so every commit is an fsync: the
numbers depend on the disk. Prints JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from faceledger.config import Settings
from faceledger.ledger.audit import Actor, Ledger
from faceledger.ledger.merkle import MerkleTree
from faceledger.ledger.notes import SigningKey, verify_note
from faceledger.ledger.verify import verify_export
from faceledger.service.work import Auditor
from faceledger.store import Store

ACTOR = Actor(key_id=None, role="local", name="benchmark")


def timed_ms(fn: Any, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def open_ledger(root: Path, **overrides: Any) -> tuple[Store, Ledger, Auditor]:
    settings = Settings(
        data=root / "data",
        signing_key_file=root / "secrets" / "signing.key",
        witness_files=[root / "witness.jsonl"],
        **overrides,
    )
    store = Store(settings.data)
    ledger = Ledger(store.engine, settings.data, settings=settings)
    return store, ledger, Auditor(store, ledger)


def append(auditor: Auditor, n: int) -> float:
    """Seconds for ``n`` audited operations that change nothing but the ledger."""
    t = time.perf_counter()
    for i in range(n):
        with auditor.audited(ACTOR, "benchmark", request={"i": i}):
            pass
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--appends", type=int, default=1000, help="Operations per schedule.")
    parser.add_argument("--batch", type=int, default=100, help="Entries per timed checkpoint.")
    parser.add_argument("--rounds", type=int, default=10, help="Timed checkpoints.")
    parser.add_argument("--leaves", type=int, default=1_000_000, help="Leaves of the tree.")
    args = parser.parse_args()
    out: dict[str, Any] = {}

    with tempfile.TemporaryDirectory() as tmp:
        key = SigningKey.load_or_create(Path(tmp) / "k")
        root = hashlib.sha256(b"root").digest()
        note = key.sign_checkpoint(123, root, timestamp_ns=time.time_ns()).note
        out["sign_ms"] = timed_ms(lambda: key.sign_checkpoint(123, root, timestamp_ns=1), 2000)
        out["verify_ms"] = timed_ms(lambda: verify_note(note, key.public), 2000)

    appends: dict[str, float] = {}
    for label, every in (("every_100", 100), ("every_entry", 1), ("never", 0)):
        with tempfile.TemporaryDirectory() as tmp:
            store, ledger, auditor = open_ledger(
                Path(tmp), checkpoint_every_entries=every, checkpoint_every_seconds=0
            )
            append(auditor, 20)  # warm up
            appends[label] = round(args.appends / append(auditor, args.appends), 1)
            ledger.close()
            store.close()
    out["appends_per_s"] = appends

    with tempfile.TemporaryDirectory() as tmp:
        store, ledger, auditor = open_ledger(
            Path(tmp), checkpoint_every_entries=0, checkpoint_every_seconds=0
        )
        times = []
        for _ in range(args.rounds):
            append(auditor, args.batch)
            t = time.perf_counter()
            ledger.checkpoint()
            times.append((time.perf_counter() - t) * 1e3)
        out["checkpoint_ms"] = {"batch": args.batch, "median": statistics.median(times)}
        export = Path(tmp) / "export.jsonl"
        with export.open("w") as fh:
            for e in ledger.iter_all():
                fh.write(json.dumps(dict(e), default=str, sort_keys=True) + "\n")
        n = ledger.count()
        t = time.perf_counter()
        report = verify_export(
            export, public=ledger.public_key, checkpoints=[Path(tmp) / "witness.jsonl"]
        )
        verify_s = time.perf_counter() - t
        assert report.ok, report
        ledger.close()
        store.close()

    leaves = (hashlib.sha256(i.to_bytes(8, "little")).digest() for i in range(args.leaves))
    t = time.perf_counter()
    tree = MerkleTree(leaves)
    build_s = time.perf_counter() - t
    size = tree.size
    rng = random.Random(0)
    out["merkle"] = {
        "leaves": size,
        "build_s": round(build_s, 2),
        "inclusion_proof_ms": timed_ms(
            lambda: tree.inclusion_proof(rng.randrange(size - 1), size), 1000
        ),
        "consistency_proof_ms": timed_ms(
            lambda: tree.consistency_proof(rng.randrange(1, size), size), 1000
        ),
        "offline_verify_entries_per_s": round(n / verify_s),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
