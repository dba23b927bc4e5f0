"""`sync_pbx`: incremental, idempotent copies of a PBX (here: the app) into a cdrgate database."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from cdrgate.client import ConnectError
from cdrgate.errors import UsageError
from cdrgate.services.sync import SyncConflict, pbx_key, sync_pbx
from cdrgate.storage import cdrs, sync_state
from cdrgate.storage.cdrs import CdrQuery
from cdrgate.storage.db import Database
from cdrgate.timefmt import parse_pbx_time
from tests.client.helpers import cut_download, no_feed
from tests.conftest import make_cdr

SINCE = "2026-05-26 00:00:00"
UNTIL = "2026-05-30 23:59:59"


def lines(db: Database) -> list[str]:
    with db.read() as conn:
        return cdrs.read_lines(conn, CdrQuery(0, 2**40))


def calls(*specs: tuple[str, str]):
    return [make_cdr(callid=callid, timestart=start) for callid, start in specs]


def test_first_sync_copies_everything_and_a_second_adds_nothing(sdk, add_cdrs, db, mirror):
    add_cdrs(*calls(("1", "2026-05-26 08:00:00"), ("2", "2026-05-27 23:59:59"),
                    ("3", "2026-05-28 00:00:00")))  # fmt: skip
    first = sync_pbx(sdk, mirror, since=SINCE, until=UNTIL)
    second = sync_pbx(sdk, mirror, until=UNTIL)

    assert (first.rows, first.added, first.sn) == (3, 3, "369392534749")
    assert second.added == 0
    assert lines(mirror) == lines(db)


def test_the_next_sync_starts_an_overlap_before_the_newest_call(sdk, add_cdrs, mirror):
    add_cdrs(*calls(("1", "2026-05-28 12:00:00")))
    sync_pbx(sdk, mirror, since=SINCE, until=UNTIL)
    # A long call that started before the newest one only now appears (written at its end).
    add_cdrs(*calls(("late", "2026-05-28 11:00:00"), ("new", "2026-05-29 09:00:00")))

    result = sync_pbx(sdk, mirror, until=UNTIL, overlap=timedelta(hours=2))
    assert result.start == "2026-05-28 10:00:00"
    assert result.added == 2


def test_a_late_call_older_than_the_overlap_needs_an_explicit_since(sdk, add_cdrs, mirror):
    add_cdrs(*calls(("1", "2026-05-28 12:00:00")))
    sync_pbx(sdk, mirror, since=SINCE, until=UNTIL)
    add_cdrs(*calls(("late", "2026-05-28 09:00:00")))
    assert sync_pbx(sdk, mirror, until=UNTIL).added == 0
    assert sync_pbx(sdk, mirror, since="2026-05-28 00:00:00", until=UNTIL).added == 1


def test_an_interrupted_sync_resumes_without_loss_or_duplicates(make_sdk, add_cdrs, db, mirror):
    add_cdrs(*[make_cdr(callid=f"{day}.{n}", timestart=f"2026-05-{day} {n:02}:00:00")
               for day in (26, 27, 28, 29) for n in range(10)])  # fmt: skip
    broken, _ = make_sdk(after=cut_download(number=3, limit=400))  # mid-way through day 3
    with pytest.raises(ConnectError):
        sync_pbx(broken, mirror, since=SINCE, until=UNTIL)
    with mirror.read() as conn:
        state = sync_state.get(conn, pbx_key(broken.base_url))
    assert state is not None and state.mark_ts == parse_pbx_time("2026-05-27 09:00:00")

    healthy, _ = make_sdk()
    result = sync_pbx(healthy, mirror, until=UNTIL)
    assert result.start == "2026-05-27 07:00:00"
    assert lines(mirror) == lines(db)
    assert sync_pbx(healthy, mirror, until=UNTIL).added == 0


def test_the_first_sync_needs_a_since(sdk, mirror):
    with pytest.raises(UsageError, match="give --since"):
        sync_pbx(sdk, mirror, until=UNTIL)


def test_a_sync_without_until_reaches_a_day_past_now(sdk, add_cdrs, mirror):
    add_cdrs(*calls(("1", "2026-05-28 12:00:00")))
    result = sync_pbx(sdk, mirror, since=SINCE, now=lambda: datetime(2026, 5, 28, 13, 0, 0))
    assert (result.end, result.added) == ("2026-05-29 13:00:00", 1)


def test_a_different_device_at_the_same_url_is_refused(make_sdk, add_cdrs, mirror):
    sdk, _ = make_sdk(after=no_feed)  # a PBX: a cdrgate may hold several serials
    add_cdrs(make_cdr(callid="1", timestart="2026-05-28 12:00:00"))
    sync_pbx(sdk, mirror, since=SINCE, until=UNTIL)
    add_cdrs(make_cdr(callid="2", timestart="2026-05-28 13:00:00", sn="999999999999"))
    with pytest.raises(SyncConflict, match="serial 999999999999"):
        sync_pbx(sdk, mirror, until=UNTIL)


def test_pbx_key_ignores_case_and_trailing_slash():
    assert pbx_key("HTTPS://PBX.example:8088/") == "https://pbx.example:8088"


def test_the_migration_creates_the_table_as_declared(mirror):
    from sqlalchemy import inspect

    from cdrgate.storage.tables import sync_state as table

    migrated = {c["name"]: c["nullable"] for c in inspect(mirror.engine).get_columns("sync_state")}
    assert migrated == {c.name: c.nullable for c in table.columns}
