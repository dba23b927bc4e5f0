"""Recording tables: the file index, the folder mtimes, recording randoms, and the CDR
questions recordings ask ("does a stored CDR name this file?").

Redeeming a random is one conditional UPDATE, as for CDR randoms (storage/randoms.py), so
exactly one of any number of concurrent downloads wins, on either engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Select,
    delete,
    exists,
    func,
    select,
    update,
)

from cdrgate.scope import Scope
from cdrgate.storage import dialect
from cdrgate.storage.query import in_scope
from cdrgate.storage.tables import (
    NAMES_A_FILE,
    cdr,
    recording_file,
    recording_folder,
    recording_random,
)

SPENT_KEEP_MS = 3600 * 1000  # spent randoms are kept a little while for diagnosis


def is_referenced(conn: Connection, name: str, scope: Scope | None = None) -> bool:
    """Some stored CDR names the file (one in ``scope``, when given)."""
    return bool(conn.execute(referenced_select(name, scope)).scalar())


def referenced_select(name: str, scope: Scope | None = None) -> Select[tuple[bool]]:
    """``is_referenced``'s question: asked on every recording get_random, so it must be one
    probe of the recording index (tests/storage/test_query_plans.py)."""
    where = [NAMES_A_FILE, cdr.c.recording == name, *([] if scope is None else [in_scope(scope)])]
    return select(exists().where(*where))


def referenced_names(conn: Connection, batch: int = 5000) -> Iterator[str]:
    """Every distinct recording name the stored CDRs carry, in name order."""
    after = ""
    while True:
        names = list(
            conn.execute(
                select(cdr.c.recording)
                .where(NAMES_A_FILE, cdr.c.recording > after)
                .group_by(cdr.c.recording)
                .order_by(cdr.c.recording)
                .limit(batch)
            ).scalars()
        )
        yield from names
        if len(names) < batch:
            return
        after = names[-1]


def newest_id(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(cdr.c.id), 0))).scalar_one())


def names_after(conn: Connection, after_id: int, sn: str | None = None) -> list[str]:
    """Distinct names carried by CDRs stored after row ``after_id`` (of serial ``sn``)."""
    stmt = select(cdr.c.recording).where(cdr.c.id > after_id, NAMES_A_FILE)
    if sn is not None:
        stmt = stmt.where(cdr.c.sn == sn)
    return list(conn.execute(stmt.distinct().order_by(cdr.c.recording)).scalars())


def unreferenced(conn: Connection, names: Iterable[str]) -> list[str]:
    """Those of ``names`` that no stored CDR carries any more."""
    return [name for name in dict.fromkeys(names) if name and not is_referenced(conn, name)]


def names_older_than(conn: Connection, cutoff_ts: int) -> list[str]:
    """Names whose newest CDR started before ``cutoff_ts``."""
    return list(
        conn.execute(
            select(cdr.c.recording)
            .where(NAMES_A_FILE)
            .group_by(cdr.c.recording)
            .having(func.max(cdr.c.ts) < cutoff_ts)
            .order_by(cdr.c.recording)
        ).scalars()
    )


def names_where(conn: Connection, where: ColumnElement[bool]) -> list[str]:
    """Distinct names carried by the CDRs matching ``where``."""
    return list(
        conn.execute(select(cdr.c.recording).where(where, NAMES_A_FILE).distinct()).scalars()
    )


def kept_by_others(conn: Connection, names: Iterable[str], where: ColumnElement[bool]) -> set[str]:
    """Those of ``names`` that a CDR outside ``where`` also carries."""
    kept: set[str] = set()
    chunk: list[str] = []
    for name in [*names, None]:
        if name is not None:
            chunk.append(name)
        if chunk and (name is None or len(chunk) >= 500):
            kept.update(
                conn.execute(
                    select(cdr.c.recording)
                    .where(NAMES_A_FILE, cdr.c.recording.in_(chunk), ~where)
                    .distinct()
                ).scalars()
            )
            chunk = []
    return kept


# --- the file index ---------------------------------------------------------------------


def indexed_path(conn: Connection, name: str) -> str | None:
    return conn.execute(select(recording_file.c.path).where(recording_file.c.name == name)).scalar()


def indexed(conn: Connection) -> Iterator[Row[Any]]:
    """(name, path) of every indexed file, in name order."""
    return iter(conn.execute(select(recording_file.c.name, recording_file.c.path).order_by(
        recording_file.c.name
    )))  # fmt: skip


def folder_mtimes(conn: Connection) -> dict[str, int]:
    return {
        row.path: row.mtime_ns
        for row in conn.execute(select(recording_folder.c.path, recording_folder.c.mtime_ns))
    }


def replace_folder(conn: Connection, folder: str, mtime_ns: int, files: dict[str, str]) -> None:
    """The folder's files are now ``files`` (name -> relative path). A name already indexed in
    another folder keeps its first home. Two processes refreshing at once both succeed: the
    inserts skip rows the other one wrote first."""
    conn.execute(delete(recording_file).where(recording_file.c.folder == folder))
    rows = [{"name": name, "path": path, "folder": folder} for name, path in files.items()]
    for start in range(0, len(rows), 500):
        conn.execute(
            dialect.insert(conn, recording_file).on_conflict_do_nothing(),
            rows[start : start + 500],
        )
    conn.execute(
        dialect.insert(conn, recording_folder)
        .values(path=folder, mtime_ns=mtime_ns)
        .on_conflict_do_update(index_elements=["path"], set_={"mtime_ns": mtime_ns})
    )


def forget_folder(conn: Connection, folder: str) -> None:
    conn.execute(delete(recording_file).where(recording_file.c.folder == folder))
    conn.execute(delete(recording_folder).where(recording_folder.c.path == folder))


def forget_file(conn: Connection, name: str) -> None:
    conn.execute(delete(recording_file).where(recording_file.c.name == name))


def index_file(conn: Connection, name: str, path: str, folder: str) -> None:
    conn.execute(delete(recording_file).where(recording_file.c.name == name))
    conn.execute(recording_file.insert().values(name=name, path=path, folder=folder))


# --- randoms ----------------------------------------------------------------------------


def create_random(conn: Connection, **values: Any) -> None:
    conn.execute(recording_random.insert().values(**values))


def find_random(conn: Connection, expires_ms: int, random_hash: str) -> Row[Any] | None:
    """The random's row by its key (``storage/randoms.key_of``)."""
    key = (
        recording_random.c.expires_ms == expires_ms,
        recording_random.c.random_hash == random_hash,
    )
    return conn.execute(select(recording_random).where(*key)).first()


def redeem_random(conn: Connection, expires_ms: int, random_hash: str, now_ms: int) -> bool:
    """Mark the random used if it is still unused and unexpired; True if this call won."""
    result = conn.execute(
        update(recording_random)
        .where(
            recording_random.c.expires_ms == expires_ms,
            recording_random.c.random_hash == random_hash,
            recording_random.c.used_ms.is_(None),
            recording_random.c.expires_ms > now_ms,
        )
        .values(used_ms=now_ms)
    )
    return result.rowcount == 1


def purge_randoms(conn: Connection, now_ms: int) -> int:
    cutoff = now_ms - SPENT_KEEP_MS
    return int(
        conn.execute(
            delete(recording_random).where(recording_random.c.expires_ms < cutoff)
        ).rowcount
    )
