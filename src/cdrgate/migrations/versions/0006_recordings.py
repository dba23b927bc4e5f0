"""call recordings: the file index, recording randoms, audit kind, cdr.recording index

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ms = sa.BigInteger()


def upgrade() -> None:
    op.create_table(
        "recording_file",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("folder", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_recording_file")),
    )
    op.create_index(op.f("ix_recording_file_folder"), "recording_file", ["folder"])
    op.create_table(
        "recording_folder",
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("path", name=op.f("pk_recording_folder")),
    )
    op.create_table(
        "recording_random",
        sa.Column("random_hash", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("recording", sa.String(), nullable=False),
        sa.Column("client_ip", sa.String(), nullable=False),
        sa.Column("allowed_ip", sa.String(), nullable=True),
        sa.Column("expires_ms", _ms, nullable=False),
        sa.Column("used_ms", _ms, nullable=True),
        sa.PrimaryKeyConstraint("random_hash", name=op.f("pk_recording_random")),
    )
    op.create_index(op.f("ix_recording_random_expires_ms"), "recording_random", ["expires_ms"])
    # "Does a stored CDR name this file?" is asked on every get_random and by retention.
    op.create_index(op.f("ix_cdr_recording"), "cdr", ["recording"])
    with op.batch_alter_table("download_audit") as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(), nullable=False, server_default="cdr"))


def downgrade() -> None:
    with op.batch_alter_table("download_audit") as batch_op:
        batch_op.drop_column("kind")
    op.drop_index(op.f("ix_cdr_recording"), table_name="cdr")
    op.drop_table("recording_random")
    op.drop_table("recording_folder")
    op.drop_table("recording_file")
