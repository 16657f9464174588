"""Signed checkpoints of the ledger's Merkle tree and their delivery to witnesses.

Existing entries become the leaves of the tree as they are; the service signs the first
checkpoint covering them the first time it opens the migrated database.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tree_size", sa.Integer, nullable=False),
        sa.Column("root_hash", sa.String(64), nullable=False),
        sa.Column("ts", sa.String(40), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("frontier", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "audit_witnesses",
        sa.Column("witness", sa.String(1024), primary_key=True),
        sa.Column("delivered_id", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("last_attempt", sa.String(40), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("audit_witnesses")
    op.drop_table("audit_checkpoints")
