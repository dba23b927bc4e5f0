"""cdr_random keyed by (expires_ms, random_hash), without a rowid on SQLite

Randoms are issued in expiry order and now carry their expiry, so the table is clustered on it:
an issue appends, a redeem finds the row by its key, the purge deletes a key range, and the
expiry index goes. Randoms issued before the upgrade (30 s at most) are refused after it (20020).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _columns() -> list[sa.Column[object]]:
    return [
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("selector", sa.String(), nullable=False),
        sa.Column("start_ts", sa.BigInteger(), nullable=False),
        sa.Column("end_ts", sa.BigInteger(), nullable=False),
        sa.Column("client_ip", sa.String(), nullable=False),
        sa.Column("allowed_ip", sa.String(), nullable=True),
    ]


def upgrade() -> None:
    op.drop_index(op.f("ix_cdr_random_expires_ms"), table_name="cdr_random")
    op.drop_table("cdr_random")
    op.create_table(
        "cdr_random",
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("random_hash", sa.String(length=64), nullable=False),
        *_columns(),
        sa.Column("used_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("expires_ms", "random_hash", name=op.f("pk_cdr_random")),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("cdr_random")
    op.create_table(
        "cdr_random",
        sa.Column("random_hash", sa.String(length=64), nullable=False),
        *_columns(),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("used_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("random_hash", name=op.f("pk_cdr_random")),
    )
    op.create_index(op.f("ix_cdr_random_expires_ms"), "cdr_random", ["expires_ms"], unique=False)
