"""recording_random keyed by (expires_ms, random_hash), without a rowid on SQLite

As cdr_random in 0012: a recording random carries its expiry, the table is clustered on it and
the expiry index goes. Randoms issued before the upgrade (30 s at most) are refused after it
(20012).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _columns() -> list[sa.Column[object]]:
    return [
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("recording", sa.String(), nullable=False),
        sa.Column("client_ip", sa.String(), nullable=False),
        sa.Column("allowed_ip", sa.String(), nullable=True),
    ]


def upgrade() -> None:
    op.drop_index(op.f("ix_recording_random_expires_ms"), table_name="recording_random")
    op.drop_table("recording_random")
    op.create_table(
        "recording_random",
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("random_hash", sa.String(length=64), nullable=False),
        *_columns(),
        sa.Column("used_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("expires_ms", "random_hash", name=op.f("pk_recording_random")),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("recording_random")
    op.create_table(
        "recording_random",
        sa.Column("random_hash", sa.String(length=64), nullable=False),
        *_columns(),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("used_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("random_hash", name=op.f("pk_recording_random")),
    )
    op.create_index(
        op.f("ix_recording_random_expires_ms"), "recording_random", ["expires_ms"], unique=False
    )
