"""The searchable media index: indexed videos and their timeline of people, text and speech.

Merges the two heads (review console, calibration). Words are searched with SQLite's
FTS5 (an external-content table over ``media_segments`` kept in step by triggers) or, on
PostgreSQL, with a GIN index over ``to_tsvector('simple', ...)``; both split words the
same way (Unicode letters and digits, case-folded, no stemming).

Revision ID: 0008_media
Revises: 0006_review, 0007_calibration
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_media"
down_revision = ("0006_review", "0007_calibration")

SQLITE_FTS = [
    "CREATE VIRTUAL TABLE media_text USING fts5(text, text_en, content='media_segments', "
    "content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER media_segments_ai AFTER INSERT ON media_segments "
    "WHEN new.kind != 'person' BEGIN "
    "INSERT INTO media_text(rowid, text, text_en) VALUES (new.id, new.text, new.text_en); END",
    "CREATE TRIGGER media_segments_ad AFTER DELETE ON media_segments "
    "WHEN old.kind != 'person' BEGIN "
    "INSERT INTO media_text(media_text, rowid, text, text_en) "
    "VALUES ('delete', old.id, old.text, old.text_en); END",
    "CREATE TRIGGER media_segments_au AFTER UPDATE OF text, text_en ON media_segments "
    "WHEN old.kind != 'person' BEGIN "
    "INSERT INTO media_text(media_text, rowid, text, text_en) "
    "VALUES ('delete', old.id, old.text, old.text_en); "
    "INSERT INTO media_text(rowid, text, text_en) VALUES (new.id, new.text, new.text_en); END",
]
POSTGRES_WORDS = (
    "CREATE INDEX ix_media_segments_words ON media_segments USING gin "
    "(to_tsvector('simple'::regconfig, coalesce(text, '') || ' ' || coalesce(text_en, '')))"
)


def upgrade() -> None:
    op.create_table(
        "media_videos",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "collection_id",
            sa.Integer,
            sa.ForeignKey("collections.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("video_sha256", sa.String(64), nullable=False),
        sa.Column("file_name", sa.Text, nullable=False),
        sa.Column("duration", sa.Float, nullable=True),
        sa.Column("complete", sa.Boolean, nullable=False),
        sa.Column("speech_problem", sa.Text, nullable=True),
        sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("collection_id", "video_sha256", name="uq_media_video"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_media_videos_indexed_at", "media_videos", ["indexed_at"])
    op.create_table(
        "media_segments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "video_id",
            sa.Integer,
            sa.ForeignKey("media_videos.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("t_start", sa.Float, nullable=False),
        sa.Column("t_end", sa.Float, nullable=False),
        sa.Column(
            "person_id",
            sa.Integer,
            sa.ForeignKey("persons.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("label", sa.String(256), nullable=True),
        sa.Column("text", sa.Text, nullable=True),
        sa.Column("text_en", sa.Text, nullable=True),
        sa.Column("language", sa.String(16), nullable=True),
        sa.Column("confidence", sa.Float, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_media_segments_video", "media_segments", ["video_id", "kind", "t_start"])
    op.create_index("ix_media_segments_person", "media_segments", ["person_id"])
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in SQLITE_FTS:
            op.execute(statement)
    elif dialect == "postgresql":
        op.execute(POSTGRES_WORDS)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("media_segments_ai", "media_segments_ad", "media_segments_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS media_text")
    op.drop_table("media_segments")
    op.drop_table("media_videos")
