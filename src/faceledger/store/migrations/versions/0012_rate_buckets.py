"""Rate-limit buckets in the database, shared by every replica of a PostgreSQL store.

``rate_buckets`` holds one token bucket per key (or client address). SQLite deployments
have one process per data folder and keep their buckets in memory; the table is created
on both so that the schema is one.

Revision ID: 0012_rate_buckets
Revises: 0011_job_names
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_rate_buckets"
down_revision = "0011_job_names"


def upgrade() -> None:
    op.create_table(
        "rate_buckets",
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rate_buckets")
