"""The pgvector index's table ``face_vectors`` (``--index pgvector``).

Only on PostgreSQL, and only where the ``vector`` extension is installed or this role may
install it; elsewhere (SQLite, or a server without pgvector) nothing happens, and a store
opened with ``--index pgvector`` there later creates the table itself or says what is
missing (:func:`faceledger.store.pgvectors.ensure_table`).

Revision ID: 0009_pgvector
Revises: 0007_calibration
"""

import logging

from alembic import op

from faceledger.store.pgvectors import ensure_table

revision = "0009_pgvector"
down_revision = "0007_calibration"
log = logging.getLogger(__name__)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    if not ensure_table(bind):
        log.info("pgvector is not installed in this database: no face_vectors table")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP TABLE IF EXISTS face_vectors")
