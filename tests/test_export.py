"""A subject access export holds everything stored about a person (#12), provably.

On a real data folder behind the HTTP app, on SQLite and on PostgreSQL (where the ledger's
JSON is searched as text too): the exported embeddings are the stored bytes,
the enrolled images come back, and every ledger entry naming the person's pseudonym is
there with an inclusion proof that a few lines of RFC 9162 hashing here check against
the signed checkpoint (and that fail when one byte changes). The export is itself
recorded in the ledger; the CLI prints the same document.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from faceledger.api.app import ADMIN_KEY_FILE, create_app
from faceledger.cli.main import app as cli_app
from faceledger.config import Settings
from faceledger.store.media import MediaStore, NewMediaIndex, NewSegment
from tests.test_ledger_proofs import check_note

pytestmark = pytest.mark.integration

BBT = Path("faceapi_bbt/identities")
FIELDS = (  # the ledger entry's hashed fields (README "How to check us")
    "seq", "ts", "key_id", "role", "actor", "operation", "collection", "purpose",
    "case_ref", "image_sha256", "request", "result", "prev_hash",
)  # fmt: skip


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf_of(entry: dict[str, Any]) -> bytes:
    """RFC 9162 leaf hash of a ledger entry: SHA-256(0x00 || SHA-256(canonical JSON))."""
    body = json.dumps({k: entry[k] for k in FIELDS}, sort_keys=True, separators=(",", ":"))
    return sha256(b"\x00" + sha256(body.encode()))


def included(leaf: bytes, index: int, size: int, path: list[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2, step by step."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = sha256(b"\x01" + p + r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = sha256(b"\x01" + r + p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


@dataclass
class Api:
    client: TestClient
    data: Path
    headers: dict[str, str]
    db_url: str | None
    """None: SQLite in ``data``."""

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, headers=self.headers, params=params)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, faces_dir: Path
) -> Iterator[Api]:
    """The HTTP app on each store in turn, with amy (two faces, found once) and raj."""
    data = tmp_path_factory.mktemp("export") / "data"
    db_url = (
        None if request.param == "sqlite" else request.getfixturevalue("postgres").new_database()
    )
    settings = Settings(data=data, db_url=db_url, rate_limit=0, checkpoint_every_entries=0)
    with TestClient(create_app(settings)) as client:
        key = (data / ADMIN_KEY_FILE).read_text().strip()
        h = {"X-API-Key": key}

        def ok(response: Any) -> Any:
            assert response.status_code in (200, 201), response.text
            return response.json()

        ok(client.post("/v1/collections", json={"name": "c", "store_images": True}, headers=h))
        ok(
            client.post(
                "/v1/collections/c/persons",
                json={"name": "amy", "consent": "form-7", "retain_until": "2031-01-01T00:00:00Z"},
                headers=h,
            )
        )
        ok(
            client.post(
                "/v1/collections/c/persons", json={"name": "raj", "consent": "f-8"}, headers=h
            )
        )
        for person, images in (("amy", ["amy1.png", "amy2.png"]), ("raj", ["raj1.png"])):
            for name in images:
                body = (faces_dir / BBT / person / name).read_bytes()
                url = f"/v1/collections/c/persons/{person}/faces"
                ok(client.post(url, content=body, headers={**h, "Content-Type": "image/png"}))
        probe = (faces_dir / BBT / "amy" / "amy3.png").read_bytes()
        found = ok(
            client.post(
                "/v1/collections/c/identify",
                params={"purpose": "export test"},
                content=probe,
                headers={**h, "Content-Type": "image/png"},
            )
        )
        assert found["faces"][0]["candidates"][0]["person"] == "amy", found
        yield Api(client, data, h, db_url)


def stored_embeddings(api: Api, person: str) -> dict[int, bytes]:
    engine = sqlalchemy.create_engine(api.db_url or f"sqlite:///{api.data / 'faceledger.db'}")
    with engine.connect() as conn:
        rows = conn.execute(
            sqlalchemy.text(
                "SELECT f.id, f.embedding FROM faces f JOIN persons p ON p.id = f.person_id"
                " WHERE p.name = :name"
            ),
            {"name": person},
        ).all()
    engine.dispose()
    return {int(r[0]): bytes(r[1]) for r in rows}


def test_export_holds_everything_stored(api: Api, faces_dir: Path) -> None:
    doc = api.get("/v1/collections/c/persons/amy/export")
    person = doc["person"]
    assert (person["name"], person["consent"]) == ("amy", "form-7")
    assert person["retain_until"].startswith("2031-01-01")
    collection = api.get("/v1/collections/c")
    assert doc["model"]["model_id"] == collection["model_id"]
    assert doc["model"]["dimension"] == collection["embedding_dim"]
    stored = stored_embeddings(api, "amy")
    assert sorted(f["id"] for f in doc["faces"]) == sorted(stored) and len(stored) == 2
    files = [(faces_dir / BBT / "amy" / n).read_bytes() for n in ("amy1.png", "amy2.png")]
    enrolled = {hashlib.sha256(b).hexdigest(): b for b in files}
    for face in doc["faces"]:
        raw = base64.b64decode(face["embedding"])
        assert raw == stored[face["id"]]  # the very bytes stored
        vector = np.frombuffer(raw, dtype="<f4")
        assert vector.shape == (doc["model"]["dimension"],)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
        image = base64.b64decode(face["image"])
        assert image == enrolled[face["image_sha256"]]  # the enrolled file, byte for byte
        assert hashlib.sha256(image).hexdigest() == face["image_sha256"]
    assert sorted(enrolled) == sorted(f["image_sha256"] for f in doc["faces"])


def test_ledger_entries_about_the_person_come_with_proofs(api: Api) -> None:
    doc = api.get("/v1/collections/c/persons/amy/export")
    pseudonym = doc["person"]["pseudonym"]
    ops = [e["entry"]["operation"] for e in doc["ledger"]]
    assert ops[:4] == ["person.create", "face.enroll", "face.enroll", "identify"], ops
    assert all(pseudonym in json.dumps(e["entry"]) for e in doc["ledger"])
    raj = api.get("/v1/collections/c/persons/raj")["pseudonym"]
    assert not any(raj in json.dumps(e["entry"]) for e in doc["ledger"])  # only theirs
    identify = doc["ledger"][3]["entry"]
    assert identify["result"]["faces"][0][0]["person"] == pseudonym
    assert "amy" not in json.dumps([e["entry"] for e in doc["ledger"]])  # never by name

    pem = api.get("/v1/audit/public-key")["pem"]
    size, root = check_note(doc["checkpoint"]["note"], pem)  # signed by the service
    assert size >= max(e["seq"] for e in doc["ledger"])
    for proof in doc["ledger"]:
        assert (
            proof["tree_size"] == size and proof["checkpoint"]["note"] == doc["checkpoint"]["note"]
        )
        leaf, path = leaf_of(proof["entry"]), [bytes.fromhex(h) for h in proof["path"]]
        assert included(leaf, proof["seq"] - 1, size, path, root), proof["seq"]
        # one byte changed anywhere fails
        edited = {**proof["entry"], "purpose": (proof["entry"]["purpose"] or "") + "x"}
        assert not included(leaf_of(edited), proof["seq"] - 1, size, path, root)
        if path:
            bad = [path[0][:-1] + bytes([path[0][-1] ^ 1]), *path[1:]]
            assert not included(leaf, proof["seq"] - 1, size, bad, root)
        assert not included(leaf, proof["seq"] % size, size, path, root) or size == 1


def test_the_export_is_audited(api: Api) -> None:
    before = api.get("/v1/audit", operation="person.export")["entries"]
    first = api.get("/v1/collections/c/persons/amy/export")
    after = api.get("/v1/audit", operation="person.export")["entries"]
    assert len(after) == len(before) + 1
    entry = after[-1]
    assert entry["request"]["person"] == first["person"]["pseudonym"]
    assert entry["result"]["faces"] == 2
    second = api.get("/v1/collections/c/persons/amy/export")  # lists the first export
    assert entry["seq"] in [e["seq"] for e in second["ledger"]]
    assert second["ledger"][-1]["entry"]["operation"] == "person.export"
    missing = api.client.get("/v1/collections/c/persons/nobody/export", headers=api.headers)
    assert missing.status_code == 404


def test_cli_prints_the_same_export(api: Api, tmp_path: Path) -> None:
    # the API's app holds no lock (only `serve` does), so the CLI can read the folder
    out = tmp_path / "amy.json"
    store = [] if api.db_url is None else ["--db", api.db_url]
    result = CliRunner().invoke(
        cli_app,
        [
            "person",
            "export",
            "c",
            "amy",
            "--data",
            str(api.data),
            *store,
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["faces"] == 2 and summary["out"] == str(out)
    doc = json.loads(out.read_text())
    stored = stored_embeddings(api, "amy")
    assert {f["id"]: base64.b64decode(f["embedding"]) for f in doc["faces"]} == stored
    assert doc["ledger"][-1]["entry"]["operation"] == "person.export"
    assert doc["ledger"][-1]["entry"]["role"] == "local"
    assert summary["ledger_entries"] == len(doc["ledger"])
    printed = CliRunner().invoke(
        cli_app, ["person", "export", "c", "amy", "--data", str(api.data), *store]
    )
    assert printed.exit_code == 0, printed.output
    again = json.loads(printed.stdout)  # to stdout: the document itself, one entry longer
    assert again["faces"] == doc["faces"] and len(again["ledger"]) == len(doc["ledger"]) + 1
    assert out.stat().st_mode & 0o077 == 0  # biometric data: its owner's only


def test_export_lists_the_persons_media_appearances(api: Api) -> None:
    at = datetime.now(UTC)
    timeline = NewMediaIndex(
        video_sha256="e" * 64,
        file_name="town hall.mp4",
        duration=60.0,
        complete=True,
        segments=[
            NewSegment("person", 3.5, 9.0, person="amy"),
            NewSegment("person", 30.0, 41.25, person="amy"),
            NewSegment("person", 5.0, 6.0, person="raj"),
            NewSegment("person", 7.0, 8.0, label="unknown person 1"),
        ],
    )
    engine = sqlalchemy.create_engine(api.db_url or f"sqlite:///{api.data / 'faceledger.db'}")
    try:
        with engine.begin() as conn:
            MediaStore(engine).put(conn, "c", timeline, at)
    finally:
        engine.dispose()
    doc = api.get("/v1/collections/c/persons/amy/export")
    assert doc["media"] == [
        {"collection": "c", "video_sha256": "e" * 64, "file_name": "town hall.mp4",
         "start": 3.5, "end": 9.0},
        {"collection": "c", "video_sha256": "e" * 64, "file_name": "town hall.mp4",
         "start": 30.0, "end": 41.25},
    ]  # fmt: skip
    assert [m["start"] for m in api.get("/v1/collections/c/persons/raj/export")["media"]] == [5.0]
    entry = api.get("/v1/audit", operation="person.export")["entries"][-1]
    assert entry["result"]["media_intervals"] == 1  # raj's, the last export
