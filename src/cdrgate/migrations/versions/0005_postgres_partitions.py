"""PostgreSQL: partition cdr by month of ts (SQLite unchanged)

Revision ID: 0005
Revises: 0004

A partitioned table cannot have a unique constraint without the partition key, so on
PostgreSQL the duplicate key becomes (sn, callid, ts) and the primary key (id, ts). A PBX's
call id has one start time, so this is the same rule (docs/storage.md).
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The indexes 0001 created, by name (the metadata naming convention), recreated on the parent
# so that every partition gets them.
INDEXES = {
    "ix_cdr_ts_callid_sn": "ts, callid, sn",
    "ix_cdr_callfrom_ts": "callfrom, ts",
    "ix_cdr_callto_ts": "callto, ts",
}


def _rebuild(partitioned: bool) -> None:
    """Copy ``cdr`` into a new table of the other kind, keeping the id sequence and names."""
    op.execute("ALTER TABLE cdr RENAME TO cdr_old")
    by_range = " PARTITION BY RANGE (ts)" if partitioned else ""
    op.execute(f"CREATE TABLE cdr (LIKE cdr_old INCLUDING DEFAULTS){by_range}")
    op.execute("ALTER SEQUENCE cdr_id_seq OWNED BY cdr.id")
    if partitioned:
        op.execute("CREATE TABLE cdr_default PARTITION OF cdr DEFAULT")
    op.execute("INSERT INTO cdr SELECT * FROM cdr_old")
    op.execute("DROP TABLE cdr_old")
    key = ", ts" if partitioned else ""
    op.execute(f"ALTER TABLE cdr ADD CONSTRAINT pk_cdr PRIMARY KEY (id{key})")
    unique = "uq_cdr_sn_callid_ts" if partitioned else "uq_cdr_sn_callid"
    op.execute(f"ALTER TABLE cdr ADD CONSTRAINT {unique} UNIQUE (sn, callid{key})")
    for name, columns in INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON cdr ({columns})")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite: one file, one table; retention there is a DELETE.
    _rebuild(partitioned=True)
    # Rows copied from an older store sit in cdr_default; move them to their months now.
    from cdrgate.storage import partitions

    bind = op.get_bind()
    months = bind.exec_driver_sql("SELECT DISTINCT ts / 86400 * 86400 FROM cdr").scalars()
    starts = sorted({partitions.month_start(day) for day in months})
    for start in starts:
        partitions.create_month(bind, start)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _rebuild(partitioned=False)
