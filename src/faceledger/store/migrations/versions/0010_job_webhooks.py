"""A video job may name a webhook: where its end is announced, and how that went.

``video_jobs.webhook`` holds the URL, the job's signing secret and the last delivery's
outcome (JSON; NULL for a job without a webhook).

Revision ID: 0010_job_webhooks
Revises: 0008_media
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_job_webhooks"
down_revision = "0008_media"


def upgrade() -> None:
    with op.batch_alter_table("video_jobs") as batch:
        batch.add_column(sa.Column("webhook", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("video_jobs") as batch:
        batch.drop_column("webhook")
