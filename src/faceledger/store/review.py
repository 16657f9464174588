"""Rows of the review console: sessions, review settings, items, decisions, rejections.

Review items belong to the candidate person (``ON DELETE CASCADE``): erasing a person
erases their items, probe crops, decisions and "not this person" list in the erasing
transaction. Decided items lose their probe crop once ``erase_after`` has passed
(:meth:`ReviewStore.purge`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from faceledger.errors import Conflict, NotFound
from faceledger.store.db import read_transaction
from faceledger.store.schema import (
    collections,
    console_sessions,
    faces,
    persons,
    review_decisions,
    review_items,
    review_rejections,
    review_settings,
)
from faceledger.types import FloatArray

OPEN = "open"
DISPUTED = "disputed"
STATUSES = ("open", "confirmed", "rejected", "unsure", "disputed")


@dataclass(frozen=True, slots=True)
class ReviewSettings:
    """When a collection's search results become review items, and who must agree.

    ``mode``: ``always``, ``above`` (candidates whose stated false match rate is at most
    ``max_fmr``) or ``never``; ``reviewers``: 1, or 2 for a blind second examination;
    ``retain_days``: how long a decided item's probe crop is kept.
    """

    mode: str = "always"
    max_fmr: float | None = None
    reviewers: int = 1
    retain_days: int = 30


@dataclass(frozen=True, slots=True)
class Decision:
    key_id: str
    decision: str
    note: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """A probe face offered as a candidate person, and the reviewers' decisions."""

    id: int
    collection: str
    person: str
    person_id: int
    face_id: int | None
    operation: str
    similarity: float
    fmr: float
    quality: dict[str, Any] | None
    has_crop: bool
    status: str
    created_at: datetime
    decided_at: datetime | None
    erase_after: datetime | None
    pseudonym: str = ""
    decisions: list[Decision] = field(default_factory=list)
    source_sha256: str | None = None
    """SHA-256 of the probe's image, or of the video for ``video.identify`` items."""


@dataclass(frozen=True, slots=True)
class SessionRecord:
    key_id: str
    csrf: str
    expires_at: datetime


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class ReviewStore:
    """SQL for the console; writes join the caller's connection (its transaction)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @contextmanager
    def _read(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
        else:
            with read_transaction(self._engine) as own:
                yield own

    # -- sessions -----------------------------------------------------------------------
    def add_session(
        self, conn: Connection, token_hash: str, key_id: str, csrf: str, at: datetime, ttl: float
    ) -> SessionRecord:
        expires = at + timedelta(seconds=ttl)
        conn.execute(
            insert(console_sessions).values(
                token_hash=token_hash, key_id=key_id, csrf=csrf, created_at=at, expires_at=expires
            )
        )
        return SessionRecord(key_id, csrf, expires)

    def session(self, token_hash: str, at: datetime) -> SessionRecord | None:
        """The live session of a token hash: None if unknown, signed out or expired."""
        with self._read(None) as conn:
            row = conn.execute(
                select(console_sessions).where(console_sessions.c.token_hash == token_hash)
            ).first()
        if row is None or row.revoked_at is not None:
            return None
        expires = _aware(row.expires_at)
        if expires is None or expires <= at:
            return None
        return SessionRecord(row.key_id, row.csrf, expires)

    def revoke_session(self, conn: Connection, token_hash: str, at: datetime) -> bool:
        done = conn.execute(
            update(console_sessions)
            .where(
                console_sessions.c.token_hash == token_hash, console_sessions.c.revoked_at.is_(None)
            )
            .values(revoked_at=at)
        )
        return bool(done.rowcount)

    # -- settings -----------------------------------------------------------------------
    def settings(self, collection_id: int, conn: Connection | None = None) -> ReviewSettings:
        with self._read(conn) as c:
            row = c.execute(
                select(review_settings).where(review_settings.c.collection_id == collection_id)
            ).first()
        if row is None:
            return ReviewSettings()
        return ReviewSettings(row.mode, row.max_fmr, int(row.reviewers), int(row.retain_days))

    def set_settings(self, conn: Connection, collection_id: int, value: ReviewSettings) -> None:
        values = {
            "mode": value.mode,
            "max_fmr": value.max_fmr,
            "reviewers": value.reviewers,
            "retain_days": value.retain_days,
        }
        done = conn.execute(
            update(review_settings)
            .where(review_settings.c.collection_id == collection_id)
            .values(**values)
        )
        if not done.rowcount:
            conn.execute(insert(review_settings).values(collection_id=collection_id, **values))

    # -- items --------------------------------------------------------------------------
    def add_item(self, conn: Connection, **values: Any) -> int:
        result = conn.execute(insert(review_items).values(status=OPEN, **values))
        key = result.inserted_primary_key
        if key is None:  # pragma: no cover - an insert always has a key here
            raise NotFound("review item was not stored")
        return int(key[0])

    def existing(
        self, conn: Connection, person_ids: set[int], face_ids: set[int]
    ) -> tuple[set[int], set[int]]:
        """Which of these persons and faces still exist (read in the caller's transaction)."""
        people = {
            int(r[0])
            for r in conn.execute(select(persons.c.id).where(persons.c.id.in_(person_ids)))
        }
        kept = {int(r[0]) for r in conn.execute(select(faces.c.id).where(faces.c.id.in_(face_ids)))}
        return people, kept

    def rejected(self, conn: Connection, person_id: int, dim: int) -> FloatArray:
        """Probe embeddings ``(n, dim)`` rejected as this person ("not this person")."""
        rows = conn.execute(
            select(review_rejections.c.embedding).where(review_rejections.c.person_id == person_id)
        ).all()
        if not rows:
            return np.zeros((0, dim), np.float32)
        return np.stack([np.frombuffer(r[0], np.float32) for r in rows]).reshape(-1, dim)

    def add_rejection(
        self, conn: Connection, person_id: int, embedding: bytes, at: datetime
    ) -> None:
        conn.execute(
            insert(review_rejections).values(
                person_id=person_id, embedding=embedding, created_at=at
            )
        )

    def rejection_count(self, person_id: int) -> int:
        """How many probe faces reviewers rejected as this person."""
        with self._read(None) as conn:
            return len(
                conn.execute(
                    select(review_rejections.c.id).where(review_rejections.c.person_id == person_id)
                ).all()
            )

    def _query(self) -> Any:
        return (
            select(review_items, persons.c.name, persons.c.pseudonym, collections.c.name)
            .join(persons, persons.c.id == review_items.c.person_id)
            .join(collections, collections.c.id == review_items.c.collection_id)
        )

    def items(
        self,
        *,
        statuses: Sequence[str] = (OPEN, DISPUTED),
        collection: str | None = None,
        limit: int = 200,
    ) -> list[ReviewItem]:
        query = self._query().where(review_items.c.status.in_(list(statuses)))
        if collection is not None:
            query = query.where(collections.c.name == collection)
        with self._read(None) as conn:
            rows = conn.execute(query.order_by(review_items.c.id).limit(limit)).all()
            return [self._item(conn, r) for r in rows]

    def item(self, item_id: int, conn: Connection | None = None) -> ReviewItem:
        with self._read(conn) as c:
            row = c.execute(self._query().where(review_items.c.id == item_id)).first()
            if row is None:
                raise NotFound(f"review item {item_id} not found")
            return self._item(c, row)

    def probe(self, item_id: int, conn: Connection) -> tuple[bytes | None, bytes]:
        """The item's probe crop (JPEG, or None once erased) and probe embedding bytes."""
        row = conn.execute(
            select(review_items.c.probe_crop, review_items.c.probe_embedding).where(
                review_items.c.id == item_id
            )
        ).first()
        if row is None:
            raise NotFound(f"review item {item_id} not found")
        return row[0], row[1]

    def crop(self, item_id: int) -> bytes | None:
        with self._read(None) as conn:
            return self.probe(item_id, conn)[0]

    @staticmethod
    def _item(conn: Connection, row: Any) -> ReviewItem:
        m = row._mapping
        decisions = [
            Decision(d.key_id, d.decision, d.note, _aware(d.created_at) or d.created_at)
            for d in conn.execute(
                select(review_decisions)
                .where(review_decisions.c.item_id == m["id"])
                .order_by(review_decisions.c.id)
            ).all()
        ]
        return ReviewItem(
            id=int(m["id"]),
            collection=row[-1],
            person=row[-3],
            person_id=int(m["person_id"]),
            face_id=m["face_id"],
            operation=m["operation"],
            similarity=float(m["similarity"]),
            fmr=float(m["fmr"]),
            quality=m["quality"],
            has_crop=m["probe_crop"] is not None,
            status=m["status"],
            created_at=_aware(m["created_at"]) or m["created_at"],
            decided_at=_aware(m["decided_at"]),
            erase_after=_aware(m["erase_after"]),
            pseudonym=row[-2] or "",
            decisions=decisions,
            source_sha256=m["image_sha256"],
        )

    def add_decision(
        self,
        conn: Connection,
        item_id: int,
        *,
        key_id: str,
        decision: str,
        note: str | None,
        at: datetime,
    ) -> None:
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(review_decisions).values(
                        item_id=item_id, key_id=key_id, decision=decision, note=note, created_at=at
                    )
                )
        except IntegrityError:
            raise Conflict(
                f"this key has already decided review item {item_id}: "
                "a second review needs a different reviewer"
            ) from None

    def set_status(
        self,
        conn: Connection,
        item_id: int,
        status: str,
        *,
        decided_at: datetime | None,
        erase_after: datetime | None,
    ) -> None:
        conn.execute(
            update(review_items)
            .where(review_items.c.id == item_id)
            .values(status=status, decided_at=decided_at, erase_after=erase_after)
        )

    @staticmethod
    def _due(at: datetime) -> Any:
        return and_(
            review_items.c.erase_after.is_not(None),
            review_items.c.erase_after <= at,
            review_items.c.probe_crop.is_not(None),
        )

    def purge_due(self, at: datetime, conn: Connection | None = None) -> bool:
        """Whether any decided item's probe crop is past its retention (by an index)."""
        with self._read(conn) as c:
            found = c.execute(select(review_items.c.id).where(self._due(at)).limit(1)).first()
        return found is not None

    def purge(self, conn: Connection, at: datetime) -> int:
        """Drop the probe crops of decided items past their retention; how many."""
        done = conn.execute(update(review_items).where(self._due(at)).values(probe_crop=None))
        return int(done.rowcount or 0)

    # -- enrolled face images -----------------------------------------------------------
    def face_image(self, face_id: int) -> tuple[bytes | None, list[float] | None, str, str | None]:
        """A face's stored image (None unless its collection stores images), its box, its
        collection and its person's name.

        Raises:
            NotFound: no such face.
        """
        with self._read(None) as conn:
            row = conn.execute(
                select(faces.c.image, faces.c.box, collections.c.name, persons.c.name)
                .join(collections, collections.c.id == faces.c.collection_id)
                .outerjoin(persons, persons.c.id == faces.c.person_id)
                .where(faces.c.id == face_id)
            ).first()
        if row is None:
            raise NotFound(f"face {face_id} not found")
        return row[0], row[1], row[2], row[3]
