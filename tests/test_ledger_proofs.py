"""The ledger anyone can check: attacks on a real data folder, caught with no secret.

Each attack is made on a copy of one real data folder (faces enrolled and searched), the
way an insider with the database (and even ``ledger.key``) would; the operator then
exports the ledger, and an auditor runs ``faceledger audit verify`` in another process,
from another directory, with only the public key and the witness's checkpoint file (the
private signing key moved away first). Proofs are checked by an independent RFC 9162
implementation written here (transparency-dev's decomposition, not the RFC's loop the
ledger uses), and signatures by ``cryptography`` directly.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from alembic import command
from alembic.config import Config
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from typer.testing import CliRunner

from faceledger.api.app import ADMIN_KEY_FILE, create_app
from faceledger.cli.main import app as cli_app
from faceledger.config import Settings
from faceledger.ledger.keys import Role
from faceledger.ledger.notes import SIGNING_KEY_FILE
from faceledger.service import FaceService, local_actor
from faceledger.store.db import MIGRATIONS
from tests.test_api import start_server, stop_server

AMY = "faceapi_bbt/identities/amy"

# -- an independent RFC 9162 verifier ---------------------------------------------------------
FIELDS = (
    "seq",
    "ts",
    "key_id",
    "role",
    "actor",
    "operation",
    "collection",
    "purpose",
    "case_ref",
    "image_sha256",
    "request",
    "result",
    "prev_hash",
)


def sha(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def node(left: bytes, right: bytes) -> bytes:
    return sha(b"\x01" + left + right)


def entry_leaf(entry: dict[str, Any]) -> bytes:
    """SHA-256(0x00 || SHA-256(canonical entry JSON)), from the entry's fields alone."""
    body = json.dumps({k: entry[k] for k in FIELDS}, sort_keys=True, separators=(",", ":"))
    return sha(b"\x00" + sha(body.encode()))


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes]) -> bytes:
    inner = (index ^ (size - 1)).bit_length()
    assert len(proof) == inner + bin(index >> inner).count("1")
    h = leaf
    for i, p in enumerate(proof[:inner]):
        h = node(p, h) if index >> i & 1 else node(h, p)
    for p in proof[inner:]:
        h = node(p, h)
    return h


def consistent(size1: int, size2: int, proof: list[bytes], root1: bytes, root2: bytes) -> bool:
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length()
    border = bin((size1 - 1) >> inner).count("1")
    shift = (size1 & -size1).bit_length() - 1
    inner -= shift
    seed, start = (root1, 0) if size1 == 1 << shift else (proof[0], 1)
    if len(proof) != start + inner + border:
        return False
    rest, mask = proof[start:], (size1 - 1) >> shift
    h1 = h2 = seed
    for i, p in enumerate(rest[:inner]):
        if mask >> i & 1:
            h1, h2 = node(p, h1), node(p, h2)
        else:
            h2 = node(h2, p)
    for p in rest[inner:]:
        h1, h2 = node(p, h1), node(p, h2)
    return h1 == root1 and h2 == root2


def check_note(note: str, pem: str) -> tuple[int, bytes]:
    """Size and root of a signed checkpoint note, after checking its Ed25519 signature."""
    key = load_pem_public_key(pem.encode())
    assert isinstance(key, Ed25519PublicKey)
    body, _, sigs = note.partition("\n\n")
    sig = base64.b64decode(sigs.split()[2])[4:]
    key.verify(sig, (body + "\n").encode())  # raises InvalidSignature
    lines = body.split("\n")
    return int(lines[1]), base64.b64decode(lines[2])


def flip(h: bytes) -> bytes:
    return h[:-1] + bytes([h[-1] ^ 1])


# -- a real data folder ---------------------------------------------------------------------


@dataclass
class Folder:
    """A data folder, its signing key kept elsewhere, a witness file and an older copy."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def db(self) -> Path:
        return self.data / "faceledger.db"

    @property
    def key(self) -> Path:
        return self.root / "secrets" / "signing.key"

    @property
    def witness(self) -> Path:
        return self.root / "witness" / "checkpoints.jsonl"

    @property
    def older(self) -> Path:
        return self.root / "older.db"

    def env(self) -> dict[str, str]:
        return {
            "FACELEDGER_DATA": str(self.data),
            "FACELEDGER_SIGNING_KEY_FILE": str(self.key),
            "FACELEDGER_WITNESS_FILES": json.dumps([str(self.witness)]),
            "FACELEDGER_CHECKPOINT_EVERY_ENTRIES": "3",
        }

    def service(self) -> FaceService:
        with pytest.MonkeyPatch.context() as mp:
            for name, value in self.env().items():
                mp.setenv(name, value)
            return FaceService(Settings(data=self.data))


def identify(svc: FaceService, faces: Path, purpose: str) -> None:
    svc.identify("c", str(faces / AMY / "amy2.png"), purpose=purpose, actor=local_actor())


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Folder:
    folder = Folder(tmp_path_factory.mktemp("ledger") / "golden")
    folder.witness.parent.mkdir(parents=True)
    svc = folder.service()
    svc.create_collection("c", require_consent=False, actor=local_actor())
    svc.enroll("c", "amy", [str(faces_dir / AMY / "amy1.png")], actor=local_actor())
    for i in range(3):
        identify(svc, faces_dir, f"case {i}")
    svc.ledger.checkpoint()
    svc.close()
    shutil.copy(folder.db, folder.older)  # a backup the insider will restore later
    svc = folder.service()
    for i in range(3, 6):
        identify(svc, faces_dir, f"case {i}")
    svc.create_key(Role.AUDITOR, name="auditor", actor=local_actor())
    svc.ledger.checkpoint()
    svc.close()
    return folder


@pytest.fixture
def folder(golden: Folder, tmp_path: Path) -> Folder:
    copy = Folder(tmp_path / "copy")
    shutil.copytree(golden.root, copy.root)
    return copy


def cli(folder: Folder, *args: str) -> str:
    """An operator's command, run in this process with the folder's settings."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in folder.env().items():
            mp.setenv(name, value)
        result = CliRunner().invoke(cli_app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def auditor_verify(folder: Folder, *, data: bool = False, witnessed: bool = True) -> dict[str, Any]:
    """``faceledger audit verify`` as an outsider: another process and directory, no secret.

    The operator exports the ledger and publishes the public key; the signing key is then
    moved out of reach, and the auditor's process sees neither it nor the data folder's
    ``ledger.key`` (only, with ``data``, a copy of the database and head file).
    """
    desk = folder.root.parent / "auditor"
    desk.mkdir()
    (desk / "ledger.pub").write_text(cli(folder, "audit", "public-key"))
    cli(folder, "audit", "export", "--out", str(desk / "ledger.jsonl"))
    if witnessed:
        shutil.copy(folder.witness, desk / "witness.jsonl")
    else:  # the auditor holds no checkpoint at all
        (desk / "witness.jsonl").write_text("")
    folder.key.rename(folder.root / "moved-away.key")
    args = ["--public-key", "ledger.pub", "--checkpoint", "witness.jsonl", "--json"]
    if data:
        (desk / "data").mkdir()
        for part in (folder.data).glob("faceledger.db*"):
            shutil.copy(part, desk / "data")
        if (folder.data / "ledger.head").exists():
            shutil.copy(folder.data / "ledger.head", desk / "data")
        args += ["--data", "data"]
    else:
        args += ["--export", "ledger.jsonl"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACELEDGER_")}
    env["FACELEDGER_DATA"] = str(desk / "nowhere")
    proc = subprocess.run(
        [sys.executable, "-m", "faceledger", "audit", "verify", *args],
        cwd=desk,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report: dict[str, Any] = json.loads(proc.stdout)
    assert proc.returncode == (0 if report["ok"] else 1), proc.stderr
    assert not (desk / "nowhere").exists()  # the verifier opened no service
    return report


def auditor_verify_copy(folder: Folder) -> dict[str, Any]:
    """:func:`auditor_verify` on a copy, leaving ``folder`` (and its key) as it was."""
    copy = Folder(folder.root.parent / "untouched" / "copy")
    shutil.copytree(folder.root, copy.root)
    return auditor_verify(copy)


def problems(report: dict[str, Any]) -> str:
    return "\n".join(f"{p['seq']}: {p['problem']}" for p in report["problems"])


def tamper(folder: Folder, *statements: tuple[str, tuple[Any, ...]]) -> None:
    with sqlite3.connect(folder.db) as db:
        for sql, params in statements:
            db.execute(sql, params)
    db.close()


COLS = "ts, key_id, role, actor, operation, collection, purpose, request, result, image_sha256"


def row(folder: Folder, seq: int) -> tuple[Any, ...]:
    with sqlite3.connect(folder.db) as db:
        found = db.execute(
            f"select {COLS}, prev_hash, entry_hash, seal from audit_log where seq=?", (seq,)
        ).fetchone()
    db.close()
    return tuple(found)


# -- the attacks ------------------------------------------------------------------------------


@pytest.mark.integration
def test_an_untouched_ledger_verifies_offline(folder: Folder) -> None:
    report = auditor_verify(folder)
    assert report["ok"] and report["entries"] == 9 and report["uncovered"] == 0, report


@pytest.mark.integration
def test_an_untouched_data_folder_verifies_offline(folder: Folder) -> None:
    report = auditor_verify(folder, data=True)
    assert report["ok"] and report["checkpoints"] >= 2, report


@pytest.mark.integration
def test_an_edited_entry_is_reported(folder: Folder) -> None:
    tamper(folder, ("update audit_log set purpose='nothing to see' where seq=4", ()))
    report = auditor_verify(folder)
    assert not report["ok"]
    assert "4: entry altered" in problems(report)
    assert "does not extend the checkpoint" in problems(report)


@pytest.mark.integration
def test_a_deleted_entry_is_reported(folder: Folder) -> None:
    tamper(folder, ("delete from audit_log where seq=5", ()))
    report = auditor_verify(folder)
    assert not report["ok"]
    assert "expected entry 5" in problems(report) and "does not extend" in problems(report)


@pytest.mark.integration
def test_swapped_entries_are_reported(folder: Folder) -> None:
    a, b = row(folder, 4), row(folder, 5)
    sets = ", ".join(f"{c.strip()}=?" for c in (COLS + ", prev_hash, entry_hash, seal").split(","))
    tamper(
        folder,
        (f"update audit_log set {sets} where seq=4", b),
        (f"update audit_log set {sets} where seq=5", a),
    )
    report = auditor_verify(folder)
    assert not report["ok"] and "chain broken" in problems(report)


@pytest.mark.integration
def test_an_inserted_entry_is_reported(folder: Folder) -> None:
    """A forged search slipped in as entry 4, with a correct hash of its own."""
    with sqlite3.connect(folder.db) as db:
        db.execute("update audit_log set seq=-seq where seq>=4")
        db.execute("update audit_log set seq=-seq+1 where seq<0")
        prev = db.execute("select entry_hash from audit_log where seq=3").fetchone()[0]
        fake = {
            "seq": 4, "ts": "2026-01-01T00:00:00+00:00", "key_id": None, "role": "local",
            "actor": "local:nobody", "operation": "identify", "collection": "c",
            "purpose": "forged", "case_ref": None, "image_sha256": None, "request": {},
            "result": {}, "prev_hash": prev,
        }  # fmt: skip
        body = json.dumps({k: fake[k] for k in FIELDS}, sort_keys=True, separators=(",", ":"))
        db.execute(
            "insert into audit_log (seq, ts, role, actor, operation, collection, purpose,"
            " request, result, prev_hash, entry_hash, seal) values (4, ?, 'local', ?, "
            "'identify', 'c', 'forged', '{}', '{}', ?, ?, ?)",
            (fake["ts"], fake["actor"], prev, hashlib.sha256(body.encode()).hexdigest(), "0" * 64),
        )
    db.close()
    report = auditor_verify(folder)
    assert not report["ok"]
    assert "5: chain broken" in problems(report) and "does not extend" in problems(report)


@pytest.mark.integration
def test_a_truncated_tail_without_head_is_reported(folder: Folder) -> None:
    tamper(folder, ("delete from audit_log where seq>=8", ()))
    (folder.data / "ledger.head").unlink()
    report = auditor_verify(folder)
    assert not report["ok"] and "only 7 remain" in problems(report), report


@pytest.mark.integration
def test_a_truncated_data_folder_without_head_is_reported(folder: Folder) -> None:
    tamper(
        folder, ("delete from audit_log where seq>=8", ()), ("delete from audit_checkpoints", ())
    )
    (folder.data / "ledger.head").unlink()
    report = auditor_verify(folder, data=True)
    text = problems(report)
    assert not report["ok"] and "only 7 remain" in text and "ledger.head is missing" in text


@pytest.mark.integration
def test_a_chain_rewritten_and_resealed_with_the_hmac_key_is_reported(folder: Folder) -> None:
    """The insider reads ledger.key, drops two searches, re-chains and re-seals everything,
    rewrites the head and deletes the stored checkpoints: the operator's HMAC check passes."""
    key = bytes.fromhex((folder.data / "ledger.key").read_text().strip())
    db = sqlite3.connect(folder.db)
    db.row_factory = sqlite3.Row
    with db:
        db.execute("delete from audit_log where seq in (5, 6)")
        db.execute("delete from audit_checkpoints")
        prev, seq = "0" * 64, 0
        for old in db.execute("select * from audit_log order by seq").fetchall():
            seq += 1
            values = dict(old) | {"seq": seq, "prev_hash": prev}
            values["request"], values["result"] = (
                json.loads(old["request"]),
                json.loads(old["result"]),
            )
            body = json.dumps({k: values[k] for k in FIELDS}, sort_keys=True, separators=(",", ":"))
            digest = hashlib.sha256(body.encode()).hexdigest()
            seal = hmac.new(key, digest.encode(), hashlib.sha256).hexdigest()
            db.execute(
                "update audit_log set seq=?, prev_hash=?, entry_hash=?, seal=? where seq=?",
                (seq, prev, digest, seal, old["seq"]),
            )
            prev = digest
    db.close()
    head_seal = hmac.new(key, f"head:{seq}:{prev}".encode(), hashlib.sha256).hexdigest()
    (folder.data / "ledger.head").write_text(
        json.dumps({"seq": seq, "entry_hash": prev, "seal": head_seal})
    )
    svc = folder.service()  # it even signs a fresh checkpoint of the rewritten chain
    assert svc.ledger.verify()["ok"]  # the operator's own check, secret and all, is fooled
    svc.close()
    report = auditor_verify(folder)
    assert not report["ok"] and "does not extend the checkpoint" in problems(report), report


@pytest.mark.integration
def test_a_database_replaced_by_an_older_copy_is_reported(folder: Folder, faces_dir: Path) -> None:
    """The backup is restored and the service carries on: new entries, newly signed."""
    folder.db.unlink()
    for extra in ("-wal", "-shm"):
        Path(f"{folder.db}{extra}").unlink(missing_ok=True)
    shutil.copy(folder.older, folder.db)
    svc = folder.service()
    for i in range(4):
        identify(svc, faces_dir, f"after restore {i}")
    svc.ledger.checkpoint()
    svc.close()
    report = auditor_verify(folder)
    assert not report["ok"] and "does not extend the checkpoint" in problems(report), report


@pytest.mark.integration
def test_an_export_without_any_checkpoint_is_not_ok(folder: Folder, tmp_path: Path) -> None:
    # (the operator's own export, run by auditor_verify, may sign and deliver a new
    # checkpoint to the witness as it closes: the auditor's copy is what is empty)
    report = auditor_verify(folder, witnessed=False)
    assert not report["ok"] and "no signed checkpoint" in problems(report)


@pytest.mark.integration
def test_a_running_server_that_loses_its_last_search_is_caught(
    tmp_path: Path, faces_dir: Path
) -> None:
    """The issue's own attack on a running server: the identify entry and ledger.head go."""
    folder = Folder(tmp_path / "served")
    folder.witness.parent.mkdir(parents=True)
    env = {k: v for k, v in folder.env().items() if k != "FACELEDGER_DATA"}
    server = start_server(folder.data, FACELEDGER_RATE_LIMIT="0", **env)
    try:
        with server.client() as admin:
            admin.create_collection("c", require_consent=False)
            admin.create_person("c", "amy")
            admin.enroll("c", "amy", faces_dir / AMY / "amy1.png")
            admin.identify("c", faces_dir / AMY / "amy2.png", purpose="case 7")
        headers = {"X-API-Key": server.admin_key}
        assert httpx.post(f"{server.url}/v1/audit/checkpoints", headers=headers).status_code == 201
    finally:
        stop_server(server)
    assert auditor_verify_copy(folder)["ok"]
    tamper(folder, ("delete from audit_log where operation='identify'", ()))
    (folder.data / "ledger.head").unlink()
    report = auditor_verify(folder)
    assert not report["ok"] and "remain" in problems(report), report


# -- proofs -----------------------------------------------------------------------------------


@pytest.mark.integration
def test_proofs_verify_independently_and_fail_on_one_byte(folder: Folder) -> None:
    svc = folder.service()
    try:
        pem = svc.ledger.public_key.pem
        checkpoints = svc.ledger.checkpoints.since()
        entries = [dict(e) for e in svc.ledger.iter_all()]
        old, new = checkpoints[0], checkpoints[-1]
        old_size, old_root = check_note(old.checkpoint.note, pem)
        new_size, new_root = check_note(new.checkpoint.note, pem)
        assert 0 < old_size < new_size == len(entries)
        for seq in (1, 4, new_size):
            proof = svc.ledger.proofs.inclusion(seq)
            path = [bytes.fromhex(h) for h in proof.path]
            leaf = entry_leaf(entries[seq - 1])
            assert root_from_inclusion(seq - 1, new_size, leaf, path) == new_root
            assert root_from_inclusion(seq - 1, new_size, flip(leaf), path) != new_root
            if path:
                bad = [flip(path[0]), *path[1:]]
                assert root_from_inclusion(seq - 1, new_size, leaf, bad) != new_root
        cons = svc.ledger.proofs.consistency(old_size, new_size)
        path = [bytes.fromhex(h) for h in cons.path]
        assert consistent(old_size, new_size, path, old_root, new_root)
        for i in range(len(path)):
            assert not consistent(
                old_size, new_size, [*path[:i], flip(path[i]), *path[i + 1 :]], old_root, new_root
            )
        assert not consistent(old_size, new_size, path, flip(old_root), new_root)
        # Every pair of checkpoints, against the roots recomputed from the entries alone.
        leaves = [entry_leaf(e) for e in entries]
        for a in checkpoints:
            for b in checkpoints:
                if 0 < a.size < b.size:
                    p = [
                        bytes.fromhex(h) for h in svc.ledger.proofs.consistency(a.size, b.size).path
                    ]
                    assert consistent(
                        a.size, b.size, p, mth(leaves[: a.size]), mth(leaves[: b.size])
                    )
    finally:
        svc.close()


def mth(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node(mth(leaves[:k]), mth(leaves[k:]))


# -- settings -------------------------------------------------------------------------------


@pytest.mark.integration
def test_signing_key_file_holds_the_key_outside_the_data_folder(folder: Folder) -> None:
    assert folder.key.stat().st_mode & 0o777 == 0o600
    assert not (folder.data / "ledger-signing.key").exists()
    published = cli(folder, "audit", "public-key")
    assert "BEGIN PUBLIC KEY" in published and "PRIVATE" not in published


@pytest.mark.integration
def test_checkpoint_every_entries_signs_on_schedule(golden: Folder) -> None:
    with sqlite3.connect(golden.older) as db:
        sizes = [r[0] for r in db.execute("select tree_size from audit_checkpoints order by id")]
    db.close()
    # the first entry is signed at once, then every 3 (FACELEDGER_CHECKPOINT_EVERY_ENTRIES),
    # then the checkpoint asked for at the end of the first session
    assert sizes == [1, 4, 5], sizes


def test_one_checkpoint_per_due_size_however_many_threads_find_it_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under load a commit's thread and the background thread both found the same entries
    # due and signed two checkpoints of one size ([1, 4, 4, 5] in the golden folder).
    monkeypatch.setenv("FACELEDGER_CHECKPOINT_EVERY_ENTRIES", "0")
    monkeypatch.setenv("FACELEDGER_CHECKPOINT_EVERY_SECONDS", "0")
    svc = FaceService(Settings(data=tmp_path / "d"))
    try:
        for name in ("a", "b", "c"):
            svc.create_key(Role.AUDITOR, name=name, actor=local_actor())
        seq = svc.ledger.health().entries
        assert svc.ledger.health().uncovered == seq - 1  # only the first entry was signed
        svc.ledger._every_entries = 2  # now due: every thread below finds it so
        start = threading.Barrier(8)

        def commit_returns() -> None:
            start.wait()
            svc.ledger._after_commit(seq, start_worker=False)

        threads = [threading.Thread(target=commit_returns) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with sqlite3.connect(tmp_path / "d" / "faceledger.db") as db:
            sizes = [r[0] for r in db.execute("select tree_size from audit_checkpoints")]
        db.close()
        assert len(sizes) == len(set(sizes)), sizes
        assert sizes[-1] == seq
    finally:
        svc.close()


@pytest.mark.integration
def test_witness_files_receive_every_checkpoint(golden: Folder) -> None:
    lines = [json.loads(line) for line in golden.witness.read_text().splitlines()]
    with sqlite3.connect(golden.db) as db:
        stored = [r[0] for r in db.execute("select note from audit_checkpoints order by id")]
    db.close()
    assert [line["note"] for line in lines] == stored
    assert golden.witness.stat().st_mode & 0o777 == 0o600


def test_checkpoint_every_seconds_signs_a_quiet_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACELEDGER_CHECKPOINT_EVERY_ENTRIES", "0")
    monkeypatch.setenv("FACELEDGER_CHECKPOINT_EVERY_SECONDS", "1")
    svc = FaceService(Settings(data=tmp_path / "d"))
    try:
        svc.create_key(Role.AUDITOR, name="a", actor=local_actor())
        svc.create_key(Role.AUDITOR, name="b", actor=local_actor())
        assert svc.ledger.health().uncovered == 1  # not due by count, and too early
        deadline = time.monotonic() + 10
        while svc.ledger.health().uncovered and time.monotonic() < deadline:
            time.sleep(0.1)
        assert svc.ledger.health().checkpoint_size == 2  # the background thread signed it
    finally:
        svc.ledger.close()
        svc.close()


class Collector(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[str]] = []
    fail: ClassVar[bool] = True

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        if Collector.fail:
            self.send_response(503)
        else:
            Collector.received.append(body)
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Collector.received, Collector.fail = [], True
    yield f"http://127.0.0.1:{server.server_address[1]}/checkpoints"
    server.shutdown()
    server.server_close()
    thread.join()


def test_witness_urls_get_every_checkpoint_after_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collector: str
) -> None:
    """A witness that refuses is retried, shown in /healthz, and finally gets all, in order."""
    missing = tmp_path / "not-mounted" / "w.jsonl"
    monkeypatch.setenv("FACELEDGER_WITNESS_URLS", json.dumps([collector]))
    monkeypatch.setenv("FACELEDGER_WITNESS_FILES", json.dumps([str(missing)]))
    monkeypatch.setenv("FACELEDGER_CHECKPOINT_EVERY_ENTRIES", "1")
    monkeypatch.setenv("FACELEDGER_CHECKPOINT_EVERY_SECONDS", "0")
    svc = FaceService(Settings(data=tmp_path / "d"))
    try:
        for i in range(3):
            svc.create_key(Role.AUDITOR, name=str(i), actor=local_actor())
        health = svc.ledger.health()
        assert health.undelivered == 6 and all(w.failures for w in health.witnesses)
        assert svc.ledger.witness_status()[1].last_error
        missing.parent.mkdir()
        Collector.fail = False
        assert svc.ledger.checkpoints.deliver_pending() == 0
        notes = [c.checkpoint.note for c in svc.ledger.checkpoints.since()]
        assert Collector.received == notes
        assert [json.loads(x)["note"] for x in missing.read_text().splitlines()] == notes
        assert svc.ledger.health().undelivered == 0
    finally:
        svc.ledger.close()
        svc.close()


# -- over HTTP ----------------------------------------------------------------------------------


@pytest.mark.integration
def test_proof_endpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACELEDGER_CHECKPOINT_EVERY_ENTRIES", "2")
    monkeypatch.setenv("FACELEDGER_WITNESS_FILES", json.dumps([str(tmp_path / "w.jsonl")]))
    settings = Settings(data=tmp_path / "d", rate_limit=0)
    with TestClient(create_app(settings)) as client:
        admin = {"X-API-Key": (settings.data / ADMIN_KEY_FILE).read_text().strip()}
        key = client.get("/v1/audit/public-key").json()  # public: no API key
        assert key["vkey"].startswith(key["origin"] + "+")
        auditor = client.post("/v1/keys", json={"role": "auditor"}, headers=admin).json()
        headers = {"X-API-Key": auditor["key"]}
        for name in ("a", "b", "c", "d"):
            assert client.post("/v1/collections", json={"name": name, "require_consent": False},
                               headers=admin).status_code == 201  # fmt: skip
        first = client.post("/v1/audit/checkpoints", headers=headers)
        assert first.status_code == 201
        client.post("/v1/collections", json={"name": "e", "require_consent": False}, headers=admin)
        assert client.get("/v1/audit/checkpoints/latest", headers=headers).json()["size"] == 6
        client.post("/v1/collections", json={"name": "f", "require_consent": False}, headers=admin)
        latest = client.post("/v1/audit/checkpoints", headers=headers).json()
        old_size, old_root = check_note(first.json()["note"], key["pem"])
        new_size, new_root = check_note(latest["note"], key["pem"])
        assert (old_size, new_size) == (6, 8)

        proof = client.get("/v1/audit/entries/3/proof", headers=headers).json()
        assert proof["tree_size"] == 8 and proof["checkpoint"]["note"] == latest["note"]
        path = [bytes.fromhex(h) for h in proof["path"]]
        assert root_from_inclusion(2, 8, entry_leaf(proof["entry"]), path) == new_root
        changed = proof["entry"] | {"operation": proof["entry"]["operation"] + "!"}
        assert root_from_inclusion(2, 8, entry_leaf(changed), path) != new_root
        at_old = client.get("/v1/audit/entries/3/proof", params={"size": 6}, headers=headers)
        path = [bytes.fromhex(h) for h in at_old.json()["path"]]
        assert root_from_inclusion(2, 6, entry_leaf(proof["entry"]), path) == old_root

        cons = client.get("/v1/audit/consistency", params={"from": 6, "to": 8}, headers=headers)
        path = [bytes.fromhex(h) for h in cons.json()["path"]]
        assert consistent(6, 8, path, old_root, new_root)
        assert not consistent(6, 8, [flip(path[0]), *path[1:]], old_root, new_root)

        listed = client.get("/v1/audit/checkpoints", headers=headers).json()["checkpoints"]
        assert [c["size"] for c in listed] == [1, 3, 5, 6, 8, 8]
        assert (
            client.get("/v1/audit/consistency", params={"from": 4}, headers=headers).status_code
            == 404
        )
        assert client.get("/v1/audit/entries/99/proof", headers=headers).status_code == 422
        assert client.get("/v1/audit/checkpoints").status_code == 401
        health = client.get("/healthz").json()
        assert (
            health["ledger"]["uncovered"] == 0 and health["ledger"]["undelivered_checkpoints"] == 0
        )
        metrics = client.get("/metrics", headers=headers).text
        assert "faceledger_witness_undelivered_checkpoints{" in metrics
        assert client.get("/v1/audit/verify", headers=headers).json()["ok"]


# -- migration and key rotation ---------------------------------------------------------------


def test_a_ledger_from_before_checkpoints_is_signed_at_first_open(tmp_path: Path) -> None:
    """A database of revision 0002 (before checkpoints) holding entries: the migration keeps
    them as they are, and the first open signs a checkpoint covering all of them."""
    svc = FaceService(Settings(data=tmp_path / "a"))
    for name in "abcde":
        svc.create_key(Role.AUDITOR, name=name, actor=local_actor())
    svc.close()
    old = tmp_path / "old"
    old.mkdir()
    engine = create_engine(f"sqlite:///{old / 'faceledger.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
    engine.dispose()
    with sqlite3.connect(old / "faceledger.db") as db:
        db.execute("attach ? as a", (str(tmp_path / "a" / "faceledger.db"),))
        db.execute("insert into audit_log select * from a.audit_log")
    db.close()
    for name in ("ledger.key", "ledger.head"):
        shutil.copy(tmp_path / "a" / name, old / name)
    svc = FaceService(Settings(data=old))
    try:
        latest = svc.ledger.latest_checkpoint()
        assert latest.size == 5 == svc.ledger.count()
        assert svc.ledger.verify()["ok"]
    finally:
        svc.close()


def test_a_new_signing_key_signs_the_whole_ledger_anew(tmp_path: Path) -> None:
    svc = FaceService(Settings(data=tmp_path / "d"))
    svc.create_key(Role.AUDITOR, name="a", actor=local_actor())
    old = svc.ledger.public_key
    svc.close()
    (tmp_path / "d" / "ledger-signing.key").unlink()
    svc = FaceService(Settings(data=tmp_path / "d"))
    try:
        svc.create_key(Role.AUDITOR, name="b", actor=local_actor())
        record = svc.ledger.checkpoint()
        assert svc.ledger.public_key.key_id != old.key_id
        assert record.checkpoint.origin == svc.ledger.public_key.origin and record.size == 2
        _, root = check_note(record.checkpoint.note, svc.ledger.public_key.pem)
        assert root == mth([entry_leaf(dict(e)) for e in svc.ledger.iter_all()])
        report = svc.ledger.verify()  # the old key's checkpoints are set aside, not failed
        assert report["ok"] and report["other_keys"] >= 1, report
    finally:
        svc.close()


def test_settings_given_to_the_service_reach_its_ledger(tmp_path: Path) -> None:
    """A service built from Settings in Python (not the environment) signs with the key
    file, on the schedule and to the witnesses those settings name."""
    witness, key = tmp_path / "w" / "checkpoints.jsonl", tmp_path / "keys" / "signing.key"
    witness.parent.mkdir()
    svc = FaceService(
        Settings(
            data=tmp_path / "data",
            signing_key_file=key,
            witness_files=[witness],
            checkpoint_every_entries=1,
        )
    )
    svc.create_collection("c", require_consent=False)
    svc.ledger.checkpoint()
    svc.close()  # delivers what is pending
    assert key.is_file() and not (tmp_path / "data" / SIGNING_KEY_FILE).exists()
    lines = witness.read_text().splitlines()
    assert lines and all(json.loads(line)["note"] for line in lines)
