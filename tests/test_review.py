"""The review queue and console sessions at the service (real models, real faces)."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from faceledger.config import Settings
from faceledger.errors import Conflict, Unauthenticated
from faceledger.ledger.audit import Actor
from faceledger.ledger.keys import Role
from faceledger.service import FaceService
from faceledger.store.review import ReviewSettings
from faceledger.store.schema import review_items

BBT = "faceapi_bbt"
pytestmark = pytest.mark.usefixtures("any_store")  # each test on SQLite and on PostgreSQL


def _enrol(service: FaceService, faces_dir: Path, people: list[str], **opts: object) -> None:
    service.create_collection("bbt", require_consent=False, store_images=True)
    if opts:
        service.set_review_settings("bbt", ReviewSettings(**opts))  # type: ignore[arg-type]
    for name in people:
        images = sorted((faces_dir / BBT / "identities" / name).iterdir())[:3]
        service.enroll("bbt", name, [p.read_bytes() for p in images], create_person=True)


def _actor(service: FaceService, role: Role = Role.SEARCHER) -> Actor:
    key = service.create_key(role, name=f"{role.value} reviewer").key
    return Actor(key.id, key.role.value, key.name)


def test_identify_queues_candidates_and_decisions_are_ledgered(
    service: FaceService, faces_dir: Path
) -> None:
    _enrol(service, faces_dir, ["sheldon", "leonard", "penny"])
    probe = sorted((faces_dir / BBT / "identities" / "sheldon").iterdir())[4]
    [result] = service.identify("bbt", probe, purpose="review test")
    assert result.candidates[0].person == "sheldon"
    queue = service.review_queue()
    assert [i.person for i in queue][:1] == ["sheldon"]
    item = queue[0]
    assert item.has_crop and service.review_crop(item.id)[:2] == b"\xff\xd8"  # a JPEG
    assert item.similarity == pytest.approx(result.candidates[0].similarity)
    reviewer = _actor(service)
    decided = service.decide(item.id, "confirm", note="same ear shape", actor=reviewer)
    assert decided.status == "confirmed" and decided.erase_after is not None
    entry = service.ledger.entries()[-1]
    assert entry["operation"] == "review.decide" and entry["key_id"] == reviewer.key_id
    assert entry["request"]["item"] == item.id and entry["request"]["decision"] == "confirm"
    assert entry["request"]["person"].startswith("p_") and "sheldon" not in str(entry)
    assert all(i.id != item.id for i in service.review_queue())
    with pytest.raises(Conflict):
        service.decide(item.id, "reject", actor=reviewer)


def test_a_rejected_pairing_is_not_offered_again(service: FaceService, faces_dir: Path) -> None:
    _enrol(service, faces_dir, ["howard", "raj"])
    probe = (faces_dir / BBT / "identities" / "raj").iterdir().__next__().read_bytes()
    service.identify("bbt", probe, purpose="review test", max_fmr=0.5)
    items = service.review_queue()
    assert items
    for item in items:
        service.decide(item.id, "reject", actor=_actor(service))
    service.identify("bbt", probe, purpose="review test", max_fmr=0.5)
    assert service.review_queue() == []  # the same probe face is never offered as them again


def test_two_reviewers_must_agree(service: FaceService, faces_dir: Path) -> None:
    _enrol(service, faces_dir, ["amy", "penny"], reviewers=2)
    probe = sorted((faces_dir / BBT / "identities" / "amy").iterdir())[4]
    service.identify("bbt", probe, purpose="review test")
    first, second, third = (_actor(service) for _ in range(3))
    [item, *_] = service.review_queue()
    assert service.decide(item.id, "confirm", actor=first).status == "open"
    with pytest.raises(Conflict):  # the same key cannot be the second reviewer
        service.decide(item.id, "confirm", actor=first)
    assert service.decide(item.id, "confirm", actor=second).status == "confirmed"
    service.identify("bbt", sorted((faces_dir / BBT / "identities" / "amy").iterdir())[3])
    [other, *_] = service.review_queue()
    service.decide(other.id, "confirm", actor=first)
    disputed = service.decide(other.id, "reject", actor=third)
    assert disputed.status == "disputed" and len(disputed.decisions) == 2
    assert other.id in [i.id for i in service.review_queue()]  # disagreements stay shown


def test_review_items_are_erased_with_the_person(service: FaceService, faces_dir: Path) -> None:
    _enrol(service, faces_dir, ["stuart", "bernadette"])
    probe = sorted((faces_dir / BBT / "identities" / "stuart").iterdir())[4]
    service.identify("bbt", probe, purpose="review test")
    [item, *_] = service.review_queue()
    assert item.person == "stuart"
    service.decide(item.id, "reject", actor=_actor(service))
    service.delete_person("bbt", "stuart")
    with service.store.engine.connect() as conn:
        rows = conn.execute(review_items.select()).all()
    assert all(r.person_id != item.person_id for r in rows)


def test_a_search_racing_an_erasure_queues_nothing_for_the_erased(
    service: FaceService, faces_dir: Path
) -> None:
    # An identify that found a person, who was then erased before its candidates were
    # queued, answered 500 (FOREIGN KEY constraint failed) instead of its result.
    _enrol(service, faces_dir, ["howard", "raj"])
    probe = sorted((faces_dir / BBT / "identities" / "howard").iterdir())[4]
    from faceledger.service.search import SearchOps

    results = SearchOps.identify(service, "bbt", probe, purpose="race test")  # not queued
    assert results[0].candidates[0].person == "howard"
    service.delete_person("bbt", "howard")  # erased between the search and the queue
    found = [(r.face, r.candidates) for r in results]
    assert service._queue("bbt", "identify", probe, found) == []
    assert all(i.person != "howard" for i in service.review_queue())


def test_decided_crops_are_dropped_after_retention(service: FaceService, faces_dir: Path) -> None:
    _enrol(service, faces_dir, ["leonard"], retain_days=0)
    probe = sorted((faces_dir / BBT / "identities" / "leonard").iterdir())[4]
    service.identify("bbt", probe, purpose="review test")
    [item] = service.review_queue()
    service.decide(item.id, "unsure", actor=_actor(service))
    assert service.purge_reviews() == 1
    assert service.review_crop(item.id) is None


def test_the_retention_sweep_drops_decided_crops(service: FaceService, faces_dir: Path) -> None:
    """The purge left the write path of every search (where it scanned the review table
    under the write lock) for the retention sweep, which records it only when due."""
    from faceledger.service.retention import sweep

    _enrol(service, faces_dir, ["leonard"], retain_days=0)
    probe = sorted((faces_dir / BBT / "identities" / "leonard").iterdir())[4]
    service.identify("bbt", probe, purpose="review test")
    [item] = service.review_queue()
    service.decide(item.id, "unsure", actor=_actor(service))
    service.identify("bbt", probe, purpose="a search does not purge")
    assert service.review_crop(item.id) is not None
    sweep(service)
    assert service.review_crop(item.id) is None
    sweep(service)  # nothing due: nothing recorded
    purges = [e for e in service.ledger.entries() if e["operation"] == "review.purge"]
    assert len(purges) == 1 and purges[0]["result"]["crops_erased"] == 1


def test_console_session_expires(tmp_path: Path) -> None:
    svc = FaceService(Settings(data=tmp_path / "data", console_session_seconds=1))
    try:
        issued = svc.create_key(Role.AUDITOR, name="a")
        session = svc.sign_in(issued.secret)
        assert svc.console_session(session.token).key.id == issued.key.id
        time.sleep(1.1)
        with pytest.raises(Unauthenticated):
            svc.console_session(session.token)
        again = svc.sign_in(issued.secret)
        svc.sign_out(again.token)
        with pytest.raises(Unauthenticated):  # signed out: the cookie is dead server-side
            svc.console_session(again.token)
        with pytest.raises(Unauthenticated):
            svc.sign_in("fl_not_a_key")
    finally:
        svc.close()


def test_similar_and_verify_queue_and_the_collection_setting_decides(
    service: FaceService, faces_dir: Path
) -> None:
    _enrol(service, faces_dir, ["howard", "penny"])
    penny = sorted((faces_dir / BBT / "identities" / "penny").iterdir())[4]
    match = service.verify("bbt", penny, "penny", purpose="review test")
    assert match.same_person
    [item] = service.review_queue()
    assert (item.operation, item.person, item.face_id) == ("verify", "penny", None)
    service.similar("bbt", penny, purpose="review test")
    assert {i.operation for i in service.review_queue()} == {"verify", "similar"}
    before = len(service.review_queue())
    service.set_review_settings("bbt", ReviewSettings(mode="never"))
    service.identify("bbt", penny, purpose="review test")
    assert len(service.review_queue()) == before
    service.set_review_settings("bbt", ReviewSettings(mode="above", max_fmr=1e-30))
    service.identify("bbt", penny, purpose="review test")  # no candidate is that certain
    assert len(service.review_queue()) == before
    entry = service.ledger.entries()[-2]
    assert entry["operation"] == "review.settings" and entry["request"]["mode"] == "above"


def test_a_video_index_queues_its_identified_people(service: FaceService, faces_dir: Path) -> None:
    from faceledger.video import IndexOptions

    examples = faces_dir / "face_recognition_examples"
    lin = "lin_manuel_miranda"
    service.create_collection("ham", require_consent=False)
    photo = examples / "identities" / lin / "lin-manuel-miranda.png"
    service.enroll("ham", lin, [photo.read_bytes()], create_person=True)
    clip = examples / "video" / "short_hamilton_clip.mp4"
    opts = IndexOptions(fps=2, ocr=False, speech=False)  # at 1 fps: no tracks
    index = service.index_video("ham", clip, options=opts, purpose="review test")
    [seen] = [p for p in index.people if p.person == lin]
    [item] = [i for i in service.review_queue() if i.operation == "video.identify"]
    assert (item.person, item.collection) == (lin, "ham")
    assert item.similarity == pytest.approx(seen.candidates[0].similarity)
    assert item.quality is not None and item.quality["face_size"] > 0
    assert service.review_crop(item.id) == base64.b64decode(seen.thumbnail)  # the JPEG shown
    assert service.review_crop(item.id)[:2] == b"\xff\xd8"  # type: ignore[index]
    with service.store.engine.connect() as conn:
        [row] = conn.execute(review_items.select().where(review_items.c.id == item.id)).all()
    assert row.image_sha256 == index.video_sha256 and len(row.probe_embedding) >= 512 * 4
    service.set_review_settings("ham", ReviewSettings(mode="never"))
    assert service.queue_video_review("ham", index) == []  # the same result: nothing queued
    service.set_review_settings("ham", ReviewSettings(mode="always"))
    assert len(service.queue_video_review("ham", index)) == 1  # queued again once allowed
    reviewer = _actor(service)
    assert service.decide(item.id, "reject", actor=reviewer).status == "rejected"
    entry = service.ledger.entries()[-1]
    assert entry["operation"] == "review.decide" and entry["request"]["item"] == item.id
    assert service.queue_video_review("ham", index) == []  # "not this person": not again
