"""PostgreSQL: cdr's indexed text columns compared byte by byte (COLLATE "C")

Revision ID: 0015
Revises: 0014

Every B-tree of cdr but the primary key sorts text (sn, callid, callfrom, callto, recording).
Under the database's collation (C.UTF-8 or a language's) each comparison goes through
strcoll and the sorts cannot use abbreviated keys; under "C" it is a memcmp: a month's
callfrom and unique indexes build in 0.55-0.76x the time (bench/RESULTS.md, seventeenth
round). Equality is the same under every deterministic collation; the order of text (a download's ties on ts,
by callid then sn) becomes byte order, which is SQLite's, and C.UTF-8's for valid UTF-8; and
lower() of these columns folds ASCII only, as SQLite's does (docs/storage.md "Months new to
the store"). Changing a column's collation rewrites no row but rebuilds its indexes, under an
ACCESS EXCLUSIVE lock on cdr for the time of the builds. SQLite compares bytes already
(BINARY) and is left as it is.
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

COLUMNS = ("sn", "callid", "callfrom", "callto", "recording")


def _collate(collation: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    changes = ", ".join(
        f'ALTER COLUMN {name} TYPE varchar COLLATE "{collation}"' for name in COLUMNS
    )
    op.execute(f"ALTER TABLE cdr {changes}")


def upgrade() -> None:
    _collate("C")


def downgrade() -> None:
    _collate("default")
