"""Vector indexes: exact, HNSW and auto behave alike through the VectorIndex protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faceledger.errors import InvalidArgument, StoreError
from faceledger.index import VectorIndex, load_index, make_index
from faceledger.index.auto import AutoIndex
from faceledger.index.hnsw import HnswIndex
from faceledger.index.idmap import IdMap

DIM = 32
SMALL = {"m": 16, "ef_construction": 40}  # a cheaper graph keeps the tests fast
CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("exact", {"dtype": "float32"}),
    ("exact", {"dtype": "float16"}),
    ("hnsw", {}),  # the defaults: sq8, m=48
    ("hnsw", {"storage": "f16", **SMALL}),
    ("hnsw", {"storage": "f32", **SMALL}),
    ("hnsw", {"shards": 3, **SMALL}),
    ("auto", {"threshold": 40, **SMALL}),
    ("auto", {"threshold": 40, "dtype": "float16", "storage": "f16", **SMALL}),
]
CONFIG_IDS = [
    "-".join([kind, *(str(v) for k, v in opts.items() if k not in SMALL)]) for kind, opts in CONFIGS
]


def unit(n: int, dim: int = DIM, seed: int = 0) -> npt.NDArray[np.float32]:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def new(kind: str, opts: dict[str, Any], dim: int = DIM) -> VectorIndex:
    return make_index(kind, dim, **opts)


@pytest.fixture(params=CONFIGS, ids=CONFIG_IDS)
def config(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    kind, opts = request.param
    return kind, dict(opts)


def test_empty_index(config: tuple[str, dict[str, Any]]) -> None:
    index = new(*config)
    assert isinstance(index, VectorIndex)
    assert index.dim == DIM and len(index) == 0 and 5 not in index
    assert index.ids().shape == (0,)
    result = index.search(unit(2), 3)
    assert result.ids.shape == (2, 3) and result.ids.dtype == np.int64
    assert (result.ids == -1).all() and np.isneginf(result.scores).all()
    assert result.scores.dtype == np.float32
    assert index.search(np.empty((0, DIM), np.float32), 4).ids.shape == (0, 4)
    assert index.remove(np.array([1, 2], dtype=np.int64)) == 0


@pytest.mark.parametrize("batch", [0, 1, 7, 1024])
def test_add_search_in_batches(config: tuple[str, dict[str, Any]], batch: int) -> None:
    index = new(*config)
    n = 2 * batch + 3
    x = unit(n, seed=batch)
    ids = np.arange(n, dtype=np.int64) * 10 + 5
    for a in range(0, n, max(batch, 1)) if batch else []:
        index.add(ids[a : a + batch], x[a : a + batch])
    index.add(ids[:0], x[:0])
    if not batch:
        index.add(ids, x)
    assert len(index) == n
    assert sorted(index.ids().tolist()) == ids.tolist()
    assert all(int(i) in index for i in ids) and 4 not in index
    result = index.search(x, min(10, n))
    assert (result.ids[:, 0] == ids).all()
    assert np.allclose(result.scores[:, 0], 1.0, atol=2e-2)
    assert (np.diff(result.scores, axis=1) <= 1e-6).all()


def test_replace_keeps_one_entry(config: tuple[str, dict[str, Any]]) -> None:
    index = new(*config)
    x = unit(60, seed=1)
    ids = np.arange(60, dtype=np.int64)
    index.add(ids[:50], x[:50])
    index.add(ids[:10], x[50:60])  # replace ids 0..9 with new vectors
    assert len(index) == 50
    got = index.search(x[50:60], 1)
    assert (got.ids[:, 0] == ids[:10]).all()
    old = index.search(x[:10], 50)
    for row, i in zip(old.ids, ids[:10], strict=True):
        assert row.tolist().count(int(i)) == 1
        assert row[0] != i


def test_removed_ids_never_returned(config: tuple[str, dict[str, Any]]) -> None:
    index = new(*config)
    n = 300
    x = unit(n, seed=2)
    ids = np.arange(n, dtype=np.int64) + 1000
    index.add(ids, x)
    gone = ids[::3]
    assert index.remove(np.concatenate([gone, gone[:5], np.array([7], np.int64)])) == gone.size
    assert index.remove(gone) == 0
    assert len(index) == n - gone.size
    assert not any(int(i) in index for i in gone)
    result = index.search(x, 50)
    assert not np.isin(result.ids, gone).any()
    kept = np.setdiff1d(ids, gone)
    assert (index.search(x[1::3].copy(), 1).ids[:, 0] == ids[1::3]).all()
    assert set(index.ids().tolist()) == set(kept.tolist())
    index.remove(kept)
    assert len(index) == 0 and (index.search(x[:2], 3).ids == -1).all()
    index.add(gone, x[::3].copy())  # removed ids can come back
    assert (index.search(x[::3].copy(), 1).ids[:, 0] == gone).all()


def test_k_larger_than_size_pads(config: tuple[str, dict[str, Any]]) -> None:
    index = new(*config)
    x = unit(5, seed=3)
    index.add(np.arange(5, dtype=np.int64), x)
    index.remove(np.array([4], dtype=np.int64))
    result = index.search(x[:2], 8)
    assert result.ids.shape == (2, 8)
    assert (result.ids[:, 4:] == -1).all() and np.isneginf(result.scores[:, 4:]).all()
    assert sorted(result.ids[0, :4].tolist()) == [0, 1, 2, 3]


@pytest.mark.parametrize("mmap", [False, True])
def test_save_load_round_trip(
    config: tuple[str, dict[str, Any]], tmp_path: Path, mmap: bool
) -> None:
    index = new(*config)
    x = unit(120, seed=4)
    ids = np.arange(120, dtype=np.int64) * 3
    index.add(ids, x)
    index.remove(ids[:20])
    path = tmp_path / "faces.idx"
    path.write_bytes(b"old contents")
    index.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["faces.idx"]
    loaded = load_index(path, mmap=mmap)
    assert type(loaded) is type(index) and loaded.dim == DIM and len(loaded) == 100
    before, after = index.search(x, 10), loaded.search(x, 10)
    assert (before.ids == after.ids).all()
    assert np.allclose(before.scores, after.scores, atol=1e-6, equal_nan=True)
    loaded.add(ids[:5], x[:5])  # a loaded (maybe memory-mapped) index is still writable
    loaded.remove(ids[50:60])
    assert len(loaded) == 95 and ids[0] in loaded and ids[55] not in loaded
    assert len(load_index(path)) == 100  # the file is unchanged


def test_hnsw_recall_against_exact() -> None:
    x, q = unit(3000, 64, seed=5), unit(200, 64, seed=6)
    ids = np.arange(3000, dtype=np.int64)
    exact, approx = make_index("exact", 64), make_index("hnsw", 64)
    exact.add(ids, x)
    for a in range(0, 3000, 1000):
        approx.add(ids[a : a + 1000], x[a : a + 1000])
    truth, got = exact.search(q, 10).ids, approx.search(q, 10).ids
    hits = sum(len(set(t) & set(g)) for t, g in zip(truth.tolist(), got.tolist(), strict=True))
    assert hits / truth.size >= 0.95


def test_auto_migrates_both_ways(tmp_path: Path) -> None:
    index = make_index("auto", DIM, threshold=100)
    assert isinstance(index, AutoIndex)
    x, ids = unit(150, seed=7), np.arange(150, dtype=np.int64)
    index.add(ids[:100], x[:100])
    assert index.impl == "exact"
    index.add(ids[100:], x[100:])
    assert index.impl == "hnsw" and len(index) == 150
    assert (index.search(x, 1).ids[:, 0] == ids).all()
    index.save(tmp_path / "a.idx")
    assert isinstance(reloaded := load_index(tmp_path / "a.idx"), AutoIndex)
    assert reloaded.impl == "hnsw" and reloaded.threshold == 100
    index.remove(ids[:110])
    assert index.impl == "exact" and len(index) == 40
    assert (index.search(x[110:], 1).ids[:, 0] == ids[110:]).all()


def test_hnsw_compacts_tombstones() -> None:
    index = HnswIndex(DIM, compact_fraction=0.5)
    x, ids = unit(200, seed=8), np.arange(200, dtype=np.int64)
    index.add(ids, x)
    index.add(ids[:50], x[:50])  # replacing leaves 50 tombstones
    assert index.tombstones == 50 and len(index) == 200
    index.remove(ids[50:100])
    assert index.tombstones == 100
    index.remove(ids[100:130])  # 130 of 250 nodes dead: rebuilt
    assert index.tombstones == 0 and len(index) == 120
    assert (index.search(x[130:], 1).ids[:, 0] == ids[130:]).all()
    assert (index.search(x[:50], 1).ids[:, 0] == ids[:50]).all()


def test_sharded_hnsw_balances_merges_and_reloads(tmp_path: Path) -> None:
    """Shards split each batch, a single query searches them in parallel threads and the
    merged top-k equals the exact one (float32 codes, a beam wider than the data)."""
    x, ids = unit(900, 64, seed=10), np.arange(900, dtype=np.int64) * 5
    index = HnswIndex(64, storage="f32", shards=2, ef_search=400, **SMALL)
    index.add(ids[:401], x[:401])
    index.add(ids[401:], x[401:])
    assert [int(g.ntotal) for g in index._graphs] == [450, 450]
    exact = make_index("exact", 64)
    exact.add(ids, x)
    q = unit(20, 64, seed=11)
    for one in range(3):  # single queries take the parallel path
        got, want = index.search(q[one : one + 1], 10), exact.search(q[one : one + 1], 10)
        assert got.ids.tolist() == want.ids.tolist()
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)
    assert index.search(q, 10).ids.tolist() == exact.search(q, 10).ids.tolist()
    fresh = unit(5, 64, seed=12)
    index.add(ids[:5], fresh)  # replace: old nodes become tombstones in their shard
    index.remove(ids[600:610])
    assert len(index) == 890 and index.tombstones == 15 and ids[600] not in index
    assert (index.search(fresh, 1).ids[:, 0] == ids[:5]).all()
    assert not set(index.search(x[600:610], 10).ids.ravel().tolist()) & set(ids[600:610])
    index.save(tmp_path / "s.idx")
    loaded = load_index(tmp_path / "s.idx")
    assert isinstance(loaded, HnswIndex) and loaded.shards == 2 and len(loaded) == 890
    assert loaded.search(q, 10).ids.tolist() == index.search(q, 10).ids.tolist()
    assert loaded.tombstones == 15 and sorted(loaded.ids().tolist()) == sorted(index.ids().tolist())


BAD_INPUTS = [
    ("dim", lambda x: x[:, :-1].copy()),
    ("float64", lambda x: x.astype(np.float64)),
    ("contiguity", lambda x: np.asfortranarray(x)),
    ("1-D", lambda x: x[0]),
    ("list", lambda x: x.tolist()),
    ("norm", lambda x: x * 2),
    ("nan", lambda x: np.where(x > 0.3, np.nan, x).astype(np.float32)),
]


@pytest.mark.parametrize("kind", ["exact", "hnsw", "auto"])
@pytest.mark.parametrize(("what", "spoil"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_vectors_rejected(kind: str, what: str, spoil: Any) -> None:
    index = make_index(kind, DIM)
    x, ids = unit(4, seed=9), np.arange(4, dtype=np.int64)
    with pytest.raises(InvalidArgument):
        index.add(ids, spoil(x))
    with pytest.raises(InvalidArgument):
        index.search(spoil(x), 1)
    assert len(index) == 0


BAD_IDS = [
    ("int32", np.arange(4, dtype=np.int32)),
    ("2-D", np.arange(4, dtype=np.int64).reshape(2, 2)),
    ("length", np.arange(3, dtype=np.int64)),
    ("duplicates", np.array([1, 1, 2, 3], dtype=np.int64)),
    ("negative", np.array([-1, 1, 2, 3], dtype=np.int64)),
    ("list", [0, 1, 2, 3]),
]


@pytest.mark.parametrize("kind", ["exact", "hnsw", "auto"])
@pytest.mark.parametrize(("what", "ids"), BAD_IDS, ids=[b[0] for b in BAD_IDS])
def test_bad_ids_rejected(kind: str, what: str, ids: Any) -> None:
    index = make_index(kind, DIM)
    with pytest.raises(InvalidArgument):
        index.add(ids, unit(4))
    assert len(index) == 0


@pytest.mark.parametrize("k", [0, -1, 10_001, 2.0, True])
def test_bad_k_rejected(k: Any) -> None:
    index = make_index("exact", DIM)
    with pytest.raises(InvalidArgument):
        index.search(unit(1), k)


def test_factory_rejects_unknowns(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        make_index("annoy", DIM)
    with pytest.raises(InvalidArgument):
        make_index("hnsw", DIM, colour="blue")
    with pytest.raises(InvalidArgument):
        make_index("exact", 0)
    with pytest.raises(InvalidArgument):
        make_index("hnsw", DIM, storage="i4")
    bad = tmp_path / "junk.idx"
    bad.write_bytes(b"not an index")
    with pytest.raises(StoreError):
        load_index(bad)
    with pytest.raises(StoreError):
        load_index(tmp_path / "missing.idx")
    good = tmp_path / "good.idx"
    make_index("exact", DIM).save(good)
    good.write_bytes(good.read_bytes()[:-8])  # truncated
    with pytest.raises(StoreError):
        load_index(good)


def test_exact_remove_matches_model() -> None:
    """Many mixed adds/replaces/removes (enough to merge the id map) against a dict."""
    rng = np.random.default_rng(10)
    index = make_index("exact", 8)
    model: dict[int, npt.NDArray[np.float32]] = {}
    for step in range(300):
        ids = np.unique(rng.integers(0, 3000, size=int(rng.integers(0, 60)))).astype(np.int64)
        rng.shuffle(ids)
        if step % 3 == 2:
            assert index.remove(ids) == sum(int(i) in model for i in ids)
            for i in ids.tolist():
                model.pop(i, None)
        else:
            x = unit(ids.size, 8, seed=step)
            index.add(ids, x)
            model.update(zip(ids.tolist(), x, strict=True))
    assert len(index) == len(model) and set(index.ids().tolist()) == set(model)
    keys = np.array(sorted(model), dtype=np.int64)
    result = index.search(np.stack([model[int(i)] for i in keys]), 1)
    assert (result.ids[:, 0] == keys).all()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.lists(st.integers(0, 40), max_size=8)), max_size=40))
def test_id_map_matches_dict(ops: list[tuple[bool, list[int]]]) -> None:
    idmap, model, slot = IdMap(), dict[int, int](), 0
    for insert, keys in ops:
        arr = np.array(sorted(set(keys)), dtype=np.int64)
        if insert:
            slots = np.arange(slot, slot + arr.size, dtype=np.int64)
            slot += arr.size
            idmap.set(arr, slots)
            model.update(zip(arr.tolist(), slots.tolist(), strict=True))
        else:
            expect = [model.pop(k, -1) for k in arr.tolist()]
            assert idmap.pop(arr).tolist() == expect
        assert len(idmap) == len(model)
    probe = np.arange(45, dtype=np.int64)
    assert idmap.get(probe).tolist() == [model.get(k, -1) for k in range(45)]


def test_rerank_orders_the_candidate_pool_by_exact_score() -> None:
    from faceledger.index.rerank import rerank

    x, q = unit(2000, 64, seed=8), unit(50, 64, seed=9)
    ids = np.arange(2000, dtype=np.int64) * 3 + 7  # ids are not positions
    approx = make_index("hnsw", 64, **SMALL)
    approx.add(ids, x)
    pool = approx.search(q, 32)

    def source(wanted: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        rows = x[(wanted - 7) // 3].copy()
        rows[wanted % 2 == 0] = np.nan  # even ids: deleted since the search
        return rows

    got = rerank(q, pool, source, 10)
    assert got.ids.shape == (50, 10) and got.scores.dtype == np.float32
    for i in range(50):
        live = [int(c) for c in pool.ids[i] if c >= 0 and c % 2]
        exact = sorted(((float(q[i] @ x[(c - 7) // 3]), c) for c in live), reverse=True)[:10]
        assert got.ids[i, : len(exact)].tolist() == [c for _, c in exact]
        np.testing.assert_allclose(got.scores[i, : len(exact)], [s for s, _ in exact], atol=1e-6)
        assert (got.ids[i, len(exact) :] == -1).all()
    assert ((got.ids % 2 != 0) | (got.ids == -1)).all()
    empty = rerank(q[:2], make_index("hnsw", 64).search(q[:2], 5), source, 3)
    assert (empty.ids == -1).all() and np.isneginf(empty.scores).all()
