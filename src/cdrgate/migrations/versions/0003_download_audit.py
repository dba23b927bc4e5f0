"""download audit log

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "download_audit",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("account", sa.String(), nullable=True),
        sa.Column("client_ip", sa.String(), nullable=False),
        sa.Column("api_version", sa.String(), nullable=False),
        sa.Column("selector", sa.String(), nullable=False),
        sa.Column("starttime", sa.String(), nullable=False),
        sa.Column("endtime", sa.String(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("errno", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_download_audit")),
    )
    with op.batch_alter_table("download_audit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_download_audit_at_ms"), ["at_ms"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("download_audit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_download_audit_at_ms"))
    op.drop_table("download_audit")
