"""sync state (client sync into a cdrgate database)

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_state",
        sa.Column("pbx_url", sa.String(), nullable=False),
        sa.Column("sn", sa.String(), nullable=True),
        sa.Column("since_ts", sa.BigInteger(), nullable=False),
        sa.Column("mark_ts", sa.BigInteger(), nullable=True),
        sa.Column("last_sync_ms", sa.BigInteger(), nullable=False),
        sa.Column("added_total", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pbx_url", name=op.f("pk_sync_state")),
    )


def downgrade() -> None:
    op.drop_table("sync_state")
