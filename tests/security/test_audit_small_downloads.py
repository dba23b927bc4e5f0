"""A download whose whole result fits in one page is audited in its redeem's transaction (one
write less per flow); the record must still tell how the download ended."""

from __future__ import annotations

from cdrgate.errors import Errno
from cdrgate.services.downloads import DownloadRequest
from cdrgate.services.export import PAGE_ROWS
from cdrgate.storage import audit
from cdrgate.timefmt import format_pbx_time, parse_pbx_time
from tests.conftest import API_USER, Flow, make_cdr

DAY_START, DAY_END = "2026-05-28 00:00:00", "2026-05-28 23:59:59"
_TEN_OCLOCK = parse_pbx_time("2026-05-28 10:00:00")


def _records(db):
    with db.read() as conn:
        return list(reversed(audit.query(conn, limit=1000)))


def _day_of_cdrs(add_cdrs, count):
    # Two CDRs a second from 10:00, so every count used here stays within the day.
    add_cdrs(
        *(
            make_cdr(callid=f"d.{i}", timestart=format_pbx_time(_TEN_OCLOCK + i // 2))
            for i in range(count)
        )
    )


def _open(client, flow, ext="1000"):
    """Spend a fresh random through the service, as the API handler does."""
    token = flow.token()
    random = flow.get_random(token, ext, DAY_START, DAY_END)["random"]
    ask = DownloadRequest(token, ext, DAY_START, DAY_END, random, "127.0.0.1", "v1.1.0")
    return client.app.state.services.downloads.open_download(ask)


def test_a_one_day_download_is_recorded_once_as_ok_with_its_rows_and_bytes(flow, add_cdrs, db):
    _day_of_cdrs(add_cdrs, 5)
    response = flow.download(flow.token(), "1000", DAY_START, DAY_END)
    assert response.status_code == 200
    [record] = _records(db)
    assert (record.account, record.selector, record.starttime) == (API_USER, "1000", DAY_START)
    assert (record.rows, record.bytes) == (5, len(response.content))
    assert (record.outcome, record.errno) == ("ok", None)


def test_a_small_download_the_client_abandons_is_corrected_to_aborted(client, flow, add_cdrs, db):
    _day_of_cdrs(add_cdrs, 3)
    export = _open(client, flow)
    [before] = _records(db)
    assert (before.outcome, before.rows) == ("ok", 3)  # written with the redeem
    export.finish("aborted")  # gone before the first byte
    [record] = _records(db)
    assert (record.id, record.outcome, record.rows, record.bytes) == (before.id, "aborted", 0, 0)


def test_a_small_download_cut_after_its_body_keeps_the_bytes_sent(client, flow, add_cdrs, db):
    _day_of_cdrs(add_cdrs, 3)
    export = _open(client, flow)
    body = export.next_chunk()
    assert body is not None and export.next_chunk() is None
    export.finish("cut")
    [record] = _records(db)
    assert (record.outcome, record.rows, record.bytes) == ("cut", 3, len(body))


def test_a_one_day_download_larger_than_a_page_is_recorded_after_its_last_byte(
    client, flow, add_cdrs, db
):
    _day_of_cdrs(add_cdrs, PAGE_ROWS + 5)
    export = _open(client, flow)
    assert _records(db) == []  # paged: its outcome is not known yet
    size = 0
    while (chunk := export.next_chunk()) is not None:
        size += len(chunk)
    export.finish("ok")
    [record] = _records(db)
    assert (record.outcome, record.rows, record.bytes) == ("ok", PAGE_ROWS + 5, size)


def test_an_empty_day_under_empty_download_errno_is_refused_and_recorded_once(
    make_client, api_account, db
):
    flow = Flow(make_client(empty_download="errno"))
    response = flow.download(flow.token(), "1000", DAY_START, DAY_END)
    assert response.json() == {"status": "Failed", "errno": Errno.CDR_NOT_FOUND.value}
    [record] = _records(db)
    assert (record.outcome, record.errno) == ("failed", Errno.CDR_NOT_FOUND.value)
