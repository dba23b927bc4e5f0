"""`sync_pbx` against a cdrgate far end: after the first sync it follows the change feed, so
a CDR stored late with an old start time is copied; a real PBX (no feed) keeps to windows."""

from __future__ import annotations

import httpx
import pytest

from cdrgate.client import ConnectError
from cdrgate.services import sync
from cdrgate.services.sync import SyncConflict, pbx_key, sync_pbx
from cdrgate.storage import sync_state
from tests.client.helpers import endpoint_of, no_feed
from tests.client.test_sync import SINCE, UNTIL, calls, lines
from tests.conftest import make_cdr


def test_the_next_sync_follows_the_feed_and_copies_a_late_cdr(sdk, add_cdrs, db, mirror):
    add_cdrs(*calls(("1", "2026-05-28 12:00:00"), ("2", "2026-05-29 08:00:00")))
    first = sync_pbx(sdk, mirror, since=SINCE)
    assert (first.mode, first.added) == ("windows", 2)
    # Stored now, started two days before the newest call: far beyond any overlap.
    add_cdrs(*calls(("late", "2026-05-27 09:00:00"), ("new", "2026-05-29 09:00:00")))

    second = sync_pbx(sdk, mirror)
    assert (second.mode, second.rows, second.added) == ("feed", 2, 2)
    assert lines(mirror) == lines(db)
    third = sync_pbx(sdk, mirror)
    assert (third.mode, third.rows, third.added) == ("feed", 0, 0)


def test_the_feed_position_is_kept_with_the_rows(sdk, add_cdrs, mirror):
    add_cdrs(*calls(("1", "2026-05-28 12:00:00")))
    sync_pbx(sdk, mirror, since=SINCE)
    add_cdrs(*calls(("2", "2026-05-28 13:00:00")))
    result = sync_pbx(sdk, mirror)
    with mirror.read() as conn:
        state = sync_state.get(conn, pbx_key(sdk.base_url))
    assert state is not None and state.feed_seq == result.feed_seq == 2
    assert state.mark_ts is not None and state.added_total == 2


def test_cdrs_older_than_the_mirror_start_stay_out(sdk, add_cdrs, mirror):
    add_cdrs(*calls(("1", "2026-05-28 12:00:00")))
    sync_pbx(sdk, mirror, since=SINCE)
    add_cdrs(*calls(("ancient", "2026-01-01 00:00:00"), ("2", "2026-05-28 13:00:00")))
    result = sync_pbx(sdk, mirror)
    assert (result.rows, result.added) == (2, 1)


def test_a_feed_sync_cut_between_pages_resumes_exactly(make_sdk, add_cdrs, db, mirror, monkeypatch):
    add_cdrs(*calls(("0", "2026-05-26 08:00:00")))
    sdk, _ = make_sdk()
    sync_pbx(sdk, mirror, since=SINCE)
    add_cdrs(*[make_cdr(callid=str(n), timestart=f"2026-05-27 {n:02}:00:00") for n in range(1, 8)])
    monkeypatch.setattr(sync, "FEED_PAGE", 3)
    pages = 0

    def break_the_third_page(request: httpx.Request, response: httpx.Response):
        nonlocal pages
        if endpoint_of(request) == "changes":
            pages += 1
            if pages == 3:
                raise httpx.ConnectError("connection refused")
        return None

    broken, _ = make_sdk(after=break_the_third_page)
    with pytest.raises(ConnectError):
        sync_pbx(broken, mirror)
    with mirror.read() as conn:
        state = sync_state.get(conn, pbx_key(sdk.base_url))
    assert state is not None and state.feed_seq == 4  # row 1 + the first page of three

    healthy, _ = make_sdk()
    result = sync_pbx(healthy, mirror)
    assert (result.mode, result.rows, result.added) == ("feed", 4, 4)
    assert lines(mirror) == lines(db)


def test_a_pbx_without_a_feed_is_synced_by_windows(make_sdk, add_cdrs, mirror):
    pbx, recorder = make_sdk(after=no_feed)
    add_cdrs(*calls(("1", "2026-05-28 12:00:00")))
    sync_pbx(pbx, mirror, since=SINCE)
    add_cdrs(*calls(("2", "2026-05-28 13:00:00")))
    second = sync_pbx(pbx, mirror)
    assert (second.mode, second.added, second.feed_seq) == ("windows", 1, None)
    assert "cdr/download" in recorder.calls


def test_until_keeps_the_sync_to_windows(sdk, add_cdrs, mirror):
    add_cdrs(*calls(("1", "2026-05-28 12:00:00")))
    sync_pbx(sdk, mirror, since=SINCE)
    add_cdrs(*calls(("2", "2026-05-28 13:00:00")))
    result = sync_pbx(sdk, mirror, until=UNTIL)
    assert result.mode == "windows"


def test_without_the_feed_option_the_sync_keeps_to_windows(sdk, add_cdrs, mirror):
    add_cdrs(*calls(("1", "2026-05-28 12:00:00")))
    sync_pbx(sdk, mirror, since=SINCE)
    assert sync_pbx(sdk, mirror, use_feed=False).mode == "windows"


def test_a_far_end_that_loses_its_feed_is_a_clear_conflict(make_sdk, add_cdrs, mirror):
    sdk, _ = make_sdk()
    add_cdrs(*calls(("1", "2026-05-28 12:00:00")))
    sync_pbx(sdk, mirror, since=SINCE)
    # The first probe sees the feed, the next request does not (a cdrgate replaced by a PBX).
    seen = 0

    def feed_vanishes(request: httpx.Request, response: httpx.Response):
        nonlocal seen
        if endpoint_of(request) == "changes":
            seen += 1
            if seen > 1:
                return no_feed(request, response)
        return None

    flaky, _ = make_sdk(after=feed_vanishes)
    with pytest.raises(SyncConflict, match="--since"):
        sync_pbx(flaky, mirror)


def test_the_feed_logs_in_again_once_when_the_token_died(make_sdk, add_cdrs):
    sdk, recorder = make_sdk()
    add_cdrs(*calls(("1", "2026-05-28 12:00:00")))
    sdk.login()
    sdk._token = "0" * 32  # what the server forgot (restart, idle limit)
    page = sdk.changes()
    assert page is not None and [cdr.callid for _seq, cdr in page.cdrs] == ["1"]
    assert recorder.calls.count("login") == 2


def test_a_cdrgate_holding_several_pbxs_is_mirrored_whole(sdk, add_cdrs, db, mirror):
    add_cdrs(make_cdr(callid="a", timestart="2026-05-28 12:00:00", sn="111111111111"))
    add_cdrs(make_cdr(callid="b", timestart="2026-05-28 12:30:00", sn="222222222222"))
    sync_pbx(sdk, mirror, since=SINCE)
    add_cdrs(make_cdr(callid="c", timestart="2026-05-28 13:00:00", sn="333333333333"))
    assert sync_pbx(sdk, mirror).added == 1
    assert lines(mirror) == lines(db)
