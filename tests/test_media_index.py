"""The searchable media index: store (SQLite FTS5 and PostgreSQL), service, HTTP, CLI, client,
and one end-to-end run on a video made here (a shared face photo, drawn text, real speech)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from faceledger.errors import InvalidArgument, NotFound
from faceledger.store import Store
from faceledger.store.media import (
    MediaHit,
    MediaQuery,
    MediaStore,
    NewMediaIndex,
    NewSegment,
)
from faceledger.store.schema import media_segments

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
