"""An index on review_items.erase_after, for the retention sweep's crop purge.

The purge of decided probe crops past their retention ran inside every write to the
review queue (each identify, similar or verify with candidates), scanning the table under
the write lock. It now runs in the retention sweep, which first asks by this index whether
any crop is due.

Revision ID: 0013_review_erase_index
Revises: 0012_rate_buckets
"""

from alembic import op

revision = "0013_review_erase_index"
down_revision = "0012_rate_buckets"


def upgrade() -> None:
    op.create_index("ix_review_items_erase_after", "review_items", ["erase_after"])


def downgrade() -> None:
    op.drop_index("ix_review_items_erase_after", table_name="review_items")
