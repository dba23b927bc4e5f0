"""cdr_summary: calls and seconds per hour x status x type, backfilled from cdr

Revision ID: 0008
Revises: 0007

``/v1/stats`` over a long range reads this instead of every CDR (storage/summary.py keeps it
on every insert and delete).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cdr_summary",
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("talk", sa.BigInteger(), nullable=False),
        sa.Column("duration", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "status", "type", name=op.f("pk_cdr_summary")),
    )
    # The same grouping as summary.add_stored, over every row already stored (one scan).
    op.execute(
        "INSERT INTO cdr_summary (hour, status, type, calls, talk, duration) "
        "SELECT ts / 3600 * 3600, status, type, count(*), sum(talkduraction), "
        "sum(callduraction) FROM cdr GROUP BY ts / 3600 * 3600, status, type"
    )


def downgrade() -> None:
    op.drop_table("cdr_summary")
