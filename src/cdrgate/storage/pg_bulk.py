"""Bulk CDR insert on PostgreSQL: COPY into a staging table, then one INSERT ... SELECT.

COPY streams a whole batch in one round trip; the INSERT from the staging table then applies
the duplicate rule (ON CONFLICT DO NOTHING) set-wise and reports how many rows were new.

Writers of ``cdr`` take one transaction-scoped advisory lock before their INSERT: ids then
become visible in the order they were taken, which is what the change feed (`/v1/cdrs/changes`,
`seq` = id) promises. Without it, a transaction that took ids 10-20 could commit after one that
took 21-30, and a reader already past 30 would never see 10-20. The cost is that inserts from
several processes take turns (COPY into the staging table still runs in parallel).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, Engine, text

from cdrgate.storage import partitions
from cdrgate.storage.tables import CDR_ID_SEQUENCE

STAGE = "cdr_stage"
# Any constant works; this one reads "cdrgate" in ASCII, so it is recognisable in pg_locks.
CDR_INSERT_LOCK = 0x63647267617465


def reserve_ids(conn: Connection, count: int) -> int:
    """Take ``count`` consecutive ids of ``cdr``'s sequence at once (``count`` > 0); returns
    the first. Holds the ``cdr`` insert lock until this transaction ends: every writer takes
    ids under it, so none takes one between the two steps here, and the ids become visible
    in order (see the module docstring)."""
    serialise_cdr_inserts(conn)
    return take_ids(conn, count)


def take_ids(conn: Connection, count: int) -> int:
    """``reserve_ids`` without taking the lock: for a connection working for a transaction
    that holds it (an import's loader, ``ingest/yeastar_pg_empty.py``), where taking it
    would wait for that transaction's end."""
    first = int(conn.exec_driver_sql(f"SELECT nextval('{CDR_ID_SEQUENCE}')").scalar_one())
    conn.exec_driver_sql(f"SELECT setval('{CDR_ID_SEQUENCE}', {first + count - 1})")
    return first


def serialise_cdr_inserts(conn: Connection) -> None:
    """Hold the ``cdr`` insert lock until this transaction ends (see the module docstring)."""
    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({CDR_INSERT_LOCK})")


def ensure_months(conn: Connection, ts_values: Iterable[int]) -> None:
    """``partitions.ensure`` for rows this transaction is about to insert, and make sure it
    routes them to the months just created.

    The partitions are attached on another connection, and this backend reads the news
    (relcache invalidation) only when it next takes a lock it does not hold yet: an INSERT
    into ``cdr`` whose lock the transaction already holds may route a new month's rows with
    the old list of partitions, to ``cdr_default``, whose constraint now refuses them. Taking
    the months' partitions' own lock (the one the INSERT takes anyway) first makes it read it.
    The lookup of their names before it does so too today (a catalog miss opens ``pg_class``
    under a lock of its own), which the lock does not rely on. It matters for a prepared
    INSERT (psycopg prepares a statement run five times): one parsed again opens ``cdr`` by
    name, which reads the news anyway (tests/storage/test_pg_bulk.py).
    """
    months = {partitions.month_start(int(ts)) for ts in ts_values}
    partitions.ensure(conn.engine, months)
    names = [partitions.partition_name(start) for start in sorted(months)]
    present = conn.exec_driver_sql(
        "SELECT name FROM unnest(%(names)s::text[]) AS name WHERE to_regclass(name) IS NOT NULL",
        {"names": names},
    ).scalars()
    found = ", ".join(present)
    if found:
        conn.exec_driver_sql(f"LOCK TABLE {found} IN ROW EXCLUSIVE MODE")


def copy_rows(conn: Connection, columns: Sequence[str], rows: Sequence[tuple[object, ...]]) -> int:
    """Insert ``rows`` (tuples in ``columns`` order) into ``cdr``; returns how many were new."""
    # Rows come from cdrs.row_values, which has already dropped NUL (PostgreSQL text can't).
    ts_at = list(columns).index("ts")
    partitions.ensure(conn.engine, (int(row[ts_at]) for row in rows))  # type: ignore[call-overload]
    names = ", ".join(columns)
    # Dropped at commit, so pooled connections never carry it over; emptied per batch.
    conn.exec_driver_sql(
        f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} ON COMMIT DROP AS "
        f"SELECT {names} FROM cdr WITH NO DATA"
    )
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        # No ensure_months lock needed here: TRUNCATE and COPY FROM open the staging table by
        # name (relation_openrv), which reads the catalog news (the months just attached) even
        # under a lock already held, so the INSERT below routes with them. Replacing both
        # (DELETE, INSERT ... VALUES) puts new months' rows in cdr_default: tests/storage/
        # test_pg_bulk.py.
        cursor.execute(f"TRUNCATE {STAGE}")
        with cursor.copy(f"COPY {STAGE} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        serialise_cdr_inserts(conn)
        cursor.execute(
            f"INSERT INTO cdr ({names}) SELECT {names} FROM {STAGE} ON CONFLICT DO NOTHING"
        )
        return max(int(cursor.rowcount), 0)
    finally:
        cursor.close()


def drop_orphan_tables(engine: Engine, prefix: str) -> None:
    """Drop the tables named ``prefix`` + a backend's pid [+ "_" + anything] whose backend is
    gone: left by a bulk load (a seed's or an import's months made on connections of their
    own) whose client was killed before it could drop them. On a connection of its own,
    committed at once."""
    with engine.begin() as other:
        orphans = other.execute(
            text(
                "SELECT c.relname FROM pg_class AS c "
                "WHERE c.relnamespace = current_schema()::regnamespace "
                "AND c.relkind IN ('r', 'p') AND c.relname LIKE :like || '%' "
                "AND NOT EXISTS (SELECT FROM pg_stat_activity AS a "
                "WHERE c.relname = :prefix || a.pid OR c.relname LIKE :like || a.pid || '\\_%')"
            ),
            {"like": prefix.replace("_", "\\_"), "prefix": prefix},  # "_" is LIKE's any character
        ).scalars()
        names = list(orphans)
        if names:
            other.exec_driver_sql(f"DROP TABLE IF EXISTS {', '.join(names)}")
