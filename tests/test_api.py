"""The HTTP service, run as a real server process on a loopback port, driven by the client."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy

from faceledger import Client
from faceledger.errors import Forbidden, NotFound, PurposeRequired, Unauthenticated

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    data: Path
    admin_key: str
    proc: subprocess.Popen[bytes]
    db_url: str | None = None
    """The server's database (None: SQLite in ``data``)."""

    def database(self) -> sqlalchemy.Engine:
        """A second connection to the server's database, for checking what it stored."""
        return sqlalchemy.create_engine(self.db_url or f"sqlite:///{self.data / 'faceledger.db'}")

    def client(self, key: str | None = None) -> Client:
        return Client(self.url, key or self.admin_key)


def start_server(data: Path, **env: str) -> Server:
    port = free_port()
    log = (data.parent / f"server-{port}.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "faceledger",
            "serve",
            "--data",
            str(data),
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**__import__("os").environ, **env},
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("server did not start")
    key_file = data / "admin.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    db_url = env.get("FACELEDGER_DB_URL", __import__("os").environ.get("FACELEDGER_DB_URL"))
    return Server(url, data, key_file.read_text().strip(), proc, db_url)


def stop_server(server: Server) -> None:
    server.proc.terminate()
    server.proc.wait(timeout=30)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server on each store in turn (SQLite in its data folder, then PostgreSQL)."""
    data = tmp_path_factory.mktemp("api") / "data"
    env = {"FACELEDGER_RETENTION_SWEEP_SECONDS": "1", "FACELEDGER_RATE_LIMIT": "0"}
    if request.param == "postgres":
        env["FACELEDGER_DB_URL"] = request.getfixturevalue("postgres").new_database()
    srv = start_server(data, **env)
    yield srv
    stop_server(srv)


def test_full_flow(server: Server, faces_dir: Path) -> None:
    bbt = faces_dir / "faceapi_bbt"
    with server.client() as admin:
        admin.create_collection("bbt")
        enroller = admin.create_key("enroller")["key"]
        searcher = admin.create_key("searcher")["key"]
    with server.client(enroller) as c:
        for person_dir in sorted((bbt / "identities").iterdir()):
            c.create_person("bbt", person_dir.name, consent=f"consent-{person_dir.name}")
            for image in sorted(person_dir.iterdir())[:4]:
                c.enroll("bbt", person_dir.name, image)
        assert len(c.list_persons("bbt")) == 8
    with server.client(searcher) as c:
        found: dict[str, set[str]] = {}
        for image in sorted((bbt / "group").glob("bbt*.jpg")):
            result = c.identify("bbt", image, purpose="integration test", case="T-1")
            assert result["faces"], image
            found[image.name] = {
                f["candidates"][0]["person"] for f in result["faces"] if f["candidates"]
            }
            for face in result["faces"]:
                for cand in face["candidates"]:
                    assert cand["fmr"] <= 1e-4 and cand["similarity"] >= result["threshold"]
        assert "sheldon" in found["bbt1.jpg"]
        for person_dir in sorted((bbt / "identities").iterdir()):  # the held-out 5th crop
            held_out = sorted(person_dir.iterdir())[4]
            [face] = c.identify("bbt", held_out, purpose="integration test")["faces"]
            assert face["candidates"], held_out
            assert face["candidates"][0]["person"] == person_dir.name, (held_out, face)
        # a gallery target: 8 persons at an expected FPIR of 1e-3 each get a stricter rate
        strict = c.identify("bbt", bbt / "group" / "bbt1.jpg", purpose="test", max_fpir=1e-3)
        assert strict["gallery"]["persons"] == 8 and strict["gallery"]["max_fpir"] == 1e-3
        assert strict["gallery"]["fpir"] <= 1e-3 and strict["max_fmr"] < 1.3e-4
        assert strict["max_fmr"] == strict["gallery"]["max_fmr"]
        assert strict["gallery"]["max_fmr_for_fpir"]["0.001"] == strict["max_fmr"]
        assert result["gallery"]["max_fmr"] == 1e-4  # the default per-person rate
        similar = c.similar("bbt", bbt / "identities" / "sheldon" / "sheldon5.png", purpose="test")
        assert similar["similar"][0]["person"] == "sheldon"
    with server.client(enroller) as c:
        c.delete_person("bbt", "sheldon")
    with server.client(searcher) as c:
        for image in sorted((bbt / "group").glob("bbt*.jpg")):
            result = c.identify("bbt", image, purpose="after erasure")
            assert all(
                cand["person"] != "sheldon" for f in result["faces"] for cand in f["candidates"]
            )
    with server.client() as admin:
        report = admin.audit_verify()
        assert report["ok"], report


def test_every_search_leaves_one_entry_with_its_purpose(server: Server, faces_dir: Path) -> None:
    image = faces_dir / "faceapi_bbt" / "identities" / "amy" / "amy1.png"
    with server.client() as admin:
        admin.create_collection("ledger-test", require_consent=False)
        admin.create_person("ledger-test", "amy")
        admin.enroll("ledger-test", "amy", image)
        auditor = admin.create_key("auditor")["key"]
        before = admin.audit(limit=1000)["entries"]
        admin.identify("ledger-test", image, purpose="purpose-identify")
        admin.similar("ledger-test", image, purpose="purpose-similar")
        admin.verify("ledger-test", image, "amy", purpose="purpose-verify")
        with pytest.raises(PurposeRequired):
            admin.identify("ledger-test", image, purpose="")
    with server.client(auditor) as aud:
        after = aud.audit(after=before[-1]["seq"], limit=1000)["entries"]
    searches = [e for e in after if e["operation"] in ("identify", "similar", "verify")]
    assert [(e["operation"], e["purpose"]) for e in searches] == [
        ("identify", "purpose-identify"),
        ("similar", "purpose-similar"),
        ("verify", "purpose-verify"),
    ]
    import hashlib

    assert searches[0]["image_sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
    # the ledger names persons by pseudonym, never by name
    amy = admin_person_pseudonym(server, "ledger-test", "amy")
    assert searches[0]["result"]["faces"][0][0]["person"] == amy
    assert searches[2]["request"]["person"] == amy
    assert "amy" not in json.dumps(searches)
    # each records how it decided: model, calibration, threshold; identify its gallery
    with server.client() as admin:
        col = admin.get_collection("ledger-test")
        for e in searches:
            assert e["request"]["model_id"] == col["model_id"]
            assert e["request"]["calibration_id"].startswith("cal-")
            assert 0 < e["request"]["threshold"] < 1
        assert searches[0]["request"]["persons"] == 1 and searches[0]["request"]["fpir"] > 0
        # a collection's calibration changes only on request, by an admin, and is audited
        shipped = searches[0]["request"]["calibration_id"]
        with pytest.raises(NotFound):
            admin.use_calibration("ledger-test", "cal-0000000000000000")
        assert admin.use_calibration("ledger-test", shipped)["calibration_id"] is None
        [moved] = admin.audit(operation="collection.calibration")["entries"]
        assert moved["request"] == {"from": shipped, "to": shipped}


def admin_person_pseudonym(server: Server, collection: str, person: str) -> str:
    with server.client() as admin:
        return str(admin.get_person(collection, person)["pseudonym"])


ROUTES: list[tuple[str, str, set[str]]] = [
    ("POST", "/v1/collections", {"admin"}),
    ("GET", "/v1/collections", {"admin", "enroller", "searcher", "auditor"}),
    ("DELETE", "/v1/collections/authz-gone", {"admin"}),
    ("POST", "/v1/collections/authz/persons", {"admin", "enroller"}),
    ("GET", "/v1/collections/authz/persons", {"admin", "enroller"}),
    ("GET", "/v1/collections/authz/persons/p0", {"admin", "enroller"}),
    ("PATCH", "/v1/collections/authz/persons/p0", {"admin", "enroller"}),
    ("POST", "/v1/collections/authz/persons/p0/faces", {"admin", "enroller"}),
    ("GET", "/v1/collections/authz/persons/p0/faces", {"admin", "enroller"}),
    ("GET", "/v1/collections/authz/persons/p0/export", {"admin"}),
    ("DELETE", "/v1/collections/authz/persons/{victim}", {"admin", "enroller"}),
    ("POST", "/v1/detect", {"admin", "searcher"}),
    ("POST", "/v1/verify", {"admin", "searcher"}),
    ("POST", "/v1/collections/authz/identify", {"admin", "searcher"}),
    ("POST", "/v1/collections/authz/similar", {"admin", "searcher"}),
    ("POST", "/v1/group", {"admin", "searcher"}),
    ("GET", "/v1/audit", {"admin", "auditor"}),
    ("GET", "/v1/audit/verify", {"admin", "auditor"}),
    ("GET", "/v1/audit/export", {"admin", "auditor"}),
    ("POST", "/v1/keys", {"admin"}),
    ("GET", "/v1/keys", {"admin"}),
    ("GET", "/metrics", {"admin", "auditor"}),
]


def test_authorisation_matrix(server: Server, faces_dir: Path) -> None:
    image = (faces_dir / "faceapi_bbt" / "identities" / "amy" / "amy1.png").read_bytes()
    with server.client() as admin:
        admin.create_collection("authz", require_consent=False)
        admin.create_person("authz", "p0")
        keys = {role: admin.create_key(role)["key"] for role in ("enroller", "searcher", "auditor")}
    keys["admin"] = server.admin_key
    counter = iter(range(10_000))

    def call(method: str, path: str, key: str | None) -> int:
        n = next(counter)
        path = path.replace("{victim}", f"victim{n}")
        headers = {"X-API-Key": key} if key is not None else {}
        params: dict[str, str] = {"purpose": "authz test"}
        kwargs: dict[str, object] = {}
        if path == "/v1/collections" and method == "POST":
            kwargs["json"] = {"name": f"authz-new-{n}", "require_consent": False}
        elif path.endswith("/persons") and method == "POST":
            kwargs["json"] = {"name": f"new{n}"}
        elif method == "PATCH":
            kwargs["json"] = {"metadata": {"n": n}}
        elif path == "/v1/keys" and method == "POST":
            kwargs["json"] = {"role": "auditor"}
        elif path == "/v1/verify":
            kwargs["files"] = {"image": ("a", image), "other": ("b", image)}
        elif path == "/v1/group":
            kwargs["files"] = [("images", ("a", image))]
        elif method == "POST":
            kwargs["content"] = image
            if path.endswith("/faces"):  # each role enrols the same image: not a duplicate refusal
                params["allow_duplicates"] = "true"
        if "victim" in path:
            httpx.post(
                f"{server.url}/v1/collections/authz/persons",
                json={"name": f"victim{n}"},
                headers={"X-API-Key": server.admin_key},
            )
        if path.endswith("authz-gone"):
            httpx.post(
                f"{server.url}/v1/collections",
                json={"name": "authz-gone", "require_consent": False},
                headers={"X-API-Key": server.admin_key},
            )
        return httpx.request(
            method, f"{server.url}{path}", headers=headers, params=params, timeout=60, **kwargs
        ).status_code  # type: ignore[arg-type]

    failures = []
    for method, path, allowed in ROUTES:
        for who, key in [("nobody", None), ("wrong", "fl_wrong_key"), *keys.items()]:
            status = call(method, path, key)
            ok = who in allowed
            if who in ("nobody", "wrong"):
                good = status == 401
            else:
                good = (200 <= status < 300) if ok else status == 403
            if not good:
                failures.append((method, path, who, status))
    assert failures == []
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_bad_images_get_problem_responses(server: Server, faces_dir: Path) -> None:
    data = (faces_dir / "insightface_pkg" / "group" / "t1.jpg").read_bytes()
    headers = {"X-API-Key": server.admin_key}
    cases = {
        "truncated": (data[: len(data) // 3], 422, "corrupt_image"),
        "wrong type": (b"%PDF-1.4 not an image", 415, "unsupported_format"),
        "zero bytes": (b"", 422, "invalid_argument"),
        "50 MB": (b"\xff\xd8\xff" + bytes(50 * 1024 * 1024), 413, "image_too_large"),
        "bomb": (bomb_png(30000, 30000), 413, "image_too_large"),
        "no face": ((faces_dir / "faceapi_bbt/test_images/white.png").read_bytes(), 200, None),
    }
    for name, (body, status, code) in cases.items():
        r = httpx.post(f"{server.url}/v1/detect", content=body, headers=headers, timeout=60)
        assert r.status_code == status, (name, r.status_code, r.text[:200])
        if code:
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["code"] == code, name
    with server.client() as admin:
        admin.create_collection("bad", require_consent=False)
        admin.create_person("bad", "x")
        r = httpx.post(
            f"{server.url}/v1/collections/bad/persons/x/faces",
            content=(faces_dir / "faceapi_bbt/test_images/white.png").read_bytes(),
            headers=headers,
        )
        assert r.status_code == 422 and r.json()["code"] == "no_face"
        with pytest.raises(NotFound):
            admin.get_person("bad", "nobody")


def bomb_png(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b"")
    )


def test_retention_erases_expired_person(server: Server, faces_dir: Path) -> None:
    image = faces_dir / "faceapi_bbt" / "identities" / "penny" / "penny1.png"
    with server.client() as admin:
        admin.create_collection("retention")
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        admin.create_person("retention", "penny", consent="c", retain_until=later)
        admin.enroll("retention", "penny", image)
        assert admin.identify("retention", image, purpose="before expiry")["faces"][0]["candidates"]
        penny = admin.get_person("retention", "penny")["pseudonym"]
        # the date moves close only now: under load enrolment and the first identify could
        # outlast a date set two seconds ahead at creation
        soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        admin.update_person("retention", "penny", retain_until=soon)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                admin.get_person("retention", "penny")
            except NotFound:
                break
            time.sleep(0.5)
        else:
            pytest.fail("expired person was not erased")
        assert (
            admin.identify("retention", image, purpose="after expiry")["faces"][0]["candidates"]
            == []
        )
        erasures = admin.audit(operation="person.delete", limit=1000)["entries"]
        assert any(
            e["request"]["person"] == penny and e["request"]["reason"] == "retention expired"
            for e in erasures
        )
    engine = server.database()
    with engine.connect() as db:
        query = (
            "select count(*) from persons"
            " join collections on collections.id = persons.collection_id"
            " where persons.name = 'penny' and collections.name = 'retention'"
        )
        assert db.scalar(sqlalchemy.text(query)) == 0
        orphans = "select count(*) from faces where person_id not in (select id from persons)"
        assert db.scalar(sqlalchemy.text(orphans)) == 0
    engine.dispose()


def test_unauthenticated_client_errors(server: Server) -> None:
    with Client(server.url, "nope") as c, pytest.raises(Unauthenticated):
        c.audit()
    with server.client() as admin:
        key = admin.create_key("auditor")["key"]
    with Client(server.url, key) as c, pytest.raises(Forbidden):
        c.create_collection("nope")


@pytest.mark.parametrize("tamper", ["edit", "delete", "swap"])
def test_ledger_tampering_is_detected(tmp_path: Path, faces_dir: Path, tamper: str) -> None:
    from faceledger.config import Settings
    from faceledger.service import FaceService

    svc = FaceService(Settings(data=tmp_path / "d"))
    svc.create_collection("c", require_consent=False)
    image = str(faces_dir / "faceapi_bbt" / "identities" / "amy" / "amy1.png")
    svc.enroll("c", "amy", [image])
    for i in range(3):
        svc.identify("c", image, purpose=f"p{i}")
    assert svc.ledger.verify()["ok"]
    svc.close()
    with sqlite3.connect(tmp_path / "d" / "faceledger.db") as db:
        if tamper == "edit":  # change one byte of one stored entry
            purpose = db.execute("select purpose from audit_log where seq=4").fetchone()[0]
            db.execute("update audit_log set purpose=? where seq=4", (purpose[:-1] + "X",))
        elif tamper == "delete":
            db.execute("delete from audit_log where seq=3")
        else:
            cols = "ts, operation, purpose, request, result, prev_hash, entry_hash, seal"
            a = db.execute(f"select {cols} from audit_log where seq=3").fetchone()
            b = db.execute(f"select {cols} from audit_log where seq=4").fetchone()
            sets = ", ".join(f"{c.strip()}=?" for c in cols.split(","))
            db.execute(f"update audit_log set {sets} where seq=3", b)
            db.execute(f"update audit_log set {sets} where seq=4", a)
    svc = FaceService(Settings(data=tmp_path / "d"))
    report = svc.ledger.verify()
    svc.close()
    assert not report["ok"] and report["problems"]


def test_ledger_truncation_is_detected(tmp_path: Path) -> None:
    from faceledger.config import Settings
    from faceledger.service import FaceService

    svc = FaceService(Settings(data=tmp_path / "d"))
    svc.create_collection("a", require_consent=False)
    svc.create_collection("b", require_consent=False)
    svc.close()
    with sqlite3.connect(tmp_path / "d" / "faceledger.db") as db:
        db.execute("delete from audit_log where seq=(select max(seq) from audit_log)")
    svc = FaceService(Settings(data=tmp_path / "d"))
    assert not svc.ledger.verify()["ok"]
    svc.close()


def test_openapi_and_docs(server: Server) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    for path in (
        "/v1/collections",
        "/v1/collections/{collection}/identify",
        "/v1/audit/verify",
        "/v1/keys",
    ):
        assert path in spec["paths"]
    assert httpx.get(f"{server.url}/docs").status_code == 200
