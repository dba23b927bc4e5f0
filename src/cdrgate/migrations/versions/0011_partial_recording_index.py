"""cdr.recording index: only the CDRs that name a file

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Most CDRs name no recording (''); every question about recordings is about a name, so the
# empty ones are left out of the index: a fifth of the entries on seeded data, and a fifth of
# the build after a bulk load (docs/storage.md, "Indexes").
_NAMES_A_FILE = sa.text("recording <> ''")


def upgrade() -> None:
    op.drop_index(op.f("ix_cdr_recording"), table_name="cdr")
    op.create_index(
        op.f("ix_cdr_recording"), "cdr", ["recording"],
        sqlite_where=_NAMES_A_FILE, postgresql_where=_NAMES_A_FILE,
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index(op.f("ix_cdr_recording"), table_name="cdr")
    op.create_index(op.f("ix_cdr_recording"), "cdr", ["recording"])
