"""login_guard.failed_account: whose password the counted failures tried

A good login cleared its address's failure count whichever account it was for, so a client
holding one account could guess another's password without ever being locked out (four
wrong guesses, one good login of its own, and again). The column names the account the
counted failures tried (a digest, ``storage/login_guard.account_key``; "*" for several), and
only a good login of that account clears them. A count from before names none and is
cleared as before.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("login_guard", sa.Column("failed_account", sa.String(), nullable=True))


def downgrade() -> None:
    op.drop_column("login_guard", "failed_account")
