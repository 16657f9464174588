"""PostgreSQL as the store: what holds only because the database is shared.

The store's, the unit of work's and the API's own tests run on both stores (see
``tests/pg.py``); these add what a shared database must guarantee on top: one ledger chain
written by many processes, one retention sweep at a time, and the settings and CLI flag
that choose it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy
from typer.testing import CliRunner

from faceledger.cli.main import app as cli_app
from faceledger.client import Client
from faceledger.config import Settings
from faceledger.errors import FaceledgerError
from faceledger.ledger.audit import Actor, Entry
from faceledger.service import FaceService
from faceledger.service.core import LOCAL_ACTOR
from faceledger.service.retention import sweep
from faceledger.store.db import RETENTION_LOCK, exclusive
from tests.pg import PostgresServer
from tests.test_api import Server, start_server, stop_server

APPENDER = textwrap.dedent(
    """
    import sys
    from faceledger.config import Settings
    from faceledger.service import FaceService
    from faceledger.service.core import LOCAL_ACTOR

    svc = FaceService(Settings(data=sys.argv[1], db_url=sys.argv[2]))
    for i in range(int(sys.argv[4])):
        with svc.audited(LOCAL_ACTOR, "test.append", request={"writer": sys.argv[3], "i": i}):
            pass
    svc.close()
    """
)


def test_db_url_puts_the_store_on_postgresql(postgres: PostgresServer, tmp_path: Path) -> None:
    url = postgres.new_database()
    svc = FaceService(Settings(data=tmp_path / "d", db_url=url))
    svc.create_collection("c", require_consent=False)
    svc.close()
    assert not (tmp_path / "d" / "faceledger.db").exists()  # nothing went to SQLite
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        assert conn.scalar(sqlalchemy.text("select name from collections")) == "c"
        assert conn.scalar(sqlalchemy.text("select count(*) from audit_log")) == 1
        assert conn.scalar(sqlalchemy.text("select version_num from alembic_version"))
    engine.dispose()


def test_the_db_flag_chooses_the_database(postgres: PostgresServer, tmp_path: Path) -> None:
    url = postgres.new_database()
    runner = CliRunner()
    args = ["--data", str(tmp_path / "d"), "collection", "create", "viadb", "--db", url]
    result = runner.invoke(cli_app, [*args, "--no-require-consent", "--json"])
    assert result.exit_code == 0, result.output
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        assert conn.scalar(sqlalchemy.text("select name from collections")) == "viadb"
    engine.dispose()
    assert not (tmp_path / "d" / "faceledger.db").exists()


def test_processes_appending_at_once_write_one_chain(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """Four processes (as four replicas would) append 40 entries each into one database."""
    url = postgres.new_database()
    data = tmp_path / "shared"  # replicas share the ledger's keys (one data volume or secret)
    FaceService(Settings(data=data, db_url=url)).close()
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER, str(data), url, f"w{w}", "40"])
        for w in range(4)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0, 0]
    svc = FaceService(Settings(data=data, db_url=url))
    try:
        entries = [e for e in svc.ledger.entries() if e["operation"] == "test.append"]
        assert len(entries) == 160
        seqs = [e["seq"] for e in svc.ledger.entries()]
        assert seqs == list(range(1, len(seqs) + 1))  # no gap, no fork
        report = svc.ledger.verify()
        assert report["ok"], report["problems"]
    finally:
        svc.close()


@pytest.mark.parametrize("tamper", ["edit", "delete", "swap"])
def test_ledger_tampering_in_postgresql_is_detected(
    postgres: PostgresServer, tmp_path: Path, tamper: str
) -> None:
    url = postgres.new_database()
    svc = FaceService(Settings(data=tmp_path / "d", db_url=url))
    for i in range(5):
        with svc.audited(LOCAL_ACTOR, "test.append", purpose=f"p{i}"):
            pass
    assert svc.ledger.verify()["ok"]
    svc.close()
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as db:
        run = db.execute
        if tamper == "edit":
            run(sqlalchemy.text("update audit_log set purpose = 'pX' where seq = 4"))
        elif tamper == "delete":
            run(sqlalchemy.text("delete from audit_log where seq = 3"))
        else:
            cols = ["ts", "purpose", "prev_hash", "entry_hash", "seal"]
            query = f"select {', '.join(cols)} from audit_log where seq = :s"
            a = run(sqlalchemy.text(query), {"s": 3}).one()
            b = run(sqlalchemy.text(query), {"s": 4}).one()
            sets = ", ".join(f"{c} = :{c}" for c in cols)
            update = sqlalchemy.text(f"update audit_log set {sets} where seq = :s")
            run(update, {**dict(zip(cols, b, strict=True)), "s": 3})
            run(update, {**dict(zip(cols, a, strict=True)), "s": 4})
    engine.dispose()
    svc = FaceService(Settings(data=tmp_path / "d", db_url=url))
    report = svc.ledger.verify()
    svc.close()
    assert not report["ok"] and report["problems"]


def test_one_retention_sweep_at_a_time(postgres: PostgresServer, tmp_path: Path) -> None:
    """While one replica sweeps, another's sweep does nothing; afterwards it runs."""
    url = postgres.new_database()
    svc = FaceService(Settings(data=tmp_path / "d", db_url=url))
    try:
        svc.store.create_collection(
            "c", model_pack="t", model_id="t@1", embedding_dim=8, require_consent=False
        )
        svc.store.create_person("c", "gone", retain_until=svc.store.get_collection("c").created_at)
        held = threading.Event()
        release = threading.Event()

        def other_replica() -> None:
            with exclusive(svc.store.engine, RETENTION_LOCK) as mine:
                assert mine
                held.set()
                release.wait(30)

        holder = threading.Thread(target=other_replica)
        holder.start()
        assert held.wait(30)
        assert sweep(svc) == []  # the lock is taken: this sweep skips its round
        release.set()
        holder.join()
        assert sweep(svc) == [("c", "gone")]
    finally:
        svc.close()


def test_an_append_takes_the_write_lock_itself(postgres: PostgresServer, tmp_path: Path) -> None:
    """Two appends racing on bare connections (no write transaction) still chain."""
    url = postgres.new_database()
    svc = FaceService(Settings(data=tmp_path / "d", db_url=url))
    try:
        start = threading.Barrier(4)

        def append(i: int) -> None:
            start.wait()
            with svc.store.engine.connect() as conn, conn.begin():
                svc.ledger.append(conn, Actor(None, "local", None), Entry(f"race.{i}"))

        threads = [threading.Thread(target=append, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        svc.ledger.write_head()  # what the unit of work does after its commit
        report = svc.ledger.verify()
        assert report["ok"], report["problems"]
        assert svc.ledger.count() == 4
    finally:
        svc.close()


def test_vectors_shared_by_two_stores_on_one_database(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """A face added through one store is found by another on the same database at once,
    and a face erased through the second is gone from the first's next search."""
    from faceledger.store import NewFace, Store

    url = postgres.new_database()
    a = Store(tmp_path / "a", database_url=url)
    b = Store(tmp_path / "b", database_url=url)
    try:
        a.create_collection(
            "c", model_pack="t", model_id="t@1", embedding_dim=8, require_consent=False
        )
        col = a.get_collection("c")
        basis = np.eye(8, dtype=np.float32)
        b.search(col, basis[:1], 1)  # b's index is open (and so must catch up)
        (fid,) = a.add_faces("c", None, [NewFace(embedding=basis[3])])
        assert int(b.search(col, basis[3:4], 1).ids[0, 0]) == fid
        b.delete_face("c", fid)  # B saves its index at once (an erasure)...
        with b.engine.connect() as conn:  # ...but keeps the log A has not replayed yet
            kept = conn.scalar(sqlalchemy.text("select count(*) from vector_changes"))
        assert kept == 2
        assert int(a.search(col, basis[3:4], 1).ids[0, 0]) == -1
    finally:
        a.close()
        b.close()


def test_a_listening_replica_applies_another_replicas_commit_without_a_search(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """NOTIFY wakes the other store: its open index takes the face before any search."""
    from faceledger.store import NewFace, Store
    from faceledger.store.listen import ChangeListener

    url = postgres.new_database()
    a = Store(tmp_path / "a", database_url=url)
    b = Store(tmp_path / "b", database_url=url)
    listener = ChangeListener(b)
    try:
        a.create_collection(
            "c", model_pack="t", model_id="t@1", embedding_dim=8, require_consent=False
        )
        col = a.get_collection("c")
        index = b.index(col)
        listener.start()
        basis = np.eye(8, dtype=np.float32)
        a.add_faces("c", None, [NewFace(embedding=basis[1]), NewFace(embedding=basis[2])])
        deadline = time.monotonic() + 10
        while len(index) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(index) == 2 and listener.wakeups >= 1
    finally:
        listener.stop()
        a.close()
        b.close()


# -- two replicas: real server processes on one PostgreSQL ----------------------------------


def start_replicas(postgres: PostgresServer, root: Path) -> tuple[Server, Server]:
    """Two ``faceledger serve`` processes, each with its own data folder (its index files),
    sharing the database and the secrets replicas must share: the ledger's seal and signing
    keys (and, here, the admin key's file)."""
    env = {"FACELEDGER_DB_URL": postgres.new_database(), "FACELEDGER_RATE_LIMIT": "0"}
    a = start_server(root / "a", **env)
    (root / "b").mkdir()
    for name in ("admin.key", "ledger.key", "ledger-signing.key"):
        shutil.copy2(a.data / name, root / "b" / name)
    return a, start_server(root / "b", **env)


def top_person(client: Client, collection: str, image: Path) -> str | None:
    faces = client.identify(collection, image, purpose="replica check")["faces"]
    candidates = faces[0]["candidates"] if faces else []
    return str(candidates[0]["person"]) if candidates else None


@pytest.mark.slow
def test_two_replicas_one_truth(postgres: PostgresServer, tmp_path: Path, faces_dir: Path) -> None:
    """Enrol on A, found on B at once; erase on B, A stops returning the person; SIGKILL A
    during bulk enrolment, every enrolment A acknowledged is on B; one ledger that verifies."""
    bbt = faces_dir / "faceapi_bbt" / "identities"
    a, b = start_replicas(postgres, tmp_path)
    try:
        with a.client() as ca, b.client() as cb:
            ca.create_collection("c", require_consent=False)
            ca.create_person("c", "amy")
            ca.enroll("c", "amy", bbt / "amy" / "amy1.png")
            assert top_person(cb, "c", bbt / "amy" / "amy2.png") == "amy"  # no wait needed
            cb.create_person("c", "penny")
            cb.enroll("c", "penny", bbt / "penny" / "penny1.png")
            assert top_person(ca, "c", bbt / "penny" / "penny2.png") == "penny"
            cb.delete_person("c", "amy")
            assert top_person(ca, "c", bbt / "amy" / "amy2.png") != "amy"  # at once, on A too

            celebs = sorted((faces_dir / "glint360k_celeb24" / "images").iterdir())
            acknowledged: list[tuple[str, Path]] = []
            refused: list[str] = []

            def bulk() -> None:
                for person in celebs:
                    image = sorted(person.iterdir())[0]
                    try:
                        ca.create_person("c", person.name)
                        ca.enroll("c", person.name, image, largest=True)
                    except FaceledgerError as exc:  # not acknowledged
                        if a.proc.poll() is not None:  # A was killed mid-request
                            return
                        refused.append(f"{person.name}: {exc}")  # refused (e.g. quality)
                        continue
                    acknowledged.append((person.name, image))

            writer = threading.Thread(target=bulk)
            writer.start()
            deadline = time.monotonic() + 60
            while len(acknowledged) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            os.kill(a.proc.pid, signal.SIGKILL)
            a.proc.wait()
            writer.join(timeout=60)
            assert len(acknowledged) >= 3, refused
            for name, image in acknowledged:
                assert cb.get_person("c", name)["face_count"] == 1
                assert top_person(cb, "c", image) == name
            report = cb.audit_verify()
            assert report["ok"], report
    finally:
        for server in (a, b):
            if server.proc.poll() is None:
                stop_server(server)


def test_a_key_revoked_on_one_replica_is_refused_by_the_others(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """Each replica's key store may not trust a key it authenticated before the revocation."""
    from faceledger.errors import Unauthenticated
    from faceledger.ledger.keys import KeyStore, Role
    from faceledger.store.db import open_database, write_transaction

    url = postgres.new_database()
    engine_a, engine_b = open_database(url), open_database(url)
    a, b = KeyStore(engine_a), KeyStore(engine_b)
    try:
        issued = a.create(Role.AUDITOR, name="temp")
        assert b.authenticate(issued.secret).id == issued.key.id  # B has seen it
        with write_transaction(engine_a) as conn:
            a.revoke(issued.key.id, conn=conn)
        with pytest.raises(Unauthenticated):
            b.authenticate(issued.secret)
    finally:
        engine_a.dispose()
        engine_b.dispose()


def test_video_jobs_across_replicas(postgres: PostgresServer, tmp_path: Path) -> None:
    """A replica runs only uploads it can read, and starting up does not mark a job another
    live replica is running as interrupted (only one whose runner died)."""
    from faceledger.store.db import open_database
    from faceledger.store.jobs import JobRecord, JobStore

    url = postgres.new_database()
    engine_a, engine_b = open_database(url), open_database(url)
    a, b = JobStore(engine_a), JobStore(engine_b)
    try:
        upload = tmp_path / "a" / "jobs" / "j1.video"
        job = JobRecord(
            id="j1",
            key_id="k",
            collection="c",
            path=str(upload),
            options={},
            purpose=None,
            case_ref=None,
            actor={},
        )
        b.add(job)
        assert b.claim_next() is None  # its upload is on another replica's disk
        upload.parent.mkdir(parents=True)
        upload.write_bytes(b"video")
        claimed = a.claim_next()
        assert claimed is not None and claimed.id == "j1"
        with a.hold("j1"):
            assert b.interrupt_running() == []  # A is alive and running it
            assert b.get("j1").status == "running"
        assert b.interrupt_running() == ["j1"]  # A's runner is gone
        assert b.get("j1").status == "interrupted"
    finally:
        engine_a.dispose()
        engine_b.dispose()


def test_a_replica_joining_a_shared_ledger_verifies_before_its_first_write(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """A new replica (its own data folder, the shared keys) has a head from the start."""
    url = postgres.new_database()
    first = FaceService(Settings(data=tmp_path / "a", db_url=url))
    for i in range(3):
        with first.audited(LOCAL_ACTOR, "test.append", purpose=f"p{i}"):
            pass
    first.close()
    (tmp_path / "b").mkdir()
    for name in ("ledger.key", "ledger-signing.key"):
        shutil.copy2(tmp_path / "a" / name, tmp_path / "b" / name)
    joining = FaceService(Settings(data=tmp_path / "b", db_url=url))
    try:
        report = joining.ledger.verify()
        assert report["ok"], report["problems"]
    finally:
        joining.close()
