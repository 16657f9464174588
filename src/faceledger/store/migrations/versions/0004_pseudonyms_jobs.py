"""Pseudonymous person ids for the ledger, and video jobs kept in the database.

The ledger names persons by ``persons.pseudonym`` (random, assigned at creation), so that
erasing a person erases the only link between their name and the searches that found
them. Existing persons get one now. Video jobs survive a restart in ``video_jobs``.

Revision ID: 0004
Revises: 0003
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("persons") as batch:
        batch.add_column(sa.Column("pseudonym", sa.String(40), nullable=True))
    conn = op.get_bind()
    ids = [r[0] for r in conn.execute(sa.text("select id from persons"))]
    for pid in ids:
        conn.execute(
            sa.text("update persons set pseudonym = :p where id = :id"),
            {"p": f"p_{secrets.token_hex(8)}", "id": pid},
        )
    op.create_index("ix_persons_pseudonym", "persons", ["pseudonym"], unique=True)
    op.create_table(
        "video_jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("collection", sa.String(128), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("purpose", sa.Text, nullable=True),
        sa.Column("case_ref", sa.String(256), nullable=True),
        sa.Column("actor", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Float, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("error", sa.JSON, nullable=True),
    )
    op.create_index("ix_video_jobs_status", "video_jobs", ["status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_video_jobs_status", "video_jobs")
    op.drop_table("video_jobs")
    op.drop_index("ix_persons_pseudonym", "persons")
    with op.batch_alter_table("persons") as batch:
        batch.drop_column("pseudonym")
