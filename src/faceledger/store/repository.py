"""The face database facade: collections, persons and faces, rows and vectors changed together.

Every write is one SQL transaction that also appends to the vector change log; the
in-memory index is updated only after the commit, so a failed write leaves nothing
behind and a crash after commit is repaired from the log on the next open.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, Row, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from faceledger.errors import Conflict, InvalidArgument, LimitExceeded, NotFound, StoreError
from faceledger.index import SearchResult
from faceledger.metadata import check_metadata
from faceledger.names import check_name
from faceledger.names import normalize as normalize_name
from faceledger.store.db import (
    flush_log,
    notify_changes,
    open_database,
    read_transaction,
    write_transaction,
)
from faceledger.store.jobs import redact_collection, redact_person
from faceledger.store.pgvectors import PgVectorCollectionIndex, open_pgvector
from faceledger.store.schema import collections, faces, persons, vector_changes
from faceledger.store.vectors import SAVE_EVERY, CollectionIndex, stored_vectors
from faceledger.types import FloatArray

log = logging.getLogger(__name__)
MAX_FACES_PER_PERSON = 250
PGVECTOR = "pgvector"
"""The index kind kept in the database (PostgreSQL only); the others are FAISS/NumPy kinds
held in memory (see ``faceledger.index.KINDS``)."""
INDEX_BACKENDS = {"faiss": "auto", "pgvector": PGVECTOR}
"""The ``index`` setting's values and the store's index kind for each."""


@dataclass(slots=True)
class Tx:
    """An open write transaction of the store and the work to do once it has committed.

    The in-memory indexes change only after the commit (:meth:`Store.transaction` runs
    the ``after_commit`` actions), so a rolled-back transaction leaves them untouched.
    """

    conn: Connection
    _after: list[Callable[[], None]] = field(default_factory=list)

    def after_commit(self, action: Callable[[], None]) -> None:
        self._after.append(action)


def now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # SQLite returns naive datetimes; all are stored in UTC
    return value


@dataclass(frozen=True, slots=True)
class CollectionRecord:
    id: int
    name: str
    model_pack: str
    model_id: str
    embedding_dim: int
    require_consent: bool
    store_images: bool
    created_at: datetime
    calibration_id: str | None = None
    """The calibration its searches use; None for the model pack's shipped one."""


@dataclass(frozen=True, slots=True)
class PersonRecord:
    id: int
    collection: str
    name: str
    metadata: dict[str, Any]
    consent: str | None
    retain_until: datetime | None
    created_at: datetime
    face_count: int = 0
    pseudonym: str = ""
    """How the audit ledger names this person (random; gone with the person)."""


@dataclass(frozen=True, slots=True)
class FaceRecord:
    id: int
    collection: str
    person: str | None
    box: list[float] | None
    quality: dict[str, Any] | None
    source: str | None
    image_sha256: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewFace:
    """A face to store: its embedding ``(d,)`` float32 L2-normalised and what is known of it."""

    embedding: FloatArray
    box: list[float] | None = None
    quality: dict[str, Any] | None = None
    source: str | None = None
    image_sha256: str | None = None
    image: bytes | None = field(default=None, repr=False)


class Store:
    """Collections of persons and faces under a data directory (or a database URL)."""

    def __init__(
        self,
        data_dir: Path | str,
        *,
        index_kind: str = "auto",
        database_url: str | None = None,
        save_every: int = SAVE_EVERY,
    ) -> None:
        if index_kind == PGVECTOR and not (database_url or "").startswith("postgresql"):
            raise StoreError(  # before anything is created: SQLite has no pgvector
                "the pgvector index needs a PostgreSQL store "
                "(FACELEDGER_DB_URL or --db postgresql+psycopg://...)"
            )
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._engine = open_database(database_url or self.data_dir)
        if index_kind == PGVECTOR:
            try:
                open_pgvector(self._engine)  # refuses SQLite, or a server without pgvector
            except BaseException:
                self._engine.dispose()
                raise
        self._index_dir = self.data_dir / "index"
        self._index_dir.mkdir(exist_ok=True)
        self._index_kind = index_kind
        self._save_every = save_every
        self._indexes: dict[int, CollectionIndex | PgVectorCollectionIndex] = {}
        self._lock = threading.Lock()

    @property
    def engine(self) -> Any:
        """The SQLAlchemy engine (for modules that share the database, such as the ledger)."""
        return self._engine

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One write transaction (SQLite's write lock from the first statement).

        Store writes given this ``tx`` join it; they all commit or roll back together, and
        the vector indexes are updated after the commit.
        """
        with write_transaction(self._engine) as conn:
            tx = Tx(conn)
            yield tx
        for action in tx._after:
            action()

    @contextmanager
    def _read(self, tx: Tx | None) -> Iterator[Connection]:
        """The caller's transaction, or a read snapshot of our own."""
        if tx is not None:
            yield tx.conn
        else:
            with read_transaction(self._engine) as conn:
                yield conn

    @contextmanager
    def _write(self, tx: Tx | None) -> Iterator[Tx]:
        """Join the caller's transaction, or run in one of our own."""
        if tx is not None:
            yield tx
        else:
            with self.transaction() as own:
                yield own

    def close(self) -> None:
        """Save every open index and release the database."""
        for idx in self._indexes.values():
            idx.save()
        self._indexes.clear()
        self._engine.dispose()

    # -- collections -------------------------------------------------------------------
    def create_collection(
        self,
        name: str,
        *,
        model_pack: str,
        model_id: str,
        embedding_dim: int,
        require_consent: bool = True,
        store_images: bool = False,
        tx: Tx | None = None,
    ) -> CollectionRecord:
        """Create a collection bound for life to one model pack's embedding space."""
        name = _check_name(name, "collection")
        with self._write(tx) as t:
            try:
                t.conn.execute(
                    insert(collections).values(
                        name=name,
                        model_pack=model_pack,
                        model_id=model_id,
                        embedding_dim=embedding_dim,
                        require_consent=require_consent,
                        store_images=store_images,
                        vectors_pruned_through=0,
                        created_at=now(),
                    )
                )
            except IntegrityError:
                raise Conflict(f"collection {name!r} already exists") from None
            return _collection_row(t.conn, name)

    def get_collection(self, name: str) -> CollectionRecord:
        with read_transaction(self._engine) as conn:
            return _collection_row(conn, name)

    def list_collections(self) -> list[CollectionRecord]:
        with read_transaction(self._engine) as conn:
            rows = conn.execute(select(collections).order_by(collections.c.name)).all()
        return [_collection(r) for r in rows]

    def set_calibration(
        self, name: str, calibration_id: str | None, *, tx: Tx | None = None
    ) -> CollectionRecord:
        """Make a collection's searches use another calibration (None: the shipped one)."""
        with self._write(tx) as t:
            col = _collection_row(t.conn, name)
            t.conn.execute(
                update(collections)
                .where(collections.c.id == col.id)
                .values(calibration_id=calibration_id)
            )
            return _collection_row(t.conn, name)

    def delete_collection(self, name: str, *, tx: Tx | None = None) -> None:
        """Erase a collection with all its persons, faces, vectors and index files."""
        with self._write(tx) as t:
            col = _collection_row(t.conn, name)
            conn = t.conn
            conn.execute(delete(faces).where(faces.c.collection_id == col.id))
            conn.execute(delete(persons).where(persons.c.collection_id == col.id))
            conn.execute(delete(vector_changes).where(vector_changes.c.collection_id == col.id))
            conn.execute(delete(collections).where(collections.c.id == col.id))
            redact_collection(conn, col.name)
            t.after_commit(lambda: self._drop_index(col))
            t.after_commit(self._flush_log)

    def _drop_index(self, col: CollectionRecord) -> None:
        with self._lock:
            idx = self._indexes.pop(col.id, None)
        if idx is None:
            idx = self._open_index(col)
        idx.drop_files()

    def catch_up(self, collection_ids: set[int] | None = None) -> None:
        """Replay changes other processes committed into the open indexes (all, or these)."""
        with self._lock:
            open_ = [
                idx
                for cid, idx in self._indexes.items()
                if collection_ids is None or cid in collection_ids
            ]
        for idx in open_:
            idx.sync()

    def index(self, collection: CollectionRecord) -> CollectionIndex | PgVectorCollectionIndex:
        """The collection's vector index, opened (and repaired) on first use."""
        with self._lock:
            idx = self._indexes.get(collection.id)
            if idx is None:
                idx = self._open_index(collection)
                self._indexes[collection.id] = idx
            return idx

    def _open_index(self, col: CollectionRecord) -> CollectionIndex | PgVectorCollectionIndex:
        """The one place choosing the index: in the database (pgvector) or in memory."""
        if self._index_kind == PGVECTOR:
            return PgVectorCollectionIndex(
                self._engine, col.id, col.embedding_dim, save_every=self._save_every
            )
        return CollectionIndex(
            self._engine,
            col.id,
            col.embedding_dim,
            self._index_dir,
            kind=self._index_kind,
            save_every=self._save_every,
        )

    # -- persons -----------------------------------------------------------------------
    def create_person(
        self,
        collection: str,
        name: str,
        *,
        consent: str | None = None,
        metadata: dict[str, Any] | None = None,
        retain_until: datetime | None = None,
        tx: Tx | None = None,
    ) -> PersonRecord:
        """Create a person; the collection may require a consent reference."""
        name = _check_name(name, "person")
        metadata = check_metadata(metadata or {})
        with self._write(tx) as t:
            col = _collection_row(t.conn, collection)
            _check_consent(col, consent)
            try:
                t.conn.execute(
                    insert(persons).values(
                        collection_id=col.id,
                        name=name,
                        metadata=metadata or {},
                        consent=consent,
                        retain_until=retain_until,
                        created_at=now(),
                        pseudonym=new_pseudonym(),
                    )
                )
            except IntegrityError:
                raise Conflict(f"person {name!r} already exists in {collection!r}") from None
            return _person(_person_row(t.conn, col.id, name), col.name)

    def get_person(self, collection: str, name: str, *, tx: Tx | None = None) -> PersonRecord:
        """A person with their face count (seen from ``tx`` when given)."""
        with self._read(tx) as conn:
            col = _collection_row(conn, collection)
            row = _person_row(conn, col.id, name)
            return _person(row, col.name, _face_count(conn, row.id))

    def pseudonyms(
        self, collection: str, names: Sequence[str], *, tx: Tx | None = None
    ) -> dict[str, str]:
        """``name -> pseudonym`` of the named persons that exist (as seen by ``tx``)."""
        given = {normalize_name(n): n for n in names}
        wanted = sorted(given)
        if not wanted:
            return {}
        out: dict[str, str] = {}
        with self._read(tx) as conn:
            col = _collection_row(conn, collection)
            for lo in range(0, len(wanted), 500):
                rows = conn.execute(
                    select(persons.c.name, persons.c.pseudonym).where(
                        persons.c.collection_id == col.id,
                        persons.c.name.in_(wanted[lo : lo + 500]),
                    )
                ).all()
                out.update({given[str(r[0])]: str(r[1]) for r in rows})
        return out

    def enrolled_hashes(self, collection: str, person: str, *, tx: Tx | None = None) -> set[str]:
        """SHA-256 of every image enrolled for a person (none if the person does not exist)."""
        with self._read(tx) as conn:
            col = _collection_row(conn, collection)
            rows = conn.execute(
                select(faces.c.image_sha256)
                .join(persons, persons.c.id == faces.c.person_id)
                .where(persons.c.collection_id == col.id, persons.c.name == normalize_name(person))
            ).all()
        return {str(r[0]) for r in rows if r[0]}

    def move_faces(
        self,
        collection: str,
        to: str,
        *,
        face_ids: Sequence[int] | None = None,
        person: str | None = None,
        tx: Tx | None = None,
    ) -> int:
        """Give faces (by id, or all of ``person``'s) to the existing person ``to``.

        Vectors and face ids do not change, so the index needs no update. Returns the
        number of faces moved.
        """
        with self._write(tx) as t:
            col = _collection_row(t.conn, collection)
            target = _person_row(t.conn, col.id, to).id
            condition = faces.c.collection_id == col.id
            if face_ids is not None:
                ids = [int(i) for i in face_ids]
                found = set(
                    t.conn.scalars(select(faces.c.id).where(condition, faces.c.id.in_(ids))).all()
                )
                if missing := sorted(set(ids) - found):
                    raise NotFound(f"face(s) {missing} not found in {collection!r}")
                condition = and_(condition, faces.c.id.in_(ids))
            if person is not None:
                source = _person_row(t.conn, col.id, person).id
                condition = and_(condition, faces.c.person_id == source)
            moving = list(
                t.conn.scalars(select(faces.c.id).where(condition, faces.c.person_id != target))
            )
            self._check_face_limit(t.conn, [target] * len(moving))
            if moving:
                t.conn.execute(update(faces).where(faces.c.id.in_(moving)).values(person_id=target))
            return len(moving)

    def list_persons(
        self, collection: str, *, offset: int = 0, limit: int = 100
    ) -> list[PersonRecord]:
        """Persons of a collection ordered by name, one page at a time."""
        col = self.get_collection(collection)
        counts = (
            select(faces.c.person_id, func.count().label("n"))
            .where(faces.c.collection_id == col.id)
            .group_by(faces.c.person_id)
            .subquery()
        )
        with read_transaction(self._engine) as conn:
            rows = conn.execute(
                select(persons, func.coalesce(counts.c.n, 0))
                .outerjoin(counts, counts.c.person_id == persons.c.id)
                .where(persons.c.collection_id == col.id)
                .order_by(persons.c.name)
                .offset(offset)
                .limit(limit)
            ).all()
        return [_person(r, col.name, int(r[-1])) for r in rows]

    def count_persons_with_faces(self, collection: str) -> int:
        """Persons of a collection with at least one face: N of its gallery (one query, an
        index probe per person; faces of other collections are never read)."""
        col = self.get_collection(collection)
        has_face = select(faces.c.id).where(faces.c.person_id == persons.c.id).exists()
        with read_transaction(self._engine) as conn:
            n = conn.scalar(
                select(func.count())
                .select_from(persons)
                .where(persons.c.collection_id == col.id, has_face)
            )
        return int(n or 0)

    def face_counts(self, person_ids: Sequence[int]) -> dict[int, int]:
        """Enrolled faces of each of ``person_ids`` in one query (absent: 0)."""
        if not person_ids:
            return {}
        wanted = sorted(set(person_ids))
        with read_transaction(self._engine) as conn:
            rows = conn.execute(
                select(faces.c.person_id, func.count())
                .where(faces.c.person_id.in_(wanted))
                .group_by(faces.c.person_id)
            ).all()
        found = {int(pid): int(n) for pid, n in rows}
        return {pid: found.get(pid, 0) for pid in wanted}

    def update_person(
        self,
        collection: str,
        name: str,
        *,
        new_name: str | None = None,
        metadata: dict[str, Any] | None = None,
        consent: str | None = None,
        retain_until: datetime | None = None,
        tx: Tx | None = None,
    ) -> PersonRecord:
        """Rename a person, or change metadata, consent or retention (``None``: unchanged)."""
        values: dict[str, Any] = {}
        if new_name is not None:
            new_name = _check_name(new_name, "person")
        if new_name is not None and new_name != normalize_name(name):
            values["name"] = new_name
        if metadata is not None:
            values["metadata"] = check_metadata(metadata)
        if consent is not None:
            values["consent"] = consent
        if retain_until is not None:
            values["retain_until"] = retain_until
        with self._write(tx) as t:
            col = _collection_row(t.conn, collection)
            row = _person_row(t.conn, col.id, name)
            if values:
                try:
                    t.conn.execute(update(persons).where(persons.c.id == row.id).values(**values))
                except IntegrityError:
                    raise Conflict(
                        f"person {new_name!r} already exists in {collection!r}"
                    ) from None
            renamed = values.get("name", name)
            return _person(
                _person_row(t.conn, col.id, renamed), col.name, _face_count(t.conn, row.id)
            )

    def delete_person(self, collection: str, name: str, *, tx: Tx | None = None) -> int:
        """Erase a person and all their faces from database and index at once, and their
        name and thumbnails from stored video job results.

        Returns the number of faces erased.
        """
        with self._write(tx) as t:
            col = _collection_row(t.conn, collection)
            row = _person_row(t.conn, col.id, name)
            removed = self._delete_faces(t, col, faces.c.person_id == row.id)
            t.conn.execute(delete(persons).where(persons.c.id == row.id))
            redact_person(t.conn, col.name, name)
        return int(removed.size)

    def expired_persons(self, at: datetime | None = None) -> list[PersonRecord]:
        """Persons whose retention date has passed."""
        moment = at or now()
        with read_transaction(self._engine) as conn:
            rows = conn.execute(
                select(persons, collections.c.name)
                .join(collections, collections.c.id == persons.c.collection_id)
                .where(and_(persons.c.retain_until.is_not(None), persons.c.retain_until <= moment))
            ).all()
        return [_person(r, r[-1]) for r in rows]

    # -- faces -------------------------------------------------------------------------
    def add_faces(
        self,
        collection: str,
        person: str | None,
        new_faces: Sequence[NewFace],
        *,
        create_person: bool = False,
        consent: str | None = None,
        tx: Tx | None = None,
    ) -> list[int]:
        """Store faces for a person (or unattached, for a face list) in one transaction.

        The person is looked up inside the write transaction, so a face can never be
        stored for a person erased meanwhile. With ``create_person`` a missing person is
        created in the same transaction. Returns the new face ids.
        """
        with self._write(tx) as t:
            col = _collection_row(t.conn, collection)
            vectors = _check_vectors(new_faces, col.embedding_dim)
            person_id = None
            if person is not None:
                person_id = self._ensure_person(
                    t.conn, col, person, create=create_person, consent=consent
                )
                self._check_face_limit(t.conn, [person_id] * len(new_faces))
            ids = self._insert_faces(
                t.conn, col, [person_id] * len(new_faces), new_faces, vectors, now()
            )
            self._added(t, col, ids, vectors)
        return [int(i) for i in ids]

    def add_faces_bulk(
        self,
        collection: str,
        items: Sequence[tuple[str, NewFace]],
        *,
        consent: str | None = None,
        tx: Tx | None = None,
    ) -> list[int]:
        """Store many ``(person, face)`` items in one transaction, creating persons as needed."""
        names = list(dict.fromkeys(p for p, _ in items))
        with self._write(tx) as t:
            col = _collection_row(t.conn, collection)
            vectors = _check_vectors([f for _, f in items], col.embedding_dim)
            person_ids = self._ensure_persons(t.conn, col, names, consent=consent)
            owners = [person_ids[name] for name, _ in items]
            self._check_face_limit(t.conn, owners)
            ids = self._insert_faces(t.conn, col, owners, [f for _, f in items], vectors, now())
            self._added(t, col, ids, vectors)
        return [int(i) for i in ids]

    def delete_face(self, collection: str, face_id: int, *, tx: Tx | None = None) -> None:
        """Erase one face from database and index at once."""
        with self._write(tx) as t:
            col = _collection_row(t.conn, collection)
            removed = self._delete_faces(t, col, faces.c.id == face_id)
            if removed.size == 0:
                raise NotFound(f"face {face_id} not found in {collection!r}")

    def list_faces(
        self, collection: str, person: str | None = None, *, offset: int = 0, limit: int = 1000
    ) -> list[FaceRecord]:
        col = self.get_collection(collection)
        query = (
            select(faces, persons.c.name)
            .outerjoin(persons, persons.c.id == faces.c.person_id)
            .where(faces.c.collection_id == col.id)
        )
        with read_transaction(self._engine) as conn:
            if person is not None:
                query = query.where(faces.c.person_id == _person_row(conn, col.id, person).id)
            rows = conn.execute(query.order_by(faces.c.id).offset(offset).limit(limit)).all()
        return [_face(r, col.name) for r in rows]

    def face_embeddings(self, collection: str, person: str) -> tuple[np.ndarray, FloatArray]:
        """Face ids and embeddings ``(n, d)`` of one person."""
        col = self.get_collection(collection)
        with read_transaction(self._engine) as conn:
            pid = _person_row(conn, col.id, person).id
            rows = conn.execute(
                select(faces.c.id, faces.c.embedding).where(faces.c.person_id == pid)
            ).all()
        return _unpack(rows, col.embedding_dim)

    def face_vectors(self, collection: CollectionRecord, face_ids: np.ndarray) -> FloatArray:
        """Embeddings ``(n, d)`` of sorted ``face_ids``, as the rerank reads them
        (:func:`stored_vectors`): a NaN row for a face the collection does not hold."""
        if face_ids.size == 0:
            return np.zeros((0, collection.embedding_dim), np.float32)
        with read_transaction(self._engine) as conn:
            return stored_vectors(conn, collection.id, collection.embedding_dim, face_ids)

    def face_owners(self, face_ids: Sequence[int]) -> dict[int, tuple[int | None, str | None]]:
        """``face id -> (person id, person name)`` for faces that exist (face-list faces: None)."""
        if not face_ids:
            return {}
        with read_transaction(self._engine) as conn:
            rows = conn.execute(
                select(faces.c.id, faces.c.person_id, persons.c.name)
                .outerjoin(persons, persons.c.id == faces.c.person_id)
                .where(faces.c.id.in_(list(face_ids)))
            ).all()
        return {int(r[0]): (r[1], r[2]) for r in rows}

    def search(self, collection: CollectionRecord, queries: FloatArray, k: int) -> SearchResult:
        """The ``k`` nearest stored faces of each query ``(q, d)``, reflecting every commit."""
        return self.index(collection).search(queries, k)

    def collection_embeddings(
        self, collection: str
    ) -> tuple[np.ndarray, FloatArray, list[str | None]]:
        """All face ids, embeddings and person names of a collection (for grouping)."""
        col = self.get_collection(collection)
        with read_transaction(self._engine) as conn:
            rows = conn.execute(
                select(faces.c.id, faces.c.embedding, persons.c.name)
                .outerjoin(persons, persons.c.id == faces.c.person_id)
                .where(faces.c.collection_id == col.id)
                .order_by(faces.c.id)
            ).all()
        ids, vectors = _unpack([(r[0], r[1]) for r in rows], col.embedding_dim)
        return ids, vectors, [r[2] for r in rows]

    # -- internals ---------------------------------------------------------------------
    def _ensure_person(
        self,
        conn: Connection,
        col: CollectionRecord,
        name: str,
        *,
        create: bool,
        consent: str | None,
    ) -> int:
        if not create:
            row = conn.execute(
                select(persons.c.id).where(
                    persons.c.collection_id == col.id, persons.c.name == normalize_name(name)
                )
            ).first()
            if row is None:
                raise NotFound(f"person {name!r} not found in {col.name!r}")
            return int(row[0])
        return self._ensure_persons(conn, col, [name], consent=consent)[name]

    def _ensure_persons(
        self, conn: Connection, col: CollectionRecord, names: Sequence[str], *, consent: str | None
    ) -> dict[str, int]:
        """Ids of the named persons, creating the missing ones (in two statements per chunk)."""
        given = list(names)
        names = [normalize_name(n) for n in given]
        found: dict[str, int] = {}
        for lo in range(0, len(names), 500):
            chunk = list(names[lo : lo + 500])
            rows = conn.execute(
                select(persons.c.name, persons.c.id).where(
                    persons.c.collection_id == col.id, persons.c.name.in_(chunk)
                )
            ).all()
            found.update({str(r[0]): int(r[1]) for r in rows})
        missing = list(dict.fromkeys(n for n in names if n not in found))
        if missing:
            for name in missing:
                _check_name(name, "person")
            _check_consent(col, consent)
            created = now()
            values: list[dict[str, Any]] = [
                {
                    "collection_id": col.id,
                    "name": n,
                    "metadata": {},
                    "consent": consent,
                    "created_at": created,
                    "pseudonym": new_pseudonym(),
                }
                for n in missing
            ]
            result = conn.execute(
                insert(persons).returning(
                    persons.c.name, persons.c.id, sort_by_parameter_order=True
                ),
                values,
            )
            found.update({str(r[0]): int(r[1]) for r in result.all()})
        return {g: found[n] for g, n in zip(given, names, strict=True)}

    @staticmethod
    def _check_face_limit(conn: Connection, owners: Sequence[int]) -> None:
        """Refuse a write that would give any person more than MAX_FACES_PER_PERSON faces."""
        adding: dict[int, int] = {}
        for pid in owners:
            adding[pid] = adding.get(pid, 0) + 1
        pids = list(adding)
        for lo in range(0, len(pids), 500):
            chunk = pids[lo : lo + 500]
            rows = conn.execute(
                select(faces.c.person_id, func.count())
                .where(faces.c.person_id.in_(chunk))
                .group_by(faces.c.person_id)
            ).all()
            existing = {int(r[0]): int(r[1]) for r in rows}
            if any(existing.get(p, 0) + adding[p] > MAX_FACES_PER_PERSON for p in chunk):
                raise LimitExceeded(f"a person holds at most {MAX_FACES_PER_PERSON} faces")

    @staticmethod
    def _insert_faces(
        conn: Connection,
        col: CollectionRecord,
        person_ids: Sequence[int | None],
        new_faces: Sequence[NewFace],
        vectors: FloatArray,
        created: datetime,
    ) -> np.ndarray:
        rows = [
            {
                "collection_id": col.id,
                "person_id": person_ids[i],
                "embedding": vectors[i].tobytes(),
                "box": f.box,
                "quality": f.quality,
                "source": f.source,
                "image_sha256": f.image_sha256,
                "image": f.image if col.store_images else None,
                "created_at": created,
            }
            for i, f in enumerate(new_faces)
        ]
        result = conn.execute(
            insert(faces).returning(faces.c.id, sort_by_parameter_order=True), rows
        )
        return np.array([r[0] for r in result.all()], dtype=np.int64)

    @staticmethod
    def _log(conn: Connection, collection_id: int, ids: np.ndarray, op: str) -> int:
        if ids.size:
            conn.execute(
                insert(vector_changes),
                [{"collection_id": collection_id, "face_id": int(i), "op": op} for i in ids],
            )
            notify_changes(conn, collection_id)  # PostgreSQL: wakes the other replicas
        return Store._last_seq(conn)

    @staticmethod
    def _last_seq(conn: Connection) -> int:
        return int(conn.scalar(select(func.coalesce(func.max(vector_changes.c.seq), 0))) or 0)

    def _added(self, t: Tx, col: CollectionRecord, ids: np.ndarray, vectors: FloatArray) -> None:
        """Log added vectors; the index takes them once the transaction has committed."""
        seq = self._log(t.conn, col.id, ids, "a")
        if self._index_kind == PGVECTOR:  # the vectors commit with their faces
            PgVectorCollectionIndex.stage(t.conn, col.id, ids, vectors)
        t.after_commit(lambda: self.index(col).apply(ids, vectors, np.zeros(0, np.int64), seq))

    def _delete_faces(self, t: Tx, col: CollectionRecord, condition: Any) -> np.ndarray:
        """Delete matching faces and log it; the index drops them once committed."""
        ids = np.array(
            t.conn.scalars(
                select(faces.c.id).where(faces.c.collection_id == col.id, condition)
            ).all(),
            dtype=np.int64,
        )
        if ids.size:
            t.conn.execute(delete(faces).where(faces.c.id.in_(ids.tolist())))
            seq = self._log(t.conn, col.id, ids, "d")
            empty = np.zeros((0, col.embedding_dim), np.float32)
            t.after_commit(lambda: self.index(col).apply(np.zeros(0, np.int64), empty, ids, seq))
            t.after_commit(self._flush_log)
        return ids

    def _flush_log(self) -> None:
        """After an erasure: empty the write-ahead log, which still holds erased rows."""
        if not flush_log(self._engine):
            log.warning("the database log could not be emptied after an erasure (busy readers)")


def new_pseudonym() -> str:
    """A fresh random person id for the ledger (64 bits: unlinkable to the name)."""
    return f"p_{secrets.token_hex(8)}"


def _check_name(name: str, what: str) -> str:
    return check_name(name, what)


def _check_consent(col: CollectionRecord, consent: str | None) -> None:
    if col.require_consent and not (consent and consent.strip()):
        from faceledger.errors import ConsentRequired

        raise ConsentRequired(
            f"collection {col.name!r} requires a consent reference for every person: give "
            'one (CLI --consent REF; HTTP "consent" in the person\'s body), or create the '
            "collection without the requirement (--no-require-consent / require_consent=false)"
        )


def _check_vectors(new_faces: Sequence[NewFace], dim: int) -> FloatArray:
    if not new_faces:
        raise InvalidArgument("no faces to store")
    vectors = np.stack([np.asarray(f.embedding, dtype=np.float32) for f in new_faces])
    if vectors.shape[1:] != (dim,):
        raise InvalidArgument(
            f"embeddings must be {dim}-d for this collection, got {vectors.shape[1:]}"
        )
    return np.ascontiguousarray(vectors)


def _unpack(rows: Sequence[Any], dim: int) -> tuple[np.ndarray, FloatArray]:
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    if not rows:
        return ids, np.zeros((0, dim), np.float32)
    vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
    return ids, vectors.copy()


def _collection_row(conn: Connection, name: str) -> CollectionRecord:
    row = conn.execute(
        select(collections).where(collections.c.name == normalize_name(name))
    ).first()
    if row is None:
        raise NotFound(f"collection {name!r} not found")
    return _collection(row)


def _face_count(conn: Connection, person_id: int) -> int:
    n = conn.scalar(select(func.count()).select_from(faces).where(faces.c.person_id == person_id))
    return int(n or 0)


def _person_row(conn: Connection, collection_id: int, name: str) -> Row[Any]:
    row = conn.execute(
        select(persons).where(
            persons.c.collection_id == collection_id, persons.c.name == normalize_name(name)
        )
    ).first()
    if row is None:
        raise NotFound(f"person {name!r} not found")
    return row


def _collection(row: Row[Any]) -> CollectionRecord:
    m = row._mapping
    return CollectionRecord(
        id=m["id"],
        name=m["name"],
        model_pack=m["model_pack"],
        model_id=m["model_id"],
        embedding_dim=m["embedding_dim"],
        require_consent=bool(m["require_consent"]),
        store_images=bool(m["store_images"]),
        created_at=_aware(m["created_at"]) or now(),
        calibration_id=m["calibration_id"],
    )


def _person(row: Row[Any], collection: str, face_count: int = 0) -> PersonRecord:
    m = row._mapping
    return PersonRecord(
        id=m["id"],
        collection=collection,
        name=m["name"],
        metadata=dict(m["metadata"] or {}),
        consent=m["consent"],
        retain_until=_aware(m["retain_until"]),
        created_at=_aware(m["created_at"]) or now(),
        face_count=face_count,
        pseudonym=m["pseudonym"] or "",
    )


def _face(row: Row[Any], collection: str) -> FaceRecord:
    m = row._mapping
    return FaceRecord(
        id=m["id"],
        collection=collection,
        person=row[-1],
        box=m["box"],
        quality=m["quality"],
        source=m["source"],
        image_sha256=m["image_sha256"],
        created_at=_aware(m["created_at"]) or now(),
    )
