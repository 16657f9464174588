"""A video job keeps the file name its submitter gave (the upload is stored under the job's
id), so the media index names the video as the user does.

``video_jobs.file_name``: a plain file name, no path (NULL: none given).

Revision ID: 0011_job_names
Revises: 0010_job_webhooks
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_job_names"
down_revision = "0010_job_webhooks"


def upgrade() -> None:
    with op.batch_alter_table("video_jobs") as batch:
        batch.add_column(sa.Column("file_name", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("video_jobs") as batch:
        batch.drop_column("file_name")
