"""Initial face database: collections, persons, faces, vector change log.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "collections",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("model_pack", sa.String(256), nullable=False),
        sa.Column("model_id", sa.String(256), nullable=False),
        sa.Column("embedding_dim", sa.Integer, nullable=False),
        sa.Column("require_consent", sa.Boolean, nullable=False),
        sa.Column("store_images", sa.Boolean, nullable=False),
        sa.Column("vectors_pruned_through", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "persons",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "collection_id",
            sa.Integer,
            sa.ForeignKey("collections.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("consent", sa.Text, nullable=True),
        sa.Column("retain_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("collection_id", "name", name="uq_person_name"),
    )
    op.create_index("ix_persons_retain_until", "persons", ["retain_until"])
    op.create_table(
        "faces",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "collection_id",
            sa.Integer,
            sa.ForeignKey("collections.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "person_id", sa.Integer, sa.ForeignKey("persons.id", ondelete="CASCADE"), nullable=True
        ),
        sa.Column("embedding", sa.LargeBinary, nullable=False),
        sa.Column("box", sa.JSON, nullable=True),
        sa.Column("quality", sa.JSON, nullable=True),
        sa.Column("source", sa.Text, nullable=True),
        sa.Column("image_sha256", sa.String(64), nullable=True),
        sa.Column("image", sa.LargeBinary, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_faces_collection", "faces", ["collection_id", "id"])
    op.create_index("ix_faces_person", "faces", ["person_id"])
    op.create_table(
        "vector_changes",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("collection_id", sa.Integer, nullable=False),
        sa.Column("face_id", sa.BigInteger, nullable=False),
        sa.Column("op", sa.String(1), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_vector_changes_collection_seq", "vector_changes", ["collection_id", "seq"])


def downgrade() -> None:
    op.drop_table("vector_changes")
    op.drop_table("faces")
    op.drop_table("persons")
    op.drop_table("collections")
