"""Hold under abuse (#13), each finding on a real server process.

Erasure is final (an enrolment racing a deletion never brings the person back), and a 504
means nothing was stored.
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
import sqlalchemy
from PIL import Image

from faceledger.engine import Engine
from faceledger.errors import (
    FaceledgerError,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    PurposeRequired,
    QualityTooLow,
    RequestAbandoned,
    VideoTooLarge,
)
from faceledger.service import FaceService
from faceledger.video import IndexOptions, VideoReader, index_video, probe_streams
from tests.test_api import Server, start_server, stop_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("abuse") / "data"
    srv = start_server(data, FACELEDGER_RATE_LIMIT="0")
    yield srv
    stop_server(srv)


def _ledger_ops(server: Server) -> list[str]:
    with server.database().connect() as conn:
        rows = conn.execute(sqlalchemy.text("SELECT operation FROM audit_log ORDER BY seq")).all()
    return [str(r[0]) for r in rows]


@pytest.mark.slow
def test_enrolment_racing_an_erasure_never_brings_the_person_back(
    server: Server, faces_dir: Path
) -> None:
    """Finding 1: DELETE answered 204, then the racing enrolment 201 and the person was back."""
    image = (faces_dir / "faceapi_bbt" / "identities" / "sheldon" / "sheldon1.png").read_bytes()
    rng = random.Random(13)
    outcomes: list[str] = []
    with server.client() as admin:
        admin.create_collection("race", require_consent=False)
        for run in range(20):
            name = f"p{run}"
            admin.create_person("race", name)
            enrol: dict[str, object] = {}

            def do_enrol(name: str = name, enrol: dict[str, object] = enrol) -> None:
                with server.client() as c:
                    try:
                        enrol["ok"] = c.enroll("race", name, image)
                    except FaceledgerError as exc:
                        enrol["error"] = exc

            t = threading.Thread(target=do_enrol)
            t.start()
            time.sleep(rng.uniform(0.0, 0.4))
            admin.delete_person("race", name)
            deleted_at = time.monotonic()
            t.join(timeout=120)
            assert not t.is_alive()
            if "error" in enrol:
                assert isinstance(enrol["error"], NotFound), enrol["error"]
                outcomes.append("refused")
            else:
                outcomes.append("erased")
            # whatever the order, the erasure is final
            with pytest.raises(NotFound):
                admin.get_person("race", name)
            assert time.monotonic() - deleted_at < 120
        assert admin.list_persons("race") == []
    with server.database().connect() as conn:
        left = conn.execute(sqlalchemy.text("SELECT count(*) FROM faces")).scalar()
    assert left == 0, outcomes


def _crowd(faces_dir: Path, tiles: int) -> bytes:
    """A group photo tiled ``tiles`` x ``tiles`` times: hundreds of real faces in one image."""
    group = Image.open(faces_dir / "faceapi_bbt" / "group" / "bbt1.jpg").convert("RGB")
    w, h = group.size
    canvas = Image.new("RGB", (w * tiles, h * tiles))
    for i in range(tiles):
        for j in range(tiles):
            canvas.paste(group, (i * w, j * h))
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.mark.slow
def test_a_timed_out_enrolment_stores_nothing(tmp_path: Path, faces_dir: Path) -> None:
    """Finding 7: with REQUEST_TIMEOUT=2 a many-face enrolment answered 504, then landed."""
    srv = start_server(
        tmp_path / "data",
        FACELEDGER_RATE_LIMIT="0",
        FACELEDGER_REQUEST_TIMEOUT="0.5",
        FACELEDGER_MAX_IMAGE_PIXELS="100000000",
    )
    try:
        image = _crowd(faces_dir, 4)
        with srv.client() as c:
            c.create_collection("t", require_consent=False)
            c.create_person("t", "crowd")
            before = _ledger_ops(srv)
            with pytest.raises(RequestAbandoned):
                c.enroll("t", "crowd", image, largest=True, allow_low_quality=True)
            time.sleep(8)  # the abandoned work would have landed by now
            assert c.get_person("t", "crowd")["face_count"] == 0
        assert [op for op in _ledger_ops(srv)[len(before) :] if "enrol" in op] == []
        with srv.database().connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT count(*) FROM faces")).scalar() == 0
    finally:
        stop_server(srv)


def _big_photo(faces_dir: Path, side: int) -> bytes:
    """A real group photo scaled up to ``side`` pixels wide: slow to decode and search."""
    group = Image.open(faces_dir / "faceapi_bbt" / "group" / "bbt1.jpg").convert("RGB")
    w, h = group.size
    out = io.BytesIO()
    group.resize((side, side * h // w)).save(out, "JPEG", quality=85)
    return out.getvalue()


@pytest.mark.slow
def test_images_beyond_the_budget_are_refused_with_503(tmp_path: Path, faces_dir: Path) -> None:
    """Finding 3: nothing bounded concurrent decoding; now one slot, one waiting, 503 beyond."""
    srv = start_server(
        tmp_path / "data",
        FACELEDGER_RATE_LIMIT="0",
        FACELEDGER_IMAGE_SLOTS="1",
        FACELEDGER_IMAGE_QUEUE="1",
    )
    try:
        image = _big_photo(faces_dir, 4000)
        with srv.client() as admin:
            key = admin.create_key("searcher")["key"]
        responses: list[httpx.Response] = []
        lock = threading.Lock()

        def detect() -> None:
            r = httpx.post(
                f"{srv.url}/v1/detect",
                headers={"X-API-Key": key},
                content=image,
                timeout=120,
            )
            with lock:
                responses.append(r)

        threads = [threading.Thread(target=detect) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)
        statuses = sorted(r.status_code for r in responses)
        assert len(statuses) == 8 and set(statuses) <= {200, 503}, statuses
        refused = [r for r in responses if r.status_code == 503]
        assert refused, statuses  # 8 at once cannot all fit in one slot and one place in line
        assert statuses.count(200) >= 2, statuses  # the one in work and the one waiting
        for r in refused:
            assert r.json()["code"] == "overloaded"
            assert int(r.headers["Retry-After"]) >= 1
        # once the crowd has gone, the server answers again
        with srv.client(key) as c:
            assert c.detect(image)["faces"]
    finally:
        stop_server(srv)


def test_the_face_cap_applies_before_embedding(engine: Engine, faces_dir: Path) -> None:
    """Finding 8: identify embedded all 443 faces of a tiled image before cutting to 100."""
    capped = Engine(engine.pack, max_faces=3, workers=1)
    embedded: list[int] = []
    real = capped._pipeline.embed_aligned

    def counting(crops: Any) -> Any:
        embedded.append(len(crops))
        return real(crops)

    capped._pipeline.embed_aligned = counting  # type: ignore[method-assign]
    crowd = _crowd(faces_dir, 2)
    everyone = engine.detect(crowd)
    assert len(everyone) > 10
    faces = capped.embed(crowd)
    assert len(faces) == 3 and sum(embedded) == 3
    largest = sorted((f.box.width * f.box.height for f in everyone), reverse=True)[:3]
    assert [f.box.width * f.box.height for f in faces] == pytest.approx(largest)
    capped.close()


@pytest.mark.slow
def test_group_is_capped_and_needs_a_purpose(tmp_path: Path, faces_dir: Path) -> None:
    """Findings 6 and 8: a searcher's group showed every name without a purpose or record,
    and ignored the per-image face cap (2,380 faces)."""
    srv = start_server(
        tmp_path / "data",
        FACELEDGER_RATE_LIMIT="0",
        FACELEDGER_MAX_FACES_PER_IMAGE="5",
        FACELEDGER_MAX_GROUP_FACES="8",
    )
    try:
        crowd = _crowd(faces_dir, 2)
        sheldon = faces_dir / "faceapi_bbt" / "identities" / "sheldon"
        with srv.client() as admin:
            searcher = admin.create_key("searcher")["key"]
            admin.create_collection("staff", require_consent=False)
            admin.create_person("staff", "sheldon")
            for image in sorted(sheldon.iterdir())[:2]:
                admin.enroll("staff", "sheldon", image)
        with srv.client(searcher) as c:
            [found] = [c.identify("staff", crowd, purpose="test")]
            assert len(found["faces"]) == 5
            grouped = c.group([crowd])
            total = sum(len(g) for g in grouped["groups"]) + len(grouped["messy_group"])
            assert total == 5
            with pytest.raises(LimitExceeded):
                c.group([crowd, crowd])
            with pytest.raises(PurposeRequired):
                c.group(collection="staff")
            shown = c.group(collection="staff", purpose="find duplicates", case="C-7")
        people = {f["person"] for g in shown["groups"] for f in g} | {
            f["person"] for f in shown["messy_group"]
        }
        assert people == {"sheldon"}
        with srv.database().connect() as conn:
            row = conn.execute(
                sqlalchemy.text(
                    "SELECT purpose, case_ref, result FROM audit_log "
                    "WHERE operation = 'group' ORDER BY seq DESC LIMIT 1"
                )
            ).one()
            pseudonym = conn.execute(
                sqlalchemy.text("SELECT pseudonym FROM persons WHERE name = 'sheldon'")
            ).scalar()
        assert row[0] == "find duplicates" and row[1] == "C-7"
        result = json.loads(row[2]) if isinstance(row[2], str) else row[2]
        assert result["persons_disclosed"] == [pseudonym]
        assert "sheldon" not in json.dumps(result)
    finally:
        stop_server(srv)


def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def test_bad_metadata_is_refused_and_nothing_is_stored(server: Server) -> None:
    """Finding 7/8: metadata 900 deep answered 500 but stored the person (every page that
    showed it then failed); 20 MB or a million keys were accepted; NaN became null."""
    h = {"X-API-Key": server.admin_key, "content-type": "application/json"}
    with server.client() as c:
        c.create_collection("meta", require_consent=False)
    url = f"{server.url}/v1/collections/meta/persons"
    bodies = {
        "deep": '{"name": "deep", "metadata": ' + _nested(900) + "}",
        "deeper": '{"name": "deeper", "metadata": ' + _nested(20) + "}",
        "nan": '{"name": "nan", "metadata": {"x": NaN}}',
        "inf": '{"name": "inf", "metadata": {"x": Infinity}}',
        "wide": json.dumps({"name": "wide", "metadata": {f"k{i}": i for i in range(5000)}}),
        "big": json.dumps({"name": "big", "metadata": {"blob": "x" * 200_000}}),
    }
    for what, body in bodies.items():
        r = httpx.post(url, content=body, headers=h, timeout=60)
        assert 400 <= r.status_code < 500, (what, r.status_code, r.text[:200])
        assert r.json()["code"] == "invalid_argument", what
    with server.client() as c:
        assert c.list_persons("meta") == []
        ok = c.create_person("meta", "ok", metadata={"display": "Zoë ‮", "tags": [1, 2.5]})
        assert ok["metadata"]["tags"] == [1, 2.5]
        r = httpx.patch(
            f"{url}/ok", content='{"metadata": ' + _nested(900) + "}", headers=h, timeout=60
        )
        assert r.status_code == 422, r.text[:200]
        assert c.get_person("meta", "ok")["metadata"]["tags"] == [1, 2.5]
        assert [p["name"] for p in c.list_persons("meta")] == ["ok"]


def test_the_store_bounds_metadata_for_every_front(service: FaceService) -> None:
    """The CLI and the library go through the same check as the API."""
    service.create_collection("m", require_consent=False)
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(50):
        node["a"] = {}
        node = node["a"]
    for bad in ({"x": float("nan")}, deep, {"k": list(range(2000))}):
        with pytest.raises(InvalidArgument):
            service.create_person("m", "p", metadata=bad)
    assert service.store.list_persons("m") == []
    service.create_person("m", "p", metadata={"ok": True})
    with pytest.raises(InvalidArgument):
        service.update_person("m", "p", metadata={"x": float("inf")})
    assert service.store.get_person("m", "p").metadata == {"ok": True}


@pytest.mark.slow
def test_one_owner_per_data_folder(tmp_path: Path) -> None:
    """Finding 5: a second serve on one folder started without complaint (and disagreed)."""
    data = tmp_path / "data"
    srv = start_server(data, FACELEDGER_RATE_LIMIT="0")
    cli = [sys.executable, "-m", "faceledger", "--data", str(data)]
    try:
        second = subprocess.run(
            [*cli, "serve", "--port", "1"], capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 6, second.stderr
        assert "in use by another faceledger process" in second.stderr
        writer = subprocess.run(
            [*cli, "collection", "create", "x", "--json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert writer.returncode == 6, writer.stdout + writer.stderr
        assert "serve" in writer.stdout + writer.stderr  # names the owner
        assert srv.proc.poll() is None
        with srv.client() as c:
            assert c.list_collections() == []
    finally:
        stop_server(srv)
    after = subprocess.run(
        [*cli, "collection", "create", "x", "--json"], capture_output=True, text=True, timeout=120
    )
    assert after.returncode == 0, after.stderr


@pytest.mark.slow
def test_unauthenticated_floods_are_rate_limited_by_address(tmp_path: Path) -> None:
    """Finding 8: 300 requests with no key or a wrong key were never rate limited; and a key
    revoked by another process kept working for ever (the key cache had no expiry)."""
    srv = start_server(tmp_path / "data", FACELEDGER_RATE_LIMIT="1", FACELEDGER_RATE_BURST="5")
    try:
        statuses = []
        for i in range(40):
            headers = {"X-API-Key": "fl_wrong_key"} if i % 2 else {}
            r = httpx.get(f"{srv.url}/v1/collections", headers=headers, timeout=30)
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert r.json()["code"] == "rate_limited"
                assert int(r.headers["Retry-After"]) >= 1
        assert set(statuses) == {401, 429} and statuses.count(429) >= 10, statuses
        with srv.client() as admin:  # a client with a key has its own bucket
            assert admin.list_collections() == []
            searcher = admin.create_key("searcher")
        r = httpx.get(f"{srv.url}/v1/collections", headers={"X-API-Key": searcher["key"]})
        assert r.status_code == 200, r.text
        # another process revokes the key in the database: it stops working within the TTL
        with srv.database().begin() as conn:
            conn.execute(
                sqlalchemy.text("UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP WHERE id = :i"),
                {"i": searcher["id"]},
            )
        time.sleep(6)
        r = httpx.get(f"{srv.url}/v1/collections", headers={"X-API-Key": searcher["key"]})
        assert r.status_code == 401, r.text
    finally:
        stop_server(srv)


def _upside_down(path: Path) -> bytes:
    out = io.BytesIO()
    Image.open(path).convert("RGB").rotate(180).save(out, "JPEG", quality=92)
    return out.getvalue()


def test_an_upside_down_face_is_refused_for_enrolment(server: Server, faces_dir: Path) -> None:
    """Finding 9: an upside-down face graded high and was enrolled (similarity to the upright
    photo -0.03: a face that matches nobody, itself included)."""
    photo = faces_dir / "deepface_tests" / "identities" / "person01_angelina_jolie" / "img1.jpg"
    with server.client() as c:
        c.create_collection("turned", require_consent=False)
        c.create_person("turned", "p")
        with pytest.raises(QualityTooLow):
            c.enroll("turned", "p", _upside_down(photo))
        assert c.get_person("turned", "p")["face_count"] == 0
        c.enroll("turned", "p", photo)  # the same photo upright is accepted
        assert c.get_person("turned", "p")["face_count"] == 1


@pytest.mark.slow
def test_kill_9_during_queued_video_jobs_leaves_no_orphan(tmp_path: Path, faces_dir: Path) -> None:
    """Finding 4: after a kill -9, uploads stayed in DATA/tmp for ever and queued jobs 404'd."""
    data = tmp_path / "data"
    srv = start_server(data, FACELEDGER_RATE_LIMIT="0")
    video = faces_dir / "intel_sample_videos" / "mp4_from_gif" / "face-demographics-walking.mp4"
    with srv.client() as c:
        c.create_collection("v", require_consent=False)
    h = {"X-API-Key": srv.admin_key}
    jobs = []
    for _ in range(4):
        r = httpx.post(
            f"{srv.url}/v1/videos?collection=v&purpose=restart+test",
            content=video.read_bytes(),
            headers=h,
            timeout=60,
        )
        assert r.status_code == 202, r.text
        jobs.append(r.json()["job"])
    # what a dying upload and a lost job leave behind
    (data / "tmp").mkdir(exist_ok=True)
    (data / "tmp" / "video-half.upload").write_bytes(b"\x00" * 100_000)
    (data / "jobs" / "0123456789abcdef0123456789abcdef.video").write_bytes(b"\x00" * 100_000)
    srv.proc.kill()  # kill -9
    srv.proc.wait(timeout=30)
    srv = start_server(data, FACELEDGER_RATE_LIMIT="0")
    try:
        assert [p for p in (data / "tmp").iterdir()] == []
        uploads = {p.name for p in (data / "jobs").glob("*.video")}
        assert "0123456789abcdef0123456789abcdef.video" not in uploads
        for job in jobs:
            r = httpx.get(f"{srv.url}/v1/videos/{job}", headers=h, timeout=30)
            assert r.status_code == 200, r.text
            state = r.json()["status"]
            assert state in {"queued", "running", "done", "failed", "interrupted"}, state
            if state in {"queued", "running", "interrupted"}:  # resumable: its video is kept
                assert f"{job}.video" in uploads, (job, state)
        assert uploads <= {f"{job}.video" for job in jobs}
    finally:
        stop_server(srv)


@pytest.mark.slow
def test_video_queue_is_capped_per_key(tmp_path: Path, faces_dir: Path) -> None:
    """Finding 4: 40 uploads from one key were all accepted and queued."""
    srv = start_server(
        tmp_path / "data", FACELEDGER_RATE_LIMIT="0", FACELEDGER_MAX_QUEUED_VIDEOS="2"
    )
    video = faces_dir / "intel_sample_videos" / "mp4_from_gif" / "face-demographics-walking.mp4"
    try:
        with srv.client() as c:
            c.create_collection("v", require_consent=False)
            one, other = (c.create_key("searcher")["key"] for _ in range(2))
        url = f"{srv.url}/v1/videos?collection=v&purpose=queue+test"
        statuses = []
        for _ in range(5):
            r = httpx.post(url, content=video.read_bytes(), headers={"X-API-Key": one}, timeout=60)
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert r.json()["code"] == "rate_limited"
                assert int(r.headers["Retry-After"]) >= 1
        assert set(statuses) == {202, 429} and statuses[:2] == [202, 202], statuses
        r = httpx.post(url, content=video.read_bytes(), headers={"X-API-Key": other}, timeout=60)
        assert r.status_code == 202  # the cap is per key
        assert [p for p in (srv.data / "tmp").iterdir()] == []  # refused uploads are not kept
    finally:
        stop_server(srv)


def _huge_mjpeg(path: Path, side: int = 12000) -> Path:
    """Two grey ``side`` x ``side`` MJPEG frames in Matroska: a few MB on disk."""
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("mjpeg", rate=1)
        stream.width = stream.height = side
        stream.pix_fmt = "yuvj420p"
        grey = np.full((side * 3 // 2, side), 128, np.uint8)
        frame = av.VideoFrame.from_ndarray(grey, format="yuv420p").reformat(format="yuvj420p")
        for pts in range(2):
            frame.pts = pts
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.mark.slow
def test_video_caps_and_the_upload_disk_quota(tmp_path: Path, faces_dir: Path) -> None:
    """Finding 3-4: a 12000x12000 MJPEG video was accepted, and uploads filled the disk."""
    quota = 8_000_000
    srv = start_server(
        tmp_path / "data",
        FACELEDGER_RATE_LIMIT="0",
        FACELEDGER_MAX_VIDEO_SECONDS="2",
        FACELEDGER_MAX_UPLOAD_DISK_BYTES=str(quota),
    )
    walking = faces_dir / "intel_sample_videos" / "mp4_from_gif" / "face-demographics-walking.mp4"
    huge = _huge_mjpeg(tmp_path / "huge.mkv")
    try:
        with srv.client() as c:
            c.create_collection("v", require_consent=False)
        url = f"{srv.url}/v1/videos?collection=v&purpose=caps+test"
        h = {"X-API-Key": srv.admin_key}

        def post(body: Any) -> httpx.Response:
            return httpx.post(url, content=body, headers=h, timeout=120)

        r = post(huge.read_bytes())  # 2.0 s, under the duration cap: refused for its size
        assert r.status_code == 413, r.text
        assert r.json()["code"] == "video_too_large" and "12000x12000" in r.json()["detail"]
        r = post(walking.read_bytes())  # 480x270 but 2.9 s, over MAX_VIDEO_SECONDS=2
        assert r.status_code == 413 and r.json()["max_seconds"] == 2, r.text
        assert httpx.get(f"{srv.url}/v1/videos", headers=h).json() == []  # nothing queued
        # the quota: declared too big, then streamed too big (no Content-Length)
        r = post(os.urandom(quota + 1))
        assert r.status_code == 507 and r.json()["code"] == "storage_full", r.text
        assert int(r.headers["Retry-After"]) >= 1
        r = post(iter([b"\x00" * 1_000_000] * 9))
        assert r.status_code == 507, r.text
        # kept uploads count: 5 MB held for jobs leaves no room for 4 MB more
        (srv.data / "jobs" / "held.video").write_bytes(b"\x00" * 5_000_000)
        assert post(os.urandom(4_000_000)).status_code == 507
        (srv.data / "jobs" / "held.video").unlink()
        # two uploads at once: one that started first still sees what the other writes
        tmp = srv.data / "tmp"
        gates = [threading.Event(), threading.Event()]

        def slow(before: int, gate: threading.Event, after: int) -> Iterator[bytes]:
            yield from [b"\x00" * 1_000_000] * before
            gate.wait(60)
            yield from [b"\x00" * 1_000_000] * after

        def held_at_least(size: int) -> None:
            deadline = time.monotonic() + 60
            while sum(p.stat().st_size for p in tmp.iterdir()) < size:
                assert time.monotonic() < deadline, "the upload never arrived"
                time.sleep(0.1)

        answers: dict[str, httpx.Response] = {}
        senders = [
            threading.Thread(target=lambda: answers.update(early=post(slow(1, gates[0], 4)))),
            threading.Thread(target=lambda: answers.update(late=post(slow(5, gates[1], 0)))),
        ]
        senders[0].start()
        held_at_least(1_000_000)
        senders[1].start()
        held_at_least(6_000_000)
        gates[0].set()  # the early one goes on: 5 MB of the other + its 5 MB > 8 MB
        senders[0].join(60)
        gates[1].set()
        senders[1].join(60)
        assert answers["early"].status_code == 507, answers["early"].text
        assert answers["late"].status_code == 202, answers["late"].text  # fits: queued
        assert [p for p in tmp.iterdir()] == []
    finally:
        stop_server(srv)


def test_index_video_checks_the_caps_before_decoding(engine: Engine, tmp_path: Path) -> None:
    """The library path (CLI, jobs) refuses from the headers too: the caps are options."""
    huge = _huge_mjpeg(tmp_path / "huge.mkv")
    options = IndexOptions(speech=False, ocr=False, max_pixels=3840 * 2160)
    with pytest.raises(VideoTooLarge, match="12000x12000") as caught:
        index_video(huge, engine=engine, collection="c", identify=lambda _: [], options=options)
    assert caught.value.http_status == 413 and caught.value.code == "video_too_large"
    with pytest.raises(VideoTooLarge, match="over the cap of 1 s"):
        options = IndexOptions(speech=False, ocr=False, max_seconds=1)
        index_video(huge, engine=engine, collection="c", identify=lambda _: [], options=options)


def test_a_stream_without_a_stated_duration_stops_at_the_cap(tmp_path: Path) -> None:
    """A raw MJPEG stream states no duration: reading stops at ``max_seconds`` instead."""
    path = tmp_path / "raw.mjpeg"
    with av.open(str(path), "w", format="mjpeg") as out:
        stream = out.add_stream("mjpeg", rate=25)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuvj420p"
        grey = np.full((96, 64), 128, np.uint8)
        frame = av.VideoFrame.from_ndarray(grey, format="yuv420p").reformat(format="yuvj420p")
        for pts in range(25):
            frame.pts = pts
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    assert probe_streams(path).duration is None
    with VideoReader(path, fps=None, max_seconds=0.5) as reader:
        times = [f.time for f in reader]
    assert reader.error is not None and "cap of 0.5 s" in reader.error.message
    assert 0.5 < times[-1] < 0.6 and len(times) < 25
