"""Erasure is physical: after a person is deleted no file under the data folder holds their
embeddings (as float32 or as the index's codes), their name or their stored image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
def test_deleted_person_leaves_nothing_on_disk(
    tmp_path: Path, kind: str, db_url: str | None
) -> None:
    """On SQLite and on PostgreSQL (where the data folder holds the replica's index files)."""
    data = tmp_path / "data"
    store = Store(data, index_kind=kind, database_url=db_url)
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
    reopened = Store(data, index_kind=kind, database_url=db_url)
    found = reopened.search(reopened.get_collection("c"), secret[:1], 3)
    assert not set(found.ids[0].tolist()) & set(range(300, 305))
    reopened.close()


NAME = "Zelda Quixote-Erasure"
HAMILTON = "face_recognition_examples/video/short_hamilton_clip.mp4"


def _several_photos(path: Path) -> list[bytes]:
    """The one shared photo of the person, and two new images of it (mirrored; smaller and
    re-encoded as JPEG), so the person has several faces with distinct embeddings."""
    import cv2

    bgr = cv2.imread(str(path))
    mirrored = cv2.imencode(".png", cv2.flip(bgr, 1))[1].tobytes()
    smaller = cv2.resize(bgr, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)
    return [path.read_bytes(), mirrored, cv2.imencode(".jpg", smaller)[1].tobytes()]


def _enrolled_service(data: Path, faces_dir: Path) -> tuple[Any, list[bytes], np.ndarray]:
    """A service whose collection holds NAME (lin_manuel_miranda's photos, as uploads)."""
    from faceledger.config import Settings
    from faceledger.service import FaceService

    svc = FaceService(Settings(data=data))
    svc.create_collection("c", require_consent=False, store_images=True)
    root = faces_dir / "face_recognition_examples/identities"
    svc.enroll(
        "c",
        "other",
        [
            (root / "alex_lacamoire" / p.name).read_bytes()
            for p in sorted((root / "alex_lacamoire").iterdir())
        ],
        largest=True,
    )
    images = _several_photos(root / "lin_manuel_miranda" / "lin-manuel-miranda.png")
    enrolled = svc.enroll("c", NAME, images, largest=True)
    ids = [e.face_id for e in enrolled if e.face_id is not None]
    assert len(ids) == len(images)
    face_ids, vectors = svc.store.face_embeddings("c", NAME)
    assert sorted(face_ids.tolist()) == sorted(ids)
    assert len({v.tobytes() for v in vectors}) == len(images)  # several distinct faces
    return svc, images, vectors


def _index_video_job(svc: Any, faces_dir: Path, tmp_path: Path) -> str:
    """Index the clip as a background job (its result is stored) and wait for it."""
    import shutil
    import time

    from faceledger.ledger.audit import Actor
    from faceledger.service.jobs import VideoJobs
    from faceledger.video import IndexOptions

    jobs = VideoJobs(svc)
    upload = tmp_path / "clip.upload"
    shutil.copy(faces_dir / HAMILTON, upload)
    job = jobs.submit(
        upload,
        key_id="k",
        collection="c",
        options=IndexOptions(ocr=False),
        purpose="erasure test",
        case_ref=None,
        actor=Actor("k", "searcher"),
    )
    deadline = time.monotonic() + 300
    while jobs.get(job.id, key_id=None).status in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    jobs.close()
    done = jobs.get(job.id, key_id=None)
    assert done.status == "done", done.error
    assert done.result is not None
    assert any(p["person"] == NAME for p in done.result["people"]), "the video must name them"
    return job.id


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("how", ["request", "retention"])
def test_erased_person_is_gone_from_every_file(tmp_path: Path, faces_dir: Path, how: str) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select

    from faceledger.errors import NotFound
    from faceledger.service.retention import sweep
    from faceledger.store.jobs import JobStore
    from faceledger.store.schema import media_segments

    data = tmp_path / "data"
    svc, images, vectors = _enrolled_service(data, faces_dir)
    pseudonym = svc.store.get_person("c", NAME).pseudonym
    probe = images[0]
    [found] = [r for r in svc.identify("c", probe, purpose="before") if r.candidates]
    assert found.candidates[0].person == NAME
    job_id = _index_video_job(svc, faces_dir, tmp_path)
    svc.store.index(svc.store.get_collection("c")).save()
    person_id = svc.store.get_person("c", NAME).id
    assert svc.search_media("c", person=NAME, purpose="before").total >= 1  # media index too
    needles = [v.tobytes() for v in vectors] + images + [NAME.encode()]
    if hasattr(svc.store.index(svc.store.get_collection("c"))._index, "_hnsw"):
        needles += codes_of(svc.store, "c", vectors)  # the index's 8-bit codes too
    assert files_holding(data, needles), "the test must first find what it then erases"

    if how == "request":
        svc.delete_person("c", NAME)
    else:
        svc.update_person("c", NAME, retain_until=datetime.now(UTC) - timedelta(seconds=1))
        assert sweep(svc) == [("c", NAME)]
    assert files_holding(data, needles) == []
    with pytest.raises(NotFound):
        svc.search_media("c", person=NAME, purpose="after")
    with svc.store.engine.connect() as conn:  # their intervals stay, with neither id nor name
        kept = conn.execute(
            select(media_segments.c.person_id, media_segments.c.label).where(
                media_segments.c.kind == "person"
            )
        ).all()
    assert (None, None) in kept and not any(p == person_id for p, _ in kept)
    result = JobStore(svc.store.engine).get(job_id).result
    assert result is not None
    assert all(p["person"] != NAME for p in result["people"])
    assert any(p["label"] == "erased person" and p["thumbnail"] == "" for p in result["people"])
    report = svc.ledger.verify()
    entries = svc.ledger.entries()
    svc.close()
    assert report["ok"], report
    searches = [e for e in entries if e["operation"] == "identify"]
    assert searches and searches[0]["result"]["faces"][0][0]["person"] == pseudonym
    assert files_holding(data, needles) == []
