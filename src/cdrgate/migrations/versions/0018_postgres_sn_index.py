"""PostgreSQL: the plain (sn) index of 0016, on stores whose 0016 came without it

0016 was first released without ``CREATE INDEX ix_cdr_sn ON cdr (sn)``, which it gained a few
hours later (1b4a74f). A store upgraded to 0016 in between is stamped 0016 and so never ran the
later text: the query API's ``sn`` filter read every row of the range there
(docs/storage.md "One B-tree for the rule and the download order"). This makes the index
where it is missing and changes nothing where 0016 made it. On a large store it builds under a
lock on ``cdr``: run ``cdrgate db upgrade`` in a quiet hour. SQLite has no such index (its
``UNIQUE (sn, callid)`` leads with ``sn``).

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE INDEX IF NOT EXISTS ix_cdr_sn ON cdr (sn)")


def downgrade() -> None:
    pass  # the index is 0016's: its downgrade drops it
