"""The pgvector index (``--index pgvector``): HNSW inside PostgreSQL, same answers as FAISS.

Real face embeddings (glint360k_celeb24, aligned crops, embedded once per module) are
enrolled into two stores on one embedded PostgreSQL database's worth of data each: one with
the FAISS HNSW index held in memory, one with pgvector. Identify, erase and identify again
must give the same faces and the same (exact, re-ranked) similarities; an erased face's
vector row is gone from the database. The index refuses a store it cannot work on.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
import sqlalchemy
from typer.testing import CliRunner

from faceledger.cli.common import exit_code_of
from faceledger.cli.main import app as cli_app
from faceledger.config import Settings
from faceledger.engine import Engine
from faceledger.errors import InvalidArgument, StoreError
from faceledger.index.pgvector import PgVectorIndex
from faceledger.service import FaceService
from faceledger.store.pgvectors import PgVectorCollectionIndex
from faceledger.store.repository import NewFace, Store
from faceledger.store.schema import face_vectors
from tests.pg import PostgresServer

ENROL, PROBES, PEOPLE = 8, 3, 12


@pytest.fixture(scope="module")
def celebs(faces_dir: Path, engine: Engine) -> dict[str, np.ndarray]:
    """Embeddings ``(ENROL + PROBES, 512)`` of the first PEOPLE celebrities' aligned crops."""
    root = faces_dir / "glint360k_celeb24" / "images"
    people = sorted(p for p in root.iterdir() if p.is_dir())[:PEOPLE]
    out = {}
    for person in people:
        files = sorted(person.iterdir(), key=lambda f: int(f.stem))[: ENROL + PROBES]
        out[person.name] = engine.embed_aligned([str(f) for f in files])
    return out


def enrol(store: Store, celebs: dict[str, np.ndarray]) -> None:
    store.create_collection(
        "c", model_pack="default", model_id="test", embedding_dim=512, require_consent=False
    )
    for name, vectors in celebs.items():
        store.add_faces(
            "c", name, [NewFace(embedding=v) for v in vectors[:ENROL]], create_person=True
        )


def probes(celebs: dict[str, np.ndarray]) -> np.ndarray:
    return np.ascontiguousarray(np.concatenate([v[ENROL:] for v in celebs.values()]))


@pytest.fixture
def pair(
    postgres: PostgresServer, tmp_path: Path, celebs: dict[str, np.ndarray]
) -> Iterator[tuple[Store, Store]]:
    """The same enrolment in a FAISS-HNSW store and a pgvector store (each its own database)."""
    faiss = Store(tmp_path / "faiss", index_kind="hnsw", database_url=postgres.new_database())
    pgv = Store(tmp_path / "pgv", index_kind="pgvector", database_url=postgres.new_database())
    for store in (faiss, pgv):
        enrol(store, celebs)
    yield faiss, pgv
    faiss.close()
    pgv.close()


def vector_rows(store: Store) -> set[int]:
    with store.engine.connect() as conn:
        return set(conn.scalars(sqlalchemy.select(face_vectors.c.face_id)))


def test_identify_and_erase_answer_as_faiss(
    pair: tuple[Store, Store], celebs: dict[str, np.ndarray]
) -> None:
    faiss, pgv = pair
    col_f, col_p = faiss.get_collection("c"), pgv.get_collection("c")
    assert faiss.index(col_f)._index.approximate  # both re-rank approximate candidates
    assert isinstance(pgv.index(col_p), PgVectorCollectionIndex)
    q = probes(celebs)
    a, b = faiss.search(col_f, q, 10), pgv.search(col_p, q, 10)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)  # exact float32 re-ranking
    owners = pgv.face_owners(b.ids[:, 0].tolist())
    hits = [owners[int(i)][1] for i in b.ids[:, 0]]
    assert hits == [n for n in celebs for _ in range(PROBES)]  # rank 1 on every probe
    assert len(vector_rows(pgv)) == PEOPLE * ENROL

    gone = next(iter(celebs))
    erased = {f.id for f in pgv.list_faces("c", gone)}
    for store in (faiss, pgv):
        assert store.delete_person("c", gone) == ENROL
    a, b = faiss.search(col_f, q, 10), pgv.search(col_p, q, 10)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
    assert not erased & set(b.ids.ravel().tolist())
    assert not erased & vector_rows(pgv)  # the vectors left with the faces
    assert len(pgv.index(col_p)) == (PEOPLE - 1) * ENROL


def test_faces_written_without_pgvector_are_caught_up(
    postgres: PostgresServer, tmp_path: Path, celebs: dict[str, np.ndarray]
) -> None:
    """A replica on FAISS (or an older version) writes no vector rows: a pgvector replica
    opening the collection fills them in, and catches up later ones before searching."""
    url = postgres.new_database()
    names = list(celebs)
    writer = Store(tmp_path / "a", index_kind="auto", database_url=url)
    enrol(writer, {n: celebs[n] for n in names[:6]})
    reader = Store(tmp_path / "b", index_kind="pgvector", database_url=url)
    col = reader.get_collection("c")
    q = probes(celebs)
    assert len(reader.index(col)) == 6 * ENROL  # filled in on first open
    for name in names[6:]:
        writer.add_faces(
            "c", name, [NewFace(embedding=v) for v in celebs[name][:ENROL]], create_person=True
        )
    found = reader.search(col, q, 1)  # caught up from the change log before searching
    owners = reader.face_owners(found.ids[:, 0].tolist())
    assert [owners[int(i)][1] for i in found.ids[:, 0]] == [n for n in names for _ in range(PROBES)]
    assert len(vector_rows(reader)) == PEOPLE * ENROL
    # an erasure by the FAISS replica deletes the vector rows too (foreign key cascade)
    writer.delete_person("c", names[0])
    assert len(vector_rows(reader)) == (PEOPLE - 1) * ENROL
    writer.close()
    reader.close()


def test_pgvector_index_interface(postgres: PostgresServer, tmp_path: Path) -> None:
    """add / remove / search / ids / len / membership, as every VectorIndex."""
    store = Store(tmp_path / "d", index_kind="pgvector", database_url=postgres.new_database())
    col = store.create_collection("c", model_pack="x", model_id="m", embedding_dim=8)
    index = PgVectorIndex(store.engine, face_vectors, col.id, 8)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = store.add_faces("c", None, [NewFace(embedding=v) for v in x])  # rows need faces
    assert len(index) == 7 and set(index.ids().tolist()) == set(ids) and ids[0] in index
    index.create_graph()
    found = index.search(x[:3], 10)
    assert found.ids[:, 0].tolist() == ids[:3] and (found.ids[:, 7:] == -1).all()
    np.testing.assert_allclose(found.scores[:, 0], 1.0, atol=2e-3)  # half precision
    assert index.remove(np.array(ids[:2], dtype=np.int64)) == 2 and len(index) == 5
    assert ids[0] not in index and "x" not in index
    index.drop_graph()
    store.close()


def test_pgvector_needs_postgresql_with_the_extension(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    with pytest.raises(StoreError, match="needs a PostgreSQL store"):
        Store(tmp_path / "sqlite", index_kind="pgvector")
    assert not (tmp_path / "sqlite").exists()  # refused before anything was created
    with pytest.raises(StoreError, match="needs a PostgreSQL store"):
        FaceService(Settings(data=tmp_path / "svc", index="pgvector"))
    # A role that owns its database but may not install extensions (pgvector is not a
    # trusted extension): migration 0009 leaves it alone, the pgvector store says what to do.
    role = f"plain_{secrets.token_hex(4)}"
    with psycopg.connect(
        f"dbname=postgres user=postgres host={postgres.socket_dir}", autocommit=True
    ) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"CREATE DATABASE {role} OWNER {role}")
    url = f"postgresql+psycopg://{role}@/{role}?host={postgres.socket_dir}"
    plain = Store(tmp_path / "plain-pg", database_url=url)  # FAISS: fine without pgvector
    with plain.engine.connect() as conn:
        assert not sqlalchemy.inspect(conn).has_table("face_vectors")
    plain.close()
    with pytest.raises(StoreError, match="CREATE EXTENSION vector"):
        Store(tmp_path / "plain-pg", index_kind="pgvector", database_url=url)
    store = Store(tmp_path / "pg", database_url=postgres.new_database())
    with store.engine.connect() as conn:  # as a superuser, migration 0009 installed it all
        assert sqlalchemy.inspect(conn).has_table("face_vectors")
    store.close()
    sqlite = Store(tmp_path / "plain")  # migration 0009 is a no-op on SQLite
    with sqlite.engine.connect() as conn:
        assert not sqlalchemy.inspect(conn).has_table("face_vectors")
    sqlite.close()


def test_index_setting_selects_pgvector(
    postgres: PostgresServer, tmp_path: Path, faces_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FACELEDGER_INDEX=pgvector: the service enrols, identifies and erases through it."""
    ids = faces_dir / "faceapi_bbt" / "identities"
    monkeypatch.setenv("FACELEDGER_INDEX", "pgvector")
    svc = FaceService(Settings(data=tmp_path / "d", db_url=postgres.new_database()))
    svc.create_collection("c", require_consent=False)
    for name in ("amy", "penny"):
        svc.enroll("c", name, [str(ids / name / f"{name}{i}.png") for i in (1, 2)])
    col = svc.store.get_collection("c")
    assert isinstance(svc.store.index(col), PgVectorCollectionIndex)
    assert len(vector_rows(svc.store)) == 4
    probe = str(ids / "amy" / "amy4.png")
    assert svc.identify("c", probe)[0].candidates[0].person == "amy"
    svc.delete_person("c", "amy")
    assert all(c.person != "amy" for r in svc.identify("c", probe) for c in r.candidates)
    assert len(vector_rows(svc.store)) == 2
    svc.close()
    result = CliRunner().invoke(cli_app, ["serve", "--index", "annoy"])
    assert result.exit_code == exit_code_of(InvalidArgument), result.output
    assert "faiss or pgvector" in result.output
