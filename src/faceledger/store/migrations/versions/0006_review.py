"""The review console: sessions, review settings, review items, decisions, rejections.

Revision ID: 0006_review
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_review"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "review_settings",
        sa.Column(
            "collection_id",
            sa.Integer,
            sa.ForeignKey("collections.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("max_fmr", sa.Float, nullable=True),
        sa.Column("reviewers", sa.Integer, nullable=False),
        sa.Column("retain_days", sa.Integer, nullable=False),
    )
    op.create_table(
        "review_items",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "collection_id",
            sa.Integer,
            sa.ForeignKey("collections.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "person_id", sa.Integer, sa.ForeignKey("persons.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("face_id", sa.Integer, nullable=True),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("similarity", sa.Float, nullable=False),
        sa.Column("fmr", sa.Float, nullable=False),
        sa.Column("quality", sa.JSON, nullable=True),
        sa.Column("probe_crop", sa.LargeBinary, nullable=True),
        sa.Column("probe_embedding", sa.LargeBinary, nullable=False),
        sa.Column("image_sha256", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("erase_after", sa.DateTime(timezone=True), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_review_items_status", "review_items", ["collection_id", "status", "id"])
    op.create_index("ix_review_items_person", "review_items", ["person_id"])
    op.create_table(
        "review_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "item_id",
            sa.Integer,
            sa.ForeignKey("review_items.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("item_id", "key_id", name="uq_review_decision_key"),
    )
    op.create_table(
        "review_rejections",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "person_id", sa.Integer, sa.ForeignKey("persons.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("embedding", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_review_rejections_person", "review_rejections", ["person_id"])


def downgrade() -> None:
    op.drop_index("ix_review_rejections_person", "review_rejections")
    op.drop_table("review_rejections")
    op.drop_table("review_decisions")
    op.drop_index("ix_review_items_person", "review_items")
    op.drop_index("ix_review_items_status", "review_items")
    op.drop_table("review_items")
    op.drop_table("review_settings")
    op.drop_table("console_sessions")
