"""Enrol real faces and search them: identify, verify, similar, group, erasure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from faceledger.cli.main import app
from faceledger.config import Settings
from faceledger.errors import ConsentRequired, InvalidArgument, MultipleFaces, NotFound
from faceledger.service import FaceService

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("any_store"),  # each test on SQLite and on PostgreSQL
]


def test_bbt_characters_identified_in_scene_photos(service: FaceService, faces_dir: Path) -> None:
    service.create_collection("bbt")
    summary = service.enroll_folder("bbt", faces_dir / "faceapi_bbt" / "identities", consent="test")
    assert summary.counts["enrolled"] >= 38  # 8 characters x 5 crops; a profile may be refused
    persons = {p.name for p in service.store.list_persons("bbt")}
    assert len(persons) == 8
    identified = total = 0
    for image in sorted((faces_dir / "faceapi_bbt" / "group").glob("bbt*.jpg")):
        results = service.identify("bbt", str(image), purpose="test")
        assert results, image
        tops = [r.candidates[0].person for r in results if r.candidates]
        assert len(tops) == len(set(tops)), f"one person twice in {image.name}: {tops}"
        for r in results:
            assert all(c.fmr <= 1e-4 for c in r.candidates)
            assert [c.similarity for c in r.candidates] == sorted(
                (c.similarity for c in r.candidates), reverse=True
            )
        usable = [r for r in results if r.face.quality.grade != "low"]
        total += len(usable)
        identified += sum(1 for r in usable if r.candidates)
    assert identified / total >= 0.9


def test_face_recognition_examples_by_file_name(service: FaceService, faces_dir: Path) -> None:
    root = faces_dir / "face_recognition_examples"
    service.create_collection("fr", require_consent=False)
    summary = service.enroll_folder("fr", root / "identities", largest=True)
    assert summary.counts["enrolled"] >= 12
    for image, expected in [
        ("obama_and_biden.jpg", {"barack_obama", "joe_biden"}),
        ("kit_with_rose.jpg", {"kit_harington", "rose_leslie"}),
    ]:
        results = service.identify("fr", str(root / "group" / image))
        found = {r.candidates[0].person for r in results if r.candidates}
        assert found == expected, (image, found)


def test_identify_states_the_gallery_and_records_how_it_decided(
    service: FaceService, faces_dir: Path
) -> None:
    """Every identify result states its gallery's rates, ``max_fpir`` sets the per-person
    rate from a gallery target, and the ledger records model, calibration, threshold and
    FPIR of the decision (issue #14)."""
    from faceledger.search.gallery import expected_fpir, max_fmr_for_fpir

    service.create_collection("fr", require_consent=False)
    root = faces_dir / "face_recognition_examples"
    service.enroll_folder("fr", root / "identities", largest=True)
    persons = sum(1 for p in service.store.list_persons("fr") if p.face_count > 0)
    assert persons == 6
    probe = str(root / "group" / "obama_and_biden.jpg")

    results = service.identify("fr", probe, purpose="test", max_fmr=1e-3)
    rates = results[0].gallery
    assert rates is not None and all(r.gallery == rates for r in results)
    assert (rates.persons, rates.max_fmr) == (persons, 1e-3)
    assert rates.fpir == pytest.approx(expected_fpir(persons, 1e-3))

    strict = service.identify("fr", probe, purpose="test", max_fpir=1e-3)
    rates = strict[0].gallery
    assert rates is not None and rates.max_fpir == 1e-3
    assert rates.max_fmr == pytest.approx(max_fmr_for_fpir(persons, 1e-3))
    assert rates.fpir == pytest.approx(1e-3)
    for r in strict:  # every candidate is within the stricter per-person rate
        assert all(c.fmr <= rates.max_fmr for c in r.candidates)
    both = service.identify("fr", probe, purpose="test", max_fmr=1e-6, max_fpir=0.5)
    assert both[0].gallery is not None and both[0].gallery.max_fmr == 1e-6  # the stricter

    cal = service.engine().pack.require_calibration()
    entries = [e for e in service.ledger.entries() if e["operation"] == "identify"]
    assert len(entries) == 3
    first, second = entries[0]["request"], entries[1]["request"]
    assert first["model_id"] == service.store.get_collection("fr").model_id
    assert first["calibration_id"] == cal.calibration_id
    assert first["threshold"] == pytest.approx(cal.threshold_for(1e-3), abs=1e-5)
    assert (first["persons"], first["max_fmr"]) == (persons, 1e-3)
    assert first["fpir"] == pytest.approx(expected_fpir(persons, 1e-3))
    assert second["max_fpir"] == 1e-3 and second["fpir"] == pytest.approx(1e-3)
    with pytest.raises(InvalidArgument):
        service.identify("fr", probe, purpose="test", max_fpir=1.5)


def test_glint_aligned_rank1(service: FaceService, faces_dir: Path) -> None:
    root = faces_dir / "glint360k_celeb24" / "images"
    service.create_collection("celebs", require_consent=False)
    people = sorted(p for p in root.iterdir() if p.is_dir())
    assert len(people) == 24
    probes: list[tuple[str, Path]] = []
    for person in people:
        files = sorted(person.iterdir())
        results = service.enroll(
            "celebs",
            person.name,
            [str(f) for f in files[:10]],
            aligned=True,
            allow_low_quality=True,
        )
        assert all(r.face_id is not None for r in results)
        probes.extend((person.name, f) for f in files[10:40])
    correct = 0
    for person, path in probes:
        res = service.identify("celebs", str(path), aligned=True, max_fmr=0.5, top=1)
        correct += bool(res[0].candidates) and res[0].candidates[0].person == person
    assert correct / len(probes) >= 0.99


def test_verify_similar_and_erasure(tmp_path: Path, faces_dir: Path) -> None:
    ids = faces_dir / "faceapi_bbt" / "identities"
    data = tmp_path / "data"
    svc = FaceService(Settings(data=data))
    svc.create_collection("c")
    with pytest.raises(ConsentRequired):
        svc.enroll("c", "amy", [str(ids / "amy" / "amy1.png")])
    svc.enroll("c", "amy", [str(ids / "amy" / f"amy{i}.png") for i in (1, 2, 3)], consent="form-17")
    svc.enroll(
        "c", "penny", [str(ids / "penny" / f"penny{i}.png") for i in (1, 2, 3)], consent="form-18"
    )
    probe = str(ids / "amy" / "amy4.png")
    assert svc.verify("c", probe, "amy").same_person
    assert not svc.verify("c", probe, "penny").same_person
    match_person = svc.similar("c", probe, mode="matchPerson")
    assert match_person.candidates and {c.person for c in match_person.candidates} == {"amy"}
    match_face = svc.similar("c", probe, mode="matchFace", top=6)
    assert len(match_face.candidates) == 6 and match_face.candidates[0].person == "amy"
    assert svc.identify("c", probe)[0].candidates[0].person == "amy"
    svc.delete_person("c", "amy")
    assert all(c.person != "amy" for r in svc.identify("c", probe) for c in r.candidates)
    with pytest.raises(NotFound):
        svc.verify("c", probe, "amy")
    svc.close()
    reopened = FaceService(Settings(data=data))
    assert all(c.person != "amy" for r in reopened.identify("c", probe) for c in r.candidates)
    faces_left = reopened.store.list_faces("c")
    assert {f.person for f in faces_left} == {"penny"}
    assert reopened.ledger.verify()["ok"]
    reopened.close()


def test_group_photo_enrolment_needs_a_choice(service: FaceService, faces_dir: Path) -> None:
    service.create_collection("g", require_consent=False)
    group = str(faces_dir / "insightface_pkg" / "group" / "t1.jpg")
    [refused] = service.enroll("g", "someone", [group])
    assert refused.refused == MultipleFaces.code and refused.face_id is None
    [chosen] = service.enroll("g", "someone", [group], face_index=1, allow_low_quality=True)
    assert chosen.face_id is not None


def purity(groups: list[list[str]]) -> float:
    members = sum(len(g) for g in groups)
    return sum(max(g.count(x) for x in set(g)) for g in groups) / members


def completeness(groups: list[list[str]], total: dict[str, int]) -> float:
    """Share of each person's faces in the group holding most of them, over all persons."""
    best = {person: max((g.count(person) for g in groups), default=0) for person in total}
    return sum(best.values()) / sum(total.values())


def test_group_johns_into_five_people(service: FaceService, faces_dir: Path) -> None:
    root = faces_dir / "dlib_examples" / "johns"
    images = sorted(p for p in root.rglob("*") if p.is_file())
    result = service.group([str(p) for p in images])
    labels = [[Path(f.image).parent.name for f in g] for g in result.groups]
    big = [g for g in labels if len(g) >= 5]
    assert len(big) == 5
    assert len({max(set(g), key=g.count) for g in big}) == 5  # five different people
    assert purity(labels) >= 0.95
    total = {p.parent.name: 0 for p in images}
    for p in images:
        total[p.parent.name] += 1
    assert completeness(labels, total) >= 0.9


def test_group_never_joins_two_faces_of_one_photo(service: FaceService, faces_dir: Path) -> None:
    photos = sorted((faces_dir / "faceapi_bbt" / "group").glob("bbt*.jpg"))  # one cast, 5 scenes
    result = service.group([str(p) for p in photos])
    assert result.groups
    for g in result.groups:
        images = [f.image for f in g]
        assert len(images) == len(set(images)), images


def test_cannot_link_constraint_on_synthetic_vectors() -> None:
    from faceledger.search.grouping import chinese_whispers

    rng = np.random.default_rng(0)
    base = rng.normal(size=(1, 64))
    vectors = base + rng.normal(scale=0.05, size=(4, 64))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    free = chinese_whispers(vectors, threshold=0.5)
    assert free.groups == [[0, 1, 2, 3]]
    constrained = chinese_whispers(vectors, threshold=0.5, photo_ids=np.array([7, 7, 8, 9]))
    for g in constrained.groups:
        assert not {0, 1} <= set(g)


def test_glint_grouping_reports_pairwise_precision_recall(
    service: FaceService, faces_dir: Path
) -> None:
    from itertools import combinations

    root = faces_dir / "glint360k_celeb24" / "images"
    items = [(p.name, f) for p in sorted(root.iterdir()) for f in sorted(p.iterdir())[:20]]
    service.create_collection("gl", require_consent=False)
    for person in {p for p, _ in items}:
        service.enroll(
            "gl",
            person,
            [str(f) for p, f in items if p == person],
            aligned=True,
            allow_low_quality=True,
        )
    result = service.group(collection="gl")
    label = {}
    for gi, g in enumerate(result.groups):
        for f in g:
            label[f.face_id] = gi
    persons = {f.face_id: f.person for g in result.groups for f in g}
    for f in result.messy_group:
        persons[f.face_id] = f.person
    ids = list(persons)
    tp = fp = fn = 0
    for a, b in combinations(ids, 2):
        same_true = persons[a] == persons[b]
        same_pred = a in label and b in label and label[a] == label[b]
        tp += same_true and same_pred
        fp += same_pred and not same_true
        fn += same_true and not same_pred
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    print(json.dumps({"pairwise_precision": precision, "pairwise_recall": recall}))
    assert precision >= 0.95 and recall >= 0.5


def test_cli_contract(tmp_path: Path, faces_dir: Path) -> None:
    ids = faces_dir / "faceapi_bbt" / "identities"
    runner = CliRunner()
    data = ["--data", str(tmp_path / "d")]

    def run(*args: str) -> dict[str, object]:
        out = runner.invoke(app, [*data, *args])
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout) if "--json" in args else {}

    run("collection", "create", "c")
    run(
        "enroll",
        "c",
        "sheldon",
        str(ids / "sheldon/sheldon1.png"),
        str(ids / "sheldon/sheldon2.png"),
        "--consent",
        "ref-1",
        "--json",
    )
    run("enroll-folder", "c", str(ids), "--consent", "ref-2", "--json")
    found = run(
        "identify",
        "c",
        str(faces_dir / "faceapi_bbt/group/bbt1.jpg"),
        "--purpose",
        "test",
        "--json",
    )
    faces = found["faces"]
    assert isinstance(faces, list) and all(
        {"person", "similarity", "fmr"} <= set(c) for f in faces for c in f["candidates"]
    )
    sim = run("similar", "c", str(ids / "sheldon/sheldon3.png"), "--mode", "matchFace", "--json")
    assert sim["similar"]
    ver = run("verify", "c", str(ids / "sheldon/sheldon3.png"), "--person", "sheldon", "--json")
    assert ver["same_person"] is True
    grp = run("group", "--collection", "c", "--json")
    assert grp["groups"]
    run("person", "delete", "c", "sheldon", "--yes")
    again = run("identify", "c", str(ids / "sheldon/sheldon3.png"), "--json")
    assert all(c["person"] != "sheldon" for f in again["faces"] for c in f["candidates"])  # type: ignore[index, union-attr]
    assert run("audit", "verify", "--json")["ok"] is True


def test_a_collection_moves_to_another_calibration_only_on_request(
    tmp_path: Path, faces_dir: Path
) -> None:
    """A new calibration version is used by a collection only after use_calibration, which
    the ledger records; the next search entry names the new id (issue #14)."""
    from dataclasses import replace

    from faceledger.errors import Conflict
    from faceledger.models.calibration_store import CalibrationStore

    data = tmp_path / "data"
    svc = FaceService(Settings(data=data))
    svc.create_collection("fr", require_consent=False)
    root = faces_dir / "face_recognition_examples"
    svc.enroll_folder("fr", root / "identities", largest=True)
    probe = str(root / "group" / "obama_and_biden.jpg")
    col = svc.store.get_collection("fr")
    shipped = svc.engine().pack.require_calibration()
    stricter = replace(
        shipped,
        thresholds=tuple(t + 0.05 for t in shipped.thresholds),
        provenance={**shipped.provenance, "model_id": col.model_id, "note": "test version"},
    )
    alien = replace(stricter, provenance={**stricter.provenance, "model_id": "other@1"})
    CalibrationStore(data / "calibrations").save(stricter)
    CalibrationStore(data / "calibrations").save(alien)

    svc.identify("fr", probe, purpose="before")  # written but not yet used
    with pytest.raises(Conflict):
        svc.use_calibration("fr", alien.calibration_id)
    with pytest.raises(NotFound):
        svc.use_calibration("fr", "cal-0000000000000000")
    assert svc.use_calibration("fr", stricter.calibration_id).calibration_id == (
        stricter.calibration_id
    )
    svc.identify("fr", probe, purpose="after")
    svc.close()

    svc = FaceService(Settings(data=data))  # the choice is stored, not held in memory
    assert svc.calibration("fr").calibration_id == stricter.calibration_id
    svc.use_calibration("fr", None)  # back to the shipped one
    svc.identify("fr", probe, purpose="shipped again")
    entries = svc.ledger.entries()
    svc.close()
    searches = [e["request"] for e in entries if e["operation"] == "identify"]
    assert [s["calibration_id"] for s in searches] == [
        shipped.calibration_id,
        stricter.calibration_id,
        shipped.calibration_id,
    ]
    assert searches[1]["threshold"] == pytest.approx(searches[0]["threshold"] + 0.05, abs=1e-4)
    moves = [e["request"] for e in entries if e["operation"] == "collection.calibration"]
    assert moves == [
        {"from": shipped.calibration_id, "to": stricter.calibration_id},
        {"from": stricter.calibration_id, "to": shipped.calibration_id},
    ]
