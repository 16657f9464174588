"""The searchable media index: the stored results of indexed videos and their search.

Each video of a collection (bound to its SHA-256 and file name) keeps one timeline of
segments: ``person`` (an appearance interval), ``text`` (a line on screen) and ``speech``
(a transcript segment). Storing a video again replaces its timeline. A search combines
any of: a person, words said, words shown, a time range and a video; a hit is the time
where all the asked-for segments of one video overlap.

Words are matched whole, case-folded, every word of a query in the same segment (said:
the original text or its English translation). SQLite uses FTS5 (``unicode61``, diacritics
folded); PostgreSQL ``to_tsvector('simple', ...) @@ plainto_tsquery('simple', ...)`` on a
GIN index (no stemming either; accents are not folded there).

Enrolled persons are stored by id only (``ON DELETE SET NULL``): erasing a person leaves
their intervals as "erased person", with neither name nor id. Merging a person into
another gives their intervals to the survivor first (:meth:`MediaStore.move_person`, in
the merge's transaction).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from itertools import combinations
from typing import Any

from sqlalchemy import (
    ColumnClause,
    ColumnElement,
    Connection,
    Engine,
    Integer,
    and_,
    bindparam,
    column,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy import text as sql
from sqlalchemy.sql.selectable import NamedFromClause

from faceledger.errors import NotFound, StoreError
from faceledger.names import normalize
from faceledger.store.db import greatest, read_transaction
from faceledger.store.jobs import ERASED_PERSON
from faceledger.store.mediatypes import (
    MAX_PAGE,
    MAX_QUERY_WORDS,
    MediaAppearance,
    MediaHit,
    MediaPage,
    MediaQuery,
    NewMediaIndex,
    NewSegment,
    PersonSpan,
    SegmentKind,
    SpeechSpan,
    StoredVideo,
    TextSpan,
    words,
)
from faceledger.store.schema import collections, media_segments, media_videos, persons

__all__ = [
    "MAX_PAGE",
    "MAX_QUERY_WORDS",
    "MediaAppearance",
    "MediaHit",
    "MediaPage",
    "MediaQuery",
    "MediaStore",
    "NewMediaIndex",
    "NewSegment",
    "PersonSpan",
    "SegmentKind",
    "SpeechSpan",
    "StoredVideo",
    "TextSpan",
    "words",
]


def _fts5(segment: NamedFromClause, query: str, name: str) -> ColumnElement[bool]:
    match = " ".join(f'"{w}"' for w in words(query))  # words hold no quote: safe phrases
    rows = (
        sql(f"SELECT rowid FROM media_text WHERE media_text MATCH :{name}")
        .bindparams(bindparam(name, match))
        .columns(column("rowid", Integer))
    )
    return segment.c.id.in_(rows)


def _tsquery(segment: NamedFromClause, query: str, name: str) -> ColumnElement[bool]:
    # The same expression as the GIN index of migration 0008 (so the index is used).
    simple: ColumnClause[Any] = literal_column("'simple'::regconfig")
    blank: ColumnClause[Any] = literal_column("''")
    document = func.to_tsvector(
        simple,
        func.coalesce(segment.c.text, blank)
        .op("||")(literal_column("' '"))
        .op("||")(func.coalesce(segment.c.text_en, blank)),
    )
    wanted = func.plainto_tsquery(simple, bindparam(name, " ".join(words(query))))
    return document.bool_op("@@")(wanted)


_MATCHERS: dict[str, Callable[[NamedFromClause, str, str], ColumnElement[bool]]] = {
    "sqlite": _fts5,
    "postgresql": _tsquery,
}


class MediaStore:
    """SQL of the media index; writes join the caller's connection (its transaction)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        try:
            self._match = _MATCHERS[engine.dialect.name]
        except KeyError:
            raise StoreError(
                f"the media index needs SQLite or PostgreSQL, not {engine.dialect.name}"
            ) from None

    # -- writing ------------------------------------------------------------------------
    def put(self, conn: Connection, collection: str, entry: NewMediaIndex, at: datetime) -> int:
        """Store a video's timeline, replacing what the collection held for the same file.

        Named persons missing from the collection (erased meanwhile) are stored as erased
        persons. Returns the number of segments stored.

        Raises:
            NotFound: no such collection.
        """
        collection_id = _collection_id(conn, collection)
        self._drop(conn, [collection_id], video_sha256=entry.video_sha256)
        video_id = conn.execute(
            insert(media_videos)
            .values(
                collection_id=collection_id,
                video_sha256=entry.video_sha256,
                file_name=entry.file_name,
                duration=entry.duration,
                complete=entry.complete,
                speech_problem=entry.speech_problem,
                indexed_at=at,
            )
            .returning(media_videos.c.id)
        ).scalar_one()
        names = sorted({s.person for s in entry.segments if s.person is not None})
        ids = dict(
            conn.execute(
                select(persons.c.name, persons.c.id).where(
                    persons.c.collection_id == collection_id, persons.c.name.in_(names)
                )
            ).all()
        )
        rows = [
            {
                "video_id": video_id,
                "kind": s.kind,
                "t_start": float(s.start),
                "t_end": float(max(s.start, s.end)),
                "person_id": ids.get(s.person) if s.person is not None else None,
                "label": s.label if s.person is None else None,
                "text": s.text,
                "text_en": s.text_en,
                "language": s.language,
                "confidence": s.confidence,
            }
            for s in entry.segments
        ]
        if rows:
            conn.execute(insert(media_segments), rows)
        return len(rows)

    def move_person(self, conn: Connection, collection: str, source: str, into: str) -> int:
        """In the caller's transaction: give every interval of ``source`` to ``into`` (a
        merge, before ``source`` is deleted). Returns the number of intervals moved.

        Raises:
            NotFound: no such collection, or either person is missing from it.
        """
        collection_id = _collection_id(conn, collection)
        wanted = [normalize(source), normalize(into)]
        ids = dict(
            conn.execute(
                select(persons.c.name, persons.c.id).where(
                    persons.c.collection_id == collection_id, persons.c.name.in_(wanted)
                )
            ).all()
        )
        for name in wanted:
            if name not in ids:
                raise NotFound(f"person {name!r} not found in {collection!r}")
        moved = conn.execute(
            update(media_segments)
            .where(media_segments.c.person_id == ids[wanted[0]])
            .values(person_id=ids[wanted[1]])
        )
        return int(moved.rowcount or 0)

    def expire(self, conn: Connection, before: datetime) -> list[tuple[str, str]]:
        """Delete every video indexed before ``before``; their ``(collection, SHA-256)``."""
        gone = conn.execute(
            select(media_videos.c.id, collections.c.name, media_videos.c.video_sha256)
            .join(collections, collections.c.id == media_videos.c.collection_id)
            .where(media_videos.c.indexed_at < before)
            .order_by(media_videos.c.id)
        ).all()
        if gone:
            self._delete(conn, [int(r[0]) for r in gone])
        return [(str(r[1]), str(r[2])) for r in gone]

    def expired(self, before: datetime) -> int:
        """How many videos were indexed before ``before`` (a read, to skip empty sweeps)."""
        with read_transaction(self._engine) as conn:
            count = conn.scalar(
                select(func.count())
                .select_from(media_videos)
                .where(media_videos.c.indexed_at < before)
            )
        return int(count or 0)

    def _drop(self, conn: Connection, collection_ids: list[int], *, video_sha256: str) -> None:
        ids = conn.scalars(
            select(media_videos.c.id).where(
                media_videos.c.collection_id.in_(collection_ids),
                media_videos.c.video_sha256 == video_sha256,
            )
        ).all()
        if ids:
            self._delete(conn, list(ids))

    def _delete(self, conn: Connection, video_ids: list[int]) -> None:
        # Explicit rather than by cascade: the FTS5 triggers see each deleted row.
        conn.execute(delete(media_segments).where(media_segments.c.video_id.in_(video_ids)))
        conn.execute(delete(media_videos).where(media_videos.c.id.in_(video_ids)))
        if conn.dialect.name == "sqlite":
            # Merge the full-text index so deleted words leave its pages (secure_delete
            # then zeroes what is freed).
            conn.exec_driver_sql("INSERT INTO media_text(media_text) VALUES ('optimize')")

    # -- reading ------------------------------------------------------------------------
    def videos(self, collection: str) -> list[StoredVideo]:
        """The collection's indexed videos, most recently indexed first."""
        with read_transaction(self._engine) as c:
            collection_id = _collection_id(c, collection)
            counts: dict[int, dict[str, int]] = {}
            for video_id, kind, n in c.execute(
                select(media_segments.c.video_id, media_segments.c.kind, func.count())
                .join(media_videos, media_videos.c.id == media_segments.c.video_id)
                .where(media_videos.c.collection_id == collection_id)
                .group_by(media_segments.c.video_id, media_segments.c.kind)
            ):
                counts.setdefault(int(video_id), {})[str(kind)] = int(n)
            rows = c.execute(
                select(media_videos)
                .where(media_videos.c.collection_id == collection_id)
                .order_by(media_videos.c.indexed_at.desc(), media_videos.c.id.desc())
            ).all()
        return [
            StoredVideo(
                collection=collection,
                video_sha256=r.video_sha256,
                file_name=r.file_name,
                duration=r.duration,
                complete=bool(r.complete),
                speech_problem=r.speech_problem,
                indexed_at=_aware(r.indexed_at),
                segments={k: counts.get(r.id, {}).get(k, 0) for k in ("person", "text", "speech")},
            )
            for r in rows
        ]

    def appearances(self, conn: Connection, collection: str, person: str) -> list[MediaAppearance]:
        """Every stored interval naming ``person`` (read in the caller's transaction),
        by file name, video and time; none for a person missing from the collection."""
        rows = conn.execute(
            select(
                media_videos.c.video_sha256,
                media_videos.c.file_name,
                media_segments.c.t_start,
                media_segments.c.t_end,
            )
            .join(media_videos, media_videos.c.id == media_segments.c.video_id)
            .join(persons, persons.c.id == media_segments.c.person_id)
            .join(collections, collections.c.id == media_videos.c.collection_id)
            .where(
                collections.c.name == collection,
                persons.c.collection_id == collections.c.id,
                persons.c.name == normalize(person),
                media_segments.c.kind == "person",
            )
            .order_by(media_videos.c.file_name, media_videos.c.id, media_segments.c.t_start)
        ).all()
        return [MediaAppearance(collection, r[0], r[1], float(r[2]), float(r[3])) for r in rows]

    def search(self, collection: str, query: MediaQuery) -> MediaPage:
        """One page of the hits of ``query`` in one read snapshot.

        Raises:
            NotFound: no such collection, or no such person in it.
        """
        with read_transaction(self._engine) as conn:
            collection_id = _collection_id(conn, collection)
            person_id = None
            if query.person is not None:
                person_id = conn.scalar(
                    select(persons.c.id).where(
                        persons.c.collection_id == collection_id, persons.c.name == query.person
                    )
                )
                if person_id is None:
                    raise NotFound(f"person {query.person!r} not found in {collection!r}")
            parts: dict[str, NamedFromClause] = {}
            v = media_videos
            conditions: list[ColumnElement[bool]] = [v.c.collection_id == collection_id]
            if person_id is not None:
                p = parts["person"] = media_segments.alias("p")
                conditions += [p.c.kind == "person", p.c.person_id == person_id]
            if query.said:
                s = parts["said"] = media_segments.alias("s")
                conditions += [s.c.kind == "speech", self._match(s, query.said, "said_words")]
            if query.shown:
                t = parts["shown"] = media_segments.alias("t")
                conditions += [t.c.kind == "text", self._match(t, query.shown, "shown_words")]
            # Without a person, the full-text match drives the plan. Otherwise SQLite (and
            # PostgreSQL before its statistics are up to date) walks every video's segments
            # and tests each one (a rare word: 145 ms on SQLite, 1.6 s on PostgreSQL, for
            # 1,000 videos; see benchmarks/media_search.py). "+ 0" keeps the planner from
            # using the segments' video index for that join.
            driver = next(iter(parts.values())) if person_id is None else None
            for a in parts.values():
                video_of: ColumnElement[Any] = a.c.video_id
                if a is driver:
                    video_of = video_of + literal_column("0")
                conditions.append(video_of == v.c.id)
                if query.start is not None:
                    conditions.append(a.c.t_end >= query.start)
                if query.end is not None:
                    conditions.append(a.c.t_start <= query.end)
            for a, b in combinations(parts.values(), 2):  # every pair overlaps
                conditions += [a.c.t_start <= b.c.t_end, b.c.t_start <= a.c.t_end]
            if query.video:
                conditions.append(
                    or_(v.c.video_sha256 == query.video.lower(), v.c.file_name == query.video)
                )
            starts = [a.c.t_start for a in parts.values()]
            begins = starts[0] if len(starts) == 1 else greatest(*starts)
            columns: list[Any] = [v.c.video_sha256, v.c.file_name]
            for a in parts.values():
                columns += [a.c.t_start, a.c.t_end, a.c.text, a.c.text_en]
                columns += [a.c.language, a.c.confidence]
            # The total rides along each row (a window count): one pass, not two.
            base = select(*columns, func.count().over()).where(and_(*conditions))
            rows = conn.execute(
                base.order_by(v.c.file_name, v.c.id, begins, *[a.c.id for a in parts.values()])
                .offset(query.offset)
                .limit(query.limit)
            ).all()
            if rows:
                total = int(rows[0][-1])
            elif query.offset == 0:
                total = 0
            else:  # a page past the end: count on its own
                total = int(conn.scalar(select(func.count()).select_from(base.subquery())) or 0)
        hits = [_hit(row, list(parts), query.person) for row in rows]
        return MediaPage(hits=hits, total=total, offset=query.offset, limit=query.limit)


def _hit(row: Any, kinds: list[str], person: str | None) -> MediaHit:
    spans: dict[str, Any] = {}
    starts, ends = [], []
    for i, kind in enumerate(kinds):
        start, end, text, text_en, language, confidence = row[2 + 6 * i : 8 + 6 * i]
        starts.append(start)
        ends.append(end)
        if kind == "person":
            spans[kind] = PersonSpan(label=person or ERASED_PERSON, start=start, end=end)
        elif kind == "said":
            spans[kind] = SpeechSpan(start, end, text or "", text_en, language, confidence)
        else:
            spans[kind] = TextSpan(start, end, text or "", confidence)
    return MediaHit(
        video_sha256=row[0],
        file_name=row[1],
        start=round(max(starts), 3),
        end=round(min(ends), 3),
        person=spans.get("person"),
        said=spans.get("said"),
        shown=spans.get("shown"),
    )


def _collection_id(conn: Connection, name: str) -> int:
    found = conn.scalar(select(collections.c.id).where(collections.c.name == name))
    if found is None:
        raise NotFound(f"collection {name!r} not found")
    return int(found)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value  # SQLite: naive UTC
