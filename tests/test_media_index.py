"""The searchable media index: store (SQLite FTS5 and PostgreSQL), service, HTTP, CLI, client,
and one end-to-end run on a video made here (a shared face photo, drawn text, real speech)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import TypeAdapter
from sqlalchemy import select, text
from typer.testing import CliRunner

from faceledger.cli.main import app as cli_app
from faceledger.config import Settings
from faceledger.errors import InvalidArgument, NotFound, PurposeRequired
from faceledger.ledger.keys import Role
from faceledger.service import FaceService
from faceledger.store import Store
from faceledger.store.jobs import JobRecord, JobStore
from faceledger.store.media import (
    MediaHit,
    MediaQuery,
    MediaStore,
    NewMediaIndex,
    NewSegment,
)
from faceledger.store.schema import media_segments
from faceledger.video import VideoIndex
from tests.media_fixtures import SPEECH_VIDEO_FACE, speech_video
from tests.test_erasure import files_holding

SHA_A = "a" * 64
SHA_B = "b" * 64


def timeline_a() -> NewMediaIndex:
    """Ada on screen 0-10 s and 20-30 s; speech and on-screen text around her."""
    return NewMediaIndex(
        video_sha256=SHA_A,
        file_name="meeting.mp4",
        duration=40.0,
        complete=True,
        segments=[
            NewSegment("person", 0.0, 10.0, person="Ada"),
            NewSegment("person", 20.0, 30.0, person="Ada"),
            NewSegment("person", 5.0, 25.0, label="unknown person 1"),
            NewSegment(
                "speech",
                2.0,
                6.0,
                text="We review the budget today",
                text_en=None,
                language="en",
                confidence=0.9,
            ),
            NewSegment(
                "speech",
                12.0,
                16.0,
                text="Das Budget ist knapp",
                text_en="The budget is tight",
                language="de",
                confidence=0.8,
            ),
            NewSegment("speech", 22.0, 26.0, text="The budget is approved", language="en"),
            NewSegment("text", 0.0, 8.0, text="BUDGET REVIEW 2027", confidence=0.95),
            NewSegment("text", 21.0, 29.0, text="BUDGET REVIEW 2027", confidence=0.95),
        ],
    )


def timeline_b() -> NewMediaIndex:
    return NewMediaIndex(
        video_sha256=SHA_B,
        file_name="other.mp4",
        duration=10.0,
        complete=True,
        segments=[
            NewSegment("person", 1.0, 3.0, person="Bob"),
            NewSegment("speech", 0.0, 9.0, text="budget, budget, café", language="fr"),
        ],
    )


@pytest.fixture
def media(tmp_path: Path, db_url: str | None) -> Iterator[tuple[Store, MediaStore]]:
    store = Store(tmp_path / "data", database_url=db_url)
    store.create_collection(
        "c", model_pack="t", model_id="t@1", embedding_dim=4, require_consent=False
    )
    store.create_collection(
        "d", model_pack="t", model_id="t@1", embedding_dim=4, require_consent=False
    )
    for name in ("Ada", "Bob"):
        store.create_person("c", name)
    index = MediaStore(store.engine)
    at = datetime.now(UTC)
    with store.transaction() as tx:
        assert index.put(tx.conn, "c", timeline_a(), at) == 8
        index.put(tx.conn, "c", timeline_b(), at)
    yield store, index
    store.close()


def spans(page_hits: list[MediaHit]) -> list[tuple[str, float, float]]:
    return [(h.file_name, h.start, h.end) for h in page_hits]


def test_store_searches_by_person_words_and_time(media: tuple[Store, MediaStore]) -> None:
    _, index = media
    ada = index.search("c", MediaQuery(person="Ada"))
    assert spans(ada.hits) == [("meeting.mp4", 0.0, 10.0), ("meeting.mp4", 20.0, 30.0)]
    assert ada.total == 2 and ada.hits[0].person is not None and ada.hits[0].person.label == "Ada"

    said = index.search("c", MediaQuery(said="budget"))
    assert said.total == 4  # three in the meeting, one in the other video
    assert [h.said.language for h in said.hits if h.said] == ["en", "de", "en", "fr"]
    # German speech is found by its English translation; accents folded on SQLite only
    assert index.search("c", MediaQuery(said="tight")).hits[0].said.text == "Das Budget ist knapp"  # type: ignore[union-attr]
    assert index.search("c", MediaQuery(said="BUDGET Approved")).total == 1  # every word, any case
    assert index.search("c", MediaQuery(said="budget missing")).total == 0
    assert index.search("c", MediaQuery(said="bud")).total == 0  # whole words

    shown = index.search("c", MediaQuery(shown="review 2027"))
    assert spans(shown.hits) == [("meeting.mp4", 0.0, 8.0), ("meeting.mp4", 21.0, 29.0)]
    assert index.search("c", MediaQuery(said="review 2027")).total == 0  # shown, not said

    # "Ada appears while 'budget' is said": her intervals overlapping matching speech
    both = index.search("c", MediaQuery(person="Ada", said="budget"))
    assert spans(both.hits) == [("meeting.mp4", 2.0, 6.0), ("meeting.mp4", 22.0, 26.0)]
    three = index.search("c", MediaQuery(person="Ada", said="budget", shown="review"))
    assert spans(three.hits) == [("meeting.mp4", 2.0, 6.0), ("meeting.mp4", 22.0, 26.0)]
    late = index.search("c", MediaQuery(person="Ada", said="budget", start=18.0, end=40.0))
    assert spans(late.hits) == [("meeting.mp4", 22.0, 26.0)]
    only_b = index.search("c", MediaQuery(said="budget", video="other.mp4"))
    assert spans(only_b.hits) == [("other.mp4", 0.0, 9.0)]
    assert index.search("c", MediaQuery(said="budget", video=SHA_B.upper())).total == 1

    page = index.search("c", MediaQuery(said="budget", offset=1, limit=2))
    assert page.total == 4 and len(page.hits) == 2
    assert page.hits == said.hits[1:3]
    beyond = index.search("c", MediaQuery(said="budget", offset=10))
    assert beyond.hits == [] and beyond.total == 4

    assert index.search("d", MediaQuery(said="budget")).total == 0  # per collection
    with pytest.raises(NotFound):
        index.search("c", MediaQuery(person="Nobody"))
    with pytest.raises(NotFound):
        index.search("nope", MediaQuery(said="budget"))
    for bad in (
        {},
        {"said": "  ,;  "},
        {"said": "x", "start": 5.0, "end": 1.0},
        {"said": "x", "limit": 0},
        {"said": "x", "start": -1.0},
    ):
        with pytest.raises(InvalidArgument):
            MediaQuery(**bad)  # type: ignore[arg-type]


def test_store_replaces_a_reindexed_video_and_erases_persons(
    media: tuple[Store, MediaStore],
) -> None:
    store, index = media
    shorter = NewMediaIndex(
        SHA_A,
        "meeting-renamed.mp4",
        40.0,
        True,
        [NewSegment("speech", 1.0, 2.0, text="nothing else")],
    )
    with store.transaction() as tx:
        index.put(tx.conn, "c", shorter, datetime.now(UTC))
    assert index.search("c", MediaQuery(said="budget")).total == 1  # only the other video
    assert index.search("c", MediaQuery(said="nothing", video="meeting-renamed.mp4")).total == 1
    videos = index.videos("c")
    assert [v.file_name for v in videos] == ["meeting-renamed.mp4", "other.mp4"]  # newest first
    assert videos[0].segments == {"person": 0, "text": 0, "speech": 1}

    store.delete_person("c", "Bob")
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(media_segments.c.person_id, media_segments.c.label).where(
                media_segments.c.kind == "person"
            )
        ).all()
    assert rows == [(None, None)]  # neither id nor name: shown as "erased person"
    with pytest.raises(NotFound):
        index.search("c", MediaQuery(person="Bob"))


def test_store_moves_a_merged_persons_intervals_and_lists_appearances(
    media: tuple[Store, MediaStore],
) -> None:
    store, index = media
    with store.transaction() as tx:
        assert index.move_person(tx.conn, "c", "Bob", "Ada") == 1
    store.delete_person("c", "Bob")
    ada = index.search("c", MediaQuery(person="Ada"))
    everywhere = [("meeting.mp4", 0.0, 10.0), ("meeting.mp4", 20.0, 30.0), ("other.mp4", 1.0, 3.0)]
    assert spans(ada.hits) == everywhere
    with store.transaction() as tx:
        seen = index.appearances(tx.conn, "c", "Ada")
        assert [(a.file_name, a.start, a.end) for a in seen] == everywhere
        assert {(a.collection, a.video_sha256) for a in seen} == {("c", SHA_A), ("c", SHA_B)}
        assert index.appearances(tx.conn, "d", "Ada") == []  # another collection's Ada
    with store.transaction() as tx, pytest.raises(NotFound):
        index.move_person(tx.conn, "c", "Nobody", "Ada")


def test_store_expires_old_videos_and_drops_a_deleted_collections_words(
    media: tuple[Store, MediaStore],
) -> None:
    store, index = media
    assert index.expired(datetime.now(UTC) - timedelta(hours=1)) == 0
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert index.expired(later) == 2
    with store.transaction() as tx:
        gone = index.expire(tx.conn, later)
    assert sorted(gone) == [("c", SHA_A), ("c", SHA_B)]
    assert index.search("c", MediaQuery(said="budget")).total == 0
    assert index.videos("c") == []

    with store.transaction() as tx:
        index.put(tx.conn, "c", timeline_a(), datetime.now(UTC))
    store.delete_collection("c")
    with store.engine.connect() as conn:
        assert conn.scalar(select(text("count(*)")).select_from(media_segments)) == 0
        if conn.dialect.name == "sqlite":  # the full-text index holds no word of it either
            words = conn.exec_driver_sql(
                "SELECT count(*) FROM media_text WHERE media_text MATCH 'budget'"
            ).scalar()
            assert words == 0


# -- service, fronts and the end-to-end run on one indexed video ---------------------------
PERSON = "Joe Example"  # enrolled from biden.jpg; the video shows biden2.jpg


@pytest.fixture(scope="module")
def indexed(
    tmp_path_factory: pytest.TempPathFactory, faces_dir: Path
) -> Iterator[tuple[FaceService, VideoIndex, Path]]:
    """One talking-head video (a shared face photo, "BUDGET REVIEW 2027" drawn on every
    frame, jfk.flac as its sound), indexed once with speech for every test of the module."""
    root = tmp_path_factory.mktemp("media")
    video = speech_video(root / "talk.mp4", faces_dir / SPEECH_VIDEO_FACE)
    svc = FaceService(Settings(data=root / "data"))
    svc.create_collection("c", require_consent=False)
    biden = faces_dir / "face_recognition_examples/identities/joe_biden/biden.jpg"
    svc.enroll("c", PERSON, [biden], largest=True)
    result = svc.index_video("c", video, purpose="media index test")
    yield svc, result, video
    svc.close()


def test_indexed_video_is_found_by_person_shown_and_said(
    indexed: tuple[FaceService, VideoIndex, Path],
) -> None:
    svc, result, _ = indexed
    assert [p.person for p in result.people] == [PERSON]
    assert result.transcript, result.speech_problem
    [stored] = svc.media_videos("c")
    assert (stored.video_sha256, stored.file_name) == (result.video_sha256, "talk.mp4")
    assert stored.segments["speech"] == len(result.transcript) and stored.segments["text"] >= 1

    duration = result.duration or 0.0
    seen = svc.search_media("c", person=PERSON, purpose="find him")
    assert seen.total >= 1 and seen.hits[0].person is not None
    assert seen.hits[0].person.label == PERSON and seen.hits[0].file_name == "talk.mp4"
    assert seen.hits[0].start < 1.0 and seen.hits[-1].end > duration - 1.5  # on every frame

    shown = svc.search_media("c", shown="review 2027")
    assert shown.total >= 1 and shown.hits[0].shown is not None
    assert "REVIEW 2027" in shown.hits[0].shown.text.upper()
    assert shown.hits[0].start < 1.5

    # jfk.flac: "... fellow Americans, ask not what your country can do for you ..."
    said = svc.search_media("c", said="country")
    assert said.total >= 1 and all(h.said is not None for h in said.hits)
    segment = next(s for s in result.transcript if "country" in s.text.lower())
    assert said.hits[0].start == pytest.approx(segment.start, abs=1e-3)
    assert said.hits[0].end == pytest.approx(segment.end, abs=1e-3)
    assert 0.0 <= said.hits[0].start < said.hits[-1].end <= duration + 0.5

    both = svc.search_media("c", person=PERSON, said="americans", shown="budget", purpose="t")
    assert both.total >= 1
    hit = both.hits[0]
    assert hit.person is not None and hit.said is not None and hit.shown is not None
    assert max(hit.person.start, hit.said.start, hit.shown.start) == pytest.approx(hit.start)
    assert min(hit.person.end, hit.said.end, hit.shown.end) == pytest.approx(hit.end)
    late = svc.search_media("c", said="americans", start=duration + 1)
    assert late.total == 0
    assert svc.search_media("c", said="pineapple").total == 0


def test_person_search_needs_a_purpose_and_is_in_the_ledger(
    indexed: tuple[FaceService, VideoIndex, Path],
) -> None:
    svc, result, _ = indexed
    svc.require_purpose = True
    try:
        with pytest.raises(PurposeRequired):
            svc.search_media("c", person=PERSON)
        assert svc.search_media("c", said="country").total >= 1  # words alone: no purpose
        svc.search_media("c", person=PERSON, said="Country", purpose="case work", case_ref="K-1")
    finally:
        svc.require_purpose = False
    entries = svc.ledger.entries()
    stored = [e for e in entries if e["operation"] == "media.store"]
    assert stored and stored[-1]["request"]["video_sha256"] == result.video_sha256
    last = [e for e in entries if e["operation"] == "media.search"][-1]
    pseudonym = svc.store.get_person("c", PERSON).pseudonym
    assert last["purpose"] == "case work" and last["case_ref"] == "K-1"
    assert last["request"]["person"] == pseudonym
    assert last["request"]["said_sha256"] == hashlib.sha256(b"country").hexdigest()
    assert last["result"]["videos"] == [result.video_sha256]
    assert PERSON not in json.dumps(entries) and "ountry" not in json.dumps(entries)


def test_reindexing_the_same_video_replaces_its_results(
    indexed: tuple[FaceService, VideoIndex, Path],
) -> None:
    svc, result, _ = indexed
    before = svc.search_media("c", said="country").total
    svc.store_video_index("c", result, file_name="renamed.mp4")
    [stored] = svc.media_videos("c")
    assert stored.file_name == "renamed.mp4"
    again = svc.search_media("c", said="country")
    assert again.total == before and again.hits[0].file_name == "renamed.mp4"
    svc.store_video_index("c", result, file_name="talk.mp4")


def test_media_results_expire_after_media_retention_days(
    tmp_path: Path, indexed: tuple[FaceService, VideoIndex, Path]
) -> None:
    from faceledger.service.retention import sweep

    _, result, _ = indexed
    data = tmp_path / "data"
    svc = FaceService(Settings(data=data, media_retention_days=30))
    try:
        svc.create_collection("c", require_consent=False)
        svc.store_video_index("c", result, file_name="talk.mp4")
        assert svc.search_media("c", shown="budget").total >= 1
        words_on_disk = [b"BUDGET REVIEW", b"fellow Americans"]
        assert files_holding(data, words_on_disk), "the test must first find what it erases"
        sweep(svc, at=datetime.now(UTC) + timedelta(days=29))
        assert svc.search_media("c", shown="budget").total >= 1  # not yet
        sweep(svc, at=datetime.now(UTC) + timedelta(days=31))
        assert svc.media_videos("c") == []
        assert svc.search_media("c", shown="budget").total == 0
        [expired] = [e for e in svc.ledger.entries() if e["operation"] == "media.expire"]
        assert expired["result"]["videos"] == [result.video_sha256]
        assert files_holding(data, words_on_disk) == []
    finally:
        svc.close()


def test_merging_a_person_moves_their_intervals_to_the_survivor(
    tmp_path: Path, faces_dir: Path, indexed: tuple[FaceService, VideoIndex, Path]
) -> None:
    _, result, _ = indexed
    svc = FaceService(Settings(data=tmp_path / "data"))
    try:
        svc.create_collection("c", require_consent=False)
        biden = faces_dir / "face_recognition_examples/identities/joe_biden/biden.jpg"
        svc.enroll("c", PERSON, [biden], largest=True)
        svc.create_person("c", "Joseph Survivor")
        svc.store_video_index("c", result, file_name="talk.mp4")
        before = svc.search_media("c", person=PERSON, purpose="t")
        assert before.total >= 1
        jobs = JobStore(svc.store.engine)  # the same index as a finished video job's result
        stored = TypeAdapter(VideoIndex).dump_python(result, mode="json")
        assert stored["people"][0]["person"] == PERSON and stored["people"][0]["thumbnail"]
        jobs.add(JobRecord("j1", "k", "c", "x.video", {}, None, None, {}, "done", result=stored))

        merged = svc.merge_persons("c", PERSON, "Joseph Survivor")
        assert merged.face_count == 1
        [person] = jobs.get("j1").result["people"]  # type: ignore[index]
        assert person["person"] == "Joseph Survivor" and person["thumbnail"]  # not erased
        assert PERSON not in json.dumps(jobs.get("j1").result)
        after = svc.search_media("c", person="Joseph Survivor", purpose="t")
        assert [(h.start, h.end) for h in after.hits] == [(h.start, h.end) for h in before.hits]
        assert all(h.person is not None and h.person.label == "Joseph Survivor" for h in after.hits)
        with svc.store.engine.connect() as conn:
            people = conn.execute(
                select(media_segments.c.person_id).where(media_segments.c.kind == "person")
            ).all()
        assert people and all(r.person_id is not None for r in people)  # none "erased person"
        with pytest.raises(NotFound):
            svc.search_media("c", person=PERSON, purpose="t")
        [entry] = [e for e in svc.ledger.entries() if e["operation"] == "person.merge"]
        assert entry["result"]["media_intervals_moved"] == len(before.hits)
        assert entry["result"]["video_jobs_changed"] == 1
    finally:
        svc.close()


def test_cli_media_search_and_list(
    indexed: tuple[FaceService, VideoIndex, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, result, _ = indexed
    runner = CliRunner()
    data = ["--data", str(svc.settings.data)]
    found = runner.invoke(
        cli_app, [*data, "media", "search", "c", "--said", "country", "--person", PERSON, "--json"]
    )
    assert found.exit_code == 0, found.output
    page = json.loads(found.output)
    assert page["total"] >= 1 and page["hits"][0]["video_sha256"] == result.video_sha256
    assert page["hits"][0]["person"]["label"] == PERSON
    text = runner.invoke(cli_app, [*data, "media", "search", "c", "--shown", "budget review"])
    assert text.exit_code == 0 and "talk.mp4" in text.output and "hit(s)" in text.output
    listed = runner.invoke(cli_app, [*data, "media", "list", "c", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.output)["videos"][0]["file_name"]
    nobody = runner.invoke(cli_app, [*data, "media", "search", "c", "--person", "Nobody"])
    assert nobody.exit_code == 4 and "Traceback" not in nobody.output  # not_found
    nothing = runner.invoke(cli_app, [*data, "media", "search", "c"])
    assert nothing.exit_code == 7 and "invalid_argument" in nothing.output  # bad_input
    backwards = runner.invoke(
        cli_app, [*data, "media", "search", "c", "--said", "x", "--from", "5", "--to", "1"]
    )
    assert backwards.exit_code == 7


def test_http_and_client_media_search(indexed: tuple[FaceService, VideoIndex, Path]) -> None:
    from faceledger.api.app import create_app
    from faceledger.api.openapi import build_openapi
    from faceledger.client import Client
    from tests.test_video import serve_in_thread

    svc, result, _ = indexed
    settings = Settings(data=svc.settings.data, rate_limit=0)
    with serve_in_thread(settings) as (http, service):
        key = service.create_key(Role.SEARCHER).secret
        h = {"X-API-Key": key}
        base = {"collection": "c", "said": "country"}
        words = http.get("/v1/media/search", params=base, headers=h)
        assert words.status_code == 200, words.text
        body = words.json()
        assert body["total"] >= 1 and body["hits"][0]["said"]["language"] == "en"
        assert body["hits"][0]["file_name"] == "talk.mp4"
        person = {**base, "person": PERSON}
        refused = http.get("/v1/media/search", params=person, headers=h)
        assert refused.status_code == 422 and refused.json()["code"] == "purpose_required"
        assert refused.headers["content-type"].startswith("application/problem+json")
        missing = http.get(
            "/v1/media/search", params={**person, "person": "Nobody", "purpose": "t"}, headers=h
        )
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"
        empty = http.get("/v1/media/search", params={"collection": "c"}, headers=h)
        assert empty.status_code == 422 and empty.json()["code"] == "invalid_argument"
        assert http.get("/v1/media/search", params=base).status_code == 401
        auditor = {"X-API-Key": service.create_key(Role.AUDITOR).secret}
        assert http.get("/v1/media/search", params=base, headers=auditor).status_code == 403
        doc = build_openapi(create_app(settings))  # (the thread's app adds a router twice)
        operation = doc["paths"]["/v1/media/search"]["get"]
        assert {"401", "403", "404", "409", "422", "429"} <= set(operation["responses"])

        with Client(str(http.base_url), key) as client:
            page = client.search_media(
                "c", person=PERSON, shown="budget", purpose="t", limit=1, offset=0
            )
            assert page["total"] >= 1 and len(page["hits"]) == 1
            assert page["hits"][0]["person"]["label"] == PERSON
            assert page["hits"][0]["video_sha256"] == result.video_sha256
            with pytest.raises(NotFound):
                client.search_media("nope", said="country")


def test_http_video_jobs_keep_the_users_file_name(
    tmp_path: Path, indexed: tuple[FaceService, VideoIndex, Path]
) -> None:
    from tests.test_video import serve_in_thread, wait_for

    _, result, video = indexed
    body = video.read_bytes()
    with serve_in_thread(Settings(data=tmp_path / "data", rate_limit=0)) as (http, service):
        service.create_collection("c", require_consent=False)
        h = {"X-API-Key": service.create_key(Role.SEARCHER).secret}
        url, q = "/v1/videos", {"collection": "c", "purpose": "t", "speech": "false", "fps": 1}
        name = "Board meeting \u2013 M\u00e4rz (final).mp4"
        sent = http.post(url, params=q, files={"video": (name, body, "video/mp4")}, headers=h)
        assert sent.status_code == 202, sent.text
        done = wait_for(http, sent.json()["job"], h)
        assert done["status"] == "done" and done["file_name"] == name, done
        [stored] = service.media_videos("c")
        assert (stored.video_sha256, stored.file_name) == (result.video_sha256, name)

        raw = http.post(url, params={**q, "name": "talk 2.mp4"}, content=body, headers=h)
        assert raw.status_code == 202, raw.text
        assert wait_for(http, raw.json()["job"], h)["status"] == "done"
        assert [v.file_name for v in service.media_videos("c")] == ["talk 2.mp4"]

        jobs_before = len(http.get("/v1/videos", headers=h).json())
        for bad in ["../talk.mp4", "a\\b.mp4", "bell\x07.mp4", " x.mp4", "x" * 256, "..", ""]:
            refused = http.post(url, params={**q, "name": bad}, content=body, headers=h)
            assert refused.status_code == 422, (bad, refused.text)
            assert refused.json()["code"] == "invalid_argument", bad
        for bad in ["dir/evil.mp4", "..", "x" * 256]:
            files = {"video": (bad, body, "video/mp4")}
            refused = http.post(url, params=q, files=files, headers=h)
            assert refused.status_code == 422, (bad, refused.text)
        assert len(http.get("/v1/videos", headers=h).json()) == jobs_before  # nothing queued
        assert list((tmp_path / "data" / "tmp").iterdir()) == []  # nothing kept
