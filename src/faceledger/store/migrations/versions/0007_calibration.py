"""A collection records the calibration its searches use.

``collections.calibration_id`` is NULL for the model pack's shipped calibration; a
collection moves to another version (``eval calibrate --write``) only on request.

Revision ID: 0007_calibration
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_calibration"
down_revision = "0004"


def upgrade() -> None:
    with op.batch_alter_table("collections") as batch:
        batch.add_column(sa.Column("calibration_id", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("collections") as batch:
        batch.drop_column("calibration_id")
