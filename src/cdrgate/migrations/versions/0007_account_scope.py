"""accounts scoped to extensions: api_account.extensions

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for every existing account: unscoped, as before.
    with op.batch_alter_table("api_account") as batch_op:
        batch_op.add_column(sa.Column("extensions", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_account") as batch_op:
        batch_op.drop_column("extensions")
