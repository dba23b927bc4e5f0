"""The extension indexes carry the columns a small download reads: index-only day reads

Revision ID: 0017
Revises: 0016

A download by extension reads one day's rows of ``(callfrom, ts)`` and ``(callto, ts)``; with
the plain indexes every row was then fetched from the table by its id, one table page a row
(~61 of them for an extension's ~67 rows on a 1M-row store: bench/RESULTS.md, twenty-sixth
round). These indexes hold what the read returns and orders by, so it never visits the table:
PostgreSQL's ``INCLUDE`` columns (carried in the leaf entries, not part of the key), SQLite's
extra key columns (it has no ``INCLUDE``). The callee's index also carries ``callfrom``: the
read leaves out there the rows the caller's side returned (storage/cdrs.py, ``_both_sides``).
Same names, so month partitions, plans and bulk loads, which read the index set from the
catalog, follow (docs/storage.md "Covering extension indexes").

The upgrade rebuilds both indexes on every row, in the migration's one transaction: on
PostgreSQL under an ACCESS EXCLUSIVE lock on ``cdr`` (every partition's), on SQLite under the
write lock. Run ``cdrgate db upgrade`` in a quiet hour on a large store (the time a million
rows takes is in docs/storage.md), and on PostgreSQL ``VACUUM (ANALYZE) cdr`` after it: an
index-only scan reads a row from the table unless its page is marked all-visible.
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# name -> (key columns, columns carried): the one definition of the extension indexes
# (partitions and bulk loads copy the catalog's). SQLite makes the carried columns key columns.
COVERING = {
    "ix_cdr_callfrom_ts": (("callfrom", "ts"), ("callid", "sn", "line")),
    "ix_cdr_callto_ts": (("callto", "ts"), ("callid", "sn", "callfrom", "line")),
}
# Room to sort the entries in memory, as a load's builds have (storage/pg_months.py).
_INDEX_MEMORY = "256MB"


def _create(name: str, key: tuple[str, ...], carried: tuple[str, ...]) -> None:
    if op.get_bind().dialect.name == "postgresql" and carried:
        columns = f"{', '.join(key)}) INCLUDE ({', '.join(carried)}"
    else:
        columns = ", ".join(key + carried)
    op.execute(f"CREATE INDEX {name} ON cdr ({columns})")


def _replace(covering: bool) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"SET LOCAL maintenance_work_mem = '{_INDEX_MEMORY}'")
    for name, (key, carried) in COVERING.items():
        op.execute(f"DROP INDEX {name}")
        _create(name, key, carried if covering else ())


def upgrade() -> None:
    _replace(covering=True)


def downgrade() -> None:
    _replace(covering=False)
