"""PostgreSQL: the duplicate rule and the download order in one B-tree (SQLite unchanged)

Revision ID: 0016
Revises: 0015

Since 0005, PostgreSQL's ``cdr`` held the same three columns twice: ``UNIQUE (sn, callid, ts)``
(the duplicate rule, with the partition key in it) and the plain index ``(ts, callid, sn)``
(the download order). Uniqueness is about the set of values, not the order of the columns,
so ``UNIQUE (ts, callid, sn)`` is the same rule, and its B-tree serves the download order:
one B-tree fewer to build after a bulk load and to keep on every insert (bench/RESULTS.md,
nineteenth round). ``ON CONFLICT`` without a target, which every insert of ``cdr`` says, takes
any unique index; one naming ``(sn, callid, ts)`` in any order infers it too (PostgreSQL's
"INSERT", conflict_target). The old rule's B-tree also found a serial's rows (the query
API's ``sn`` filter, a store of many PBXs); a plain ``(sn)`` index keeps that: with one
entry list per serial (B-tree deduplication) it is a few MB and the cheapest of the builds
(docs/storage.md "One B-tree for the rule and the download order"). SQLite's
``UNIQUE (sn, callid)`` has no ``ts`` and stays (it leads with ``sn``).

The upgrade builds the new indexes on every partition and drops the two old ones, in
the migration's one transaction, under an ACCESS EXCLUSIVE lock on ``cdr``: on a large store
run ``cdrgate db upgrade`` in a quiet hour (1M rows: 2.2-2.5 s).
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# Room to sort a partition's index entries in memory, as a load's builds have
# (storage/pg_months.py): a 1M-row month's entries are ~60 MB.
_INDEX_MEMORY = "256MB"


def _postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if not _postgresql():
        return  # SQLite: UNIQUE (sn, callid) and the (ts, callid, sn) index, as 0001 made them.
    op.execute(f"SET LOCAL maintenance_work_mem = '{_INDEX_MEMORY}'")
    op.execute("ALTER TABLE cdr ADD CONSTRAINT uq_cdr_ts_callid_sn UNIQUE (ts, callid, sn)")
    op.execute("CREATE INDEX ix_cdr_sn ON cdr (sn)")
    op.execute("ALTER TABLE cdr DROP CONSTRAINT uq_cdr_sn_callid_ts")
    op.execute("DROP INDEX ix_cdr_ts_callid_sn")


def downgrade() -> None:
    if not _postgresql():
        return
    op.execute(f"SET LOCAL maintenance_work_mem = '{_INDEX_MEMORY}'")
    op.execute("ALTER TABLE cdr ADD CONSTRAINT uq_cdr_sn_callid_ts UNIQUE (sn, callid, ts)")
    op.execute("CREATE INDEX ix_cdr_ts_callid_sn ON cdr (ts, callid, sn)")
    op.execute("DROP INDEX ix_cdr_sn")
    op.execute("ALTER TABLE cdr DROP CONSTRAINT uq_cdr_ts_callid_sn")
