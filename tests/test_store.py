"""The store's durability and consistency: crashes, concurrency, reopen, erasure.

These tests use the real store (SQLite + vector index) with synthetic unit vectors, which
is what the store sees anyway; real faces go through it in ``test_search.py``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from faceledger.errors import Conflict, ConsentRequired, NotFound
from faceledger.store import NewFace, Store

DIM = 512


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def new_store(path: Path, db_url: str | None, **kw: object) -> Store:
    store = Store(path, database_url=db_url, **kw)  # type: ignore[arg-type]
    try:
        store.get_collection("c")
    except NotFound:
        store.create_collection(
            "c", model_pack="test", model_id="test@1", embedding_dim=DIM, require_consent=False
        )
    return store


def assert_consistent(store: Store, acknowledged: dict[int, int]) -> None:
    """Every acknowledged face is stored and found first by its own vector; no orphans."""
    col = store.get_collection("c")
    ids, _, _ = store.collection_embeddings("c")
    db_ids = set(ids.tolist())
    assert set(acknowledged) <= db_ids
    index = store.index(col)
    index.sync()
    assert set(index._index.ids().tolist()) == db_ids  # no orphan vector, no missing vector
    for fid, seed in list(acknowledged.items())[-50:]:
        result = store.search(col, unit(seed)[None], 1)
        assert int(result.ids[0, 0]) == fid


CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from faceledger.errors import NotFound
    from faceledger.store import NewFace, Store

    def unit(seed):
        v = np.random.default_rng(seed).normal(size=512).astype(np.float32)
        return v / np.linalg.norm(v)

    store = Store(sys.argv[1], save_every=int(sys.argv[3]), database_url=sys.argv[4] or None)
    try:
        store.get_collection("c")
    except NotFound:
        store.create_collection("c", model_pack="test", model_id="test@1", embedding_dim=512,
                                require_consent=False)
    seed = int(sys.argv[2])
    while True:
        batch = [NewFace(embedding=unit(seed + k)) for k in range(3)]
        ids = store.add_faces("c", f"p{seed}", batch, create_person=True)
        for k, fid in enumerate(ids):
            print(fid, seed + k, flush=True)
        if seed % 7 == 0:
            print("deleting", ids[0], flush=True)
            store.delete_face("c", ids[0])
            print("deleted", ids[0], flush=True)
        seed += 3
    """
)


def read_lines(proc: subprocess.Popen[str], into: list[str]) -> None:
    assert proc.stdout is not None
    into.extend(iter(proc.stdout.readline, ""))


def test_sigkill_during_bulk_enrolment_loses_nothing_acknowledged(
    tmp_path: Path, db_url: str | None
) -> None:
    data = tmp_path / "data"
    acknowledged: dict[int, int] = {}
    rng = random.Random(1)
    seed = 0
    for round_ in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(data), str(seed), "40", db_url or ""],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        lines: list[str] = []
        reader = threading.Thread(target=read_lines, args=(proc, lines), daemon=True)
        reader.start()
        # the kill comes 1.5-4 s into the enrolments, not into the child's start-up (on a
        # loaded machine, imports and the database's first open took longer than that)
        started = time.monotonic() + 120
        while not lines and time.monotonic() < started and proc.poll() is None:
            time.sleep(0.05)
        deadline = time.monotonic() + rng.uniform(1.5, 4.0)
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        reader.join(timeout=5)
        proc.stdout.close()
        for line in lines:
            parts = line.split()
            if parts[0] in ("deleting", "deleted"):  # a delete in flight may or may not commit
                acknowledged.pop(int(parts[1]), None)
            elif len(parts) == 2:
                acknowledged[int(parts[0])] = int(parts[1])
        assert acknowledged, f"round {round_}: the child acknowledged nothing"
        store = Store(data, save_every=40, database_url=db_url)
        try:
            assert_consistent(store, acknowledged)
            deleted = [int(ln.split()[1]) for ln in lines if ln.startswith("deleted")]
            stored = set(store.collection_embeddings("c")[0].tolist())
            assert not (set(deleted) & stored)
        finally:
            store.close()
        seed += 100_000


def test_concurrent_threads_and_processes_enrol_and_search(
    tmp_path: Path, db_url: str | None
) -> None:
    data = tmp_path / "data"
    new_store(data, db_url).close()
    worker = textwrap.dedent(
        """
        import sys
        import numpy as np
        from faceledger.store import NewFace, Store
        def unit(seed):
            v = np.random.default_rng(seed).normal(size=512).astype(np.float32)
            return v / np.linalg.norm(v)
        store = Store(sys.argv[1], database_url=sys.argv[3] or None)
        col = store.get_collection("c")
        base = int(sys.argv[2])
        for i in range(40):
            face = NewFace(embedding=unit(base + i))
            store.add_faces("c", f"w{base}-{i}", [face], create_person=True)
            store.search(col, unit(base + i)[None], 5)
        store.close()
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", worker, str(data), str(b), db_url or ""])
        for b in (10_000, 20_000)
    ]
    store = Store(data, database_url=db_url)
    col = store.get_collection("c")

    def enrol_and_search(base: int) -> None:
        for i in range(40):
            store.add_faces(
                "c", f"t{base}-{i}", [NewFace(embedding=unit(base + i))], create_person=True
            )
            result = store.search(col, unit(base + i)[None], 1)
            assert result.ids[0, 0] >= 0

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(enrol_and_search, [30_000, 40_000, 50_000, 60_000]))
    for p in procs:
        assert p.wait(timeout=300) == 0
    expected = {
        b + i: None for b in (10_000, 20_000, 30_000, 40_000, 50_000, 60_000) for i in range(40)
    }
    ids, _, _ = store.collection_embeddings("c")
    assert len(ids) == len(expected)  # no lost write
    for seed in list(expected)[::7]:
        hit = store.search(col, unit(seed)[None], 1)
        assert hit.scores[0, 0] > 0.999  # every process's writes are visible here
    store.close()


def test_delete_is_immediate_and_survives_reopen(tmp_path: Path, db_url: str | None) -> None:
    store = new_store(tmp_path / "d", db_url)
    col = store.get_collection("c")
    store.add_faces(
        "c", "alice", [NewFace(embedding=unit(1)), NewFace(embedding=unit(2))], create_person=True
    )
    store.add_faces("c", "bob", [NewFace(embedding=unit(3))], create_person=True)
    assert store.delete_person("c", "alice") == 2
    hit = store.search(col, unit(1)[None], 3)
    owners = store.face_owners([int(i) for i in hit.ids[0] if i >= 0])
    assert all(name != "alice" for _, name in owners.values())
    store.close()
    store = Store(tmp_path / "d", database_url=db_url)
    col = store.get_collection("c")
    hit = store.search(col, unit(1)[None], 3)
    assert set(store.face_owners([int(i) for i in hit.ids[0] if i >= 0]).values()) == {(2, "bob")}
    store.close()


def test_stale_or_corrupt_index_file_is_repaired(tmp_path: Path, db_url: str | None) -> None:
    store = new_store(tmp_path / "d", db_url)
    col = store.get_collection("c")
    store.add_faces("c", "a", [NewFace(embedding=unit(i)) for i in range(5)], create_person=True)
    store.close()  # saves the index
    index_file = next((tmp_path / "d" / "index").glob("*.index"))
    stale = index_file.read_bytes()
    store = Store(tmp_path / "d", database_url=db_url)
    store.add_faces("c", "b", [NewFace(embedding=unit(100))], create_person=True)
    store.delete_person("c", "a")
    store.close()
    index_file.write_bytes(stale)  # an old index file (as if the save never happened)
    store = Store(tmp_path / "d", database_url=db_url)
    assert set(store.index(col)._index.ids().tolist()) == set(
        store.collection_embeddings("c")[0].tolist()
    )
    store.close()
    index_file.write_bytes(b"garbage")  # an unreadable index file is rebuilt from the database
    store = Store(tmp_path / "d", database_url=db_url)
    assert int(store.search(col, unit(100)[None], 1).scores[0, 0] > 0.999)
    store.close()


def test_failed_write_leaves_nothing(tmp_path: Path, db_url: str | None) -> None:
    store = new_store(tmp_path / "d", db_url)
    store.create_collection("strict", model_pack="test", model_id="test@1", embedding_dim=DIM)
    with pytest.raises(ConsentRequired):
        store.add_faces("strict", "x", [NewFace(embedding=unit(1))], create_person=True)
    assert store.list_persons("strict") == [] and store.list_faces("strict") == []
    with pytest.raises(Conflict):
        store.create_collection("c", model_pack="test", model_id="test@1", embedding_dim=DIM)
    bad = NewFace(embedding=np.ones(10, np.float32))
    with pytest.raises(Exception, match="512"):
        store.add_faces("c", "y", [bad], create_person=True)
    assert store.list_persons("c") == []
    store.close()


def test_person_paging_and_limits(tmp_path: Path, db_url: str | None) -> None:
    from faceledger.errors import LimitExceeded

    store = new_store(tmp_path / "d", db_url)
    store.add_faces_bulk("c", [(f"p{i:03d}", NewFace(embedding=unit(i))) for i in range(30)])
    page = store.list_persons("c", offset=10, limit=5)
    assert [p.name for p in page] == [f"p{i:03d}" for i in range(10, 15)]
    assert all(p.face_count == 1 for p in page)
    with pytest.raises(LimitExceeded):
        store.add_faces("c", "p000", [NewFace(embedding=unit(1000 + i)) for i in range(250)])
    store.close()


def test_approximate_index_results_are_reranked_by_stored_embeddings(
    tmp_path: Path, db_url: str | None
) -> None:
    store = new_store(tmp_path / "r", db_url, index_kind="hnsw")
    col = store.get_collection("c")
    items = [(f"p{i // 4}", NewFace(embedding=unit(100 + i))) for i in range(400)]
    ids = store.add_faces_bulk("c", items)
    assert store.index(col)._index.approximate
    vectors = np.stack([f.embedding for _, f in items])
    queries = np.stack([unit(100 + i) + 0.5 * unit(900 + i) for i in range(0, 400, 40)])
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    found = store.search(col, queries.astype(np.float32), 5)
    position = {fid: i for i, fid in enumerate(ids)}
    for q, row, scores in zip(queries, found.ids, found.scores, strict=True):
        exact = vectors[[position[int(f)] for f in row]] @ q
        np.testing.assert_allclose(scores, exact, atol=1e-5)  # exact, not 8-bit, scores
        assert (np.diff(scores) <= 0).all()
    store.delete_face("c", int(found.ids[0, 0]))
    again = store.search(col, queries[:1].astype(np.float32), 5)
    assert int(found.ids[0, 0]) not in again.ids[0].tolist()
    store.close()


def test_gallery_counts_read_only_their_collection(tmp_path: Path, db_url: str | None) -> None:
    """N of a gallery counts persons with a face in that collection only; the face counts
    of candidates come in one query; a person page counts its collection's faces."""
    store = new_store(tmp_path / "d", db_url)
    for name in ("a", "b"):
        store.create_collection(
            name, model_pack="test", model_id="test@1", embedding_dim=DIM, require_consent=False
        )
    store.add_faces_bulk("a", [(f"p{i}", NewFace(embedding=unit(i))) for i in range(5)])
    store.add_faces_bulk("a", [("p0", NewFace(embedding=unit(100 + i))) for i in range(3)])
    store.create_person("a", "nobody")  # no face: not in the gallery
    store.add_faces_bulk("b", [(f"q{i}", NewFace(embedding=unit(200 + i))) for i in range(7)])
    assert store.count_persons_with_faces("a") == 5
    assert store.count_persons_with_faces("b") == 7
    ids = {p.name: p.id for p in store.list_persons("a", limit=10)}
    counts = store.face_counts([ids["p0"], ids["p1"], ids["nobody"], ids["p0"]])
    assert counts == {ids["p0"]: 4, ids["p1"]: 1, ids["nobody"]: 0}
    assert store.face_counts([]) == {}
    store.delete_face("a", store.list_faces("a", "p0")[0].id)  # p0 keeps 3
    assert {p.name: p.face_count for p in store.list_persons("a", limit=10)}["p0"] == 3
    store.close()


def test_face_vectors_are_those_stored_in_that_collection(
    tmp_path: Path, db_url: str | None
) -> None:
    """A cohort-normalised search reads its candidates' vectors: exactly the stored ones,
    of the asked collection only, a NaN row for any other id."""
    store = new_store(tmp_path / "d", db_url)
    for name in ("a", "b"):
        store.create_collection(
            name, model_pack="test", model_id="test@1", embedding_dim=DIM, require_consent=False
        )
    in_a = store.add_faces_bulk("a", [(f"p{i}", NewFace(embedding=unit(i))) for i in range(4)])
    in_b = store.add_faces_bulk("b", [("q", NewFace(embedding=unit(50)))])
    col = store.get_collection("a")
    ids = np.sort(np.array([in_a[2], in_b[0], in_a[0], 10**9], dtype=np.int64))
    got = dict(zip(ids.tolist(), store.face_vectors(col, ids), strict=True))
    held = {i for i, v in got.items() if not np.isnan(v).any()}
    assert held == {int(in_a[0]), int(in_a[2])}  # not b's face, not an unknown id
    np.testing.assert_array_equal(got[int(in_a[2])], unit(2))
    empty = store.face_vectors(col, np.zeros(0, dtype=np.int64))
    assert empty.shape == (0, DIM)
    store.close()
