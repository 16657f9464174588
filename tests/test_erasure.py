"""Erasure is physical: after a person is deleted no file under the data folder holds their
embeddings (as float32 or as the index's codes), their name or their stored image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceledger.store import NewFace, Store

DIM = 512


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def files_holding(root: Path, needles: list[bytes]) -> list[tuple[str, int]]:
    """``(file, needle index)`` for every needle found in any file under ``root``."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found.extend((str(path.relative_to(root)), i) for i, n in enumerate(needles) if n in data)
    return found


def codes_of(store: Store, collection: str, vectors: np.ndarray) -> list[bytes]:
    """The bytes an HNSW index stores for ``vectors`` (its 8-bit codes)."""
    index = store.index(store.get_collection(collection))._index
    graph = index._graphs[0] if hasattr(index, "_graphs") else index._hnsw._graphs[0]
    import faiss

    storage = faiss.downcast_index(graph.storage)
    return [bytes(c) for c in storage.sa_encode(np.ascontiguousarray(vectors))]


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_deleted_person_leaves_nothing_on_disk(tmp_path: Path, kind: str) -> None:
    data = tmp_path / "data"
    store = Store(data, index_kind=kind)
    store.create_collection(
        "c",
        model_pack="t",
        model_id="t@1",
        embedding_dim=DIM,
        require_consent=False,
        store_images=True,
    )
    others = [NewFace(embedding=unit(1000 + i)) for i in range(300)]
    store.add_faces_bulk("c", [(f"other{i % 30}", f) for i, f in enumerate(others)])
    secret = np.stack([unit(i) for i in range(5)])
    image = b"\x89PNG-not-really-an-image-" + bytes(range(256)) * 8
    name = "Zoë Erasmus-Deleted"
    store.add_faces(
        "c", name, [NewFace(embedding=v, image=image) for v in secret], create_person=True
    )
    store.index(store.get_collection("c")).save()  # the saved file holds the person now
    needles = [v.tobytes() for v in secret] + [image, name.encode()]
    if kind == "hnsw":
        needles += codes_of(store, "c", secret)
    assert files_holding(data, needles), "the test must first find the data it then erases"

    assert store.delete_person("c", name) == 5
    assert files_holding(data, needles) == []
    store.close()
    assert files_holding(data, needles) == []
    reopened = Store(data, index_kind=kind)
    found = reopened.search(reopened.get_collection("c"), secret[:1], 3)
    assert not set(found.ids[0].tolist()) & set(range(300, 305))
    reopened.close()
