"""The SDK against the real app, in process: downloads, windows, typed records."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pytest

from cdrgate.cdr import CSV_HEADER
from cdrgate.client import Cdr, ConnectError
from tests.client.helpers import cut_download
from tests.conftest import make_cdr

# Five daily windows around the data; the whole month would only cost time.
MAY = ("2026-05-09 00:00:00", "2026-05-13 23:59:59")


def three_days(add_cdrs):
    """Calls on 10, 11 and 12 May, two of them on the exact midnight boundary."""
    return add_cdrs(
        make_cdr(callid="1.1", timestart="2026-05-10 09:00:00", callfrom="1000"),
        make_cdr(callid="1.2", timestart="2026-05-10 23:59:59", callfrom="1001"),
        make_cdr(callid="1.3", timestart="2026-05-11 00:00:00", callto="1000"),
        make_cdr(
            callid="1.4", timestart="2026-05-12 17:30:00", callfrom="1002", srctrunkname="MEO"
        ),
    )


def test_download_writes_exactly_what_one_server_download_returns(sdk, flow, add_cdrs):
    three_days(add_cdrs)
    whole = flow.download(flow.token(), "all", *MAY).content
    out = io.BytesIO()

    result = sdk.download("all", *MAY, out)

    assert out.getvalue() == whole
    assert (result.rows, result.windows) == (4, 5)


def test_windows_meet_at_midnight_without_gap_or_duplicate(sdk, add_cdrs):
    three_days(add_cdrs)
    ids = [cdr.callid for cdr in sdk.iter_cdrs("all", "2026-05-10 12:00:00", "2026-05-12 23:59:59")]
    assert ids == ["1.2", "1.3", "1.4"]
    assert sdk.windows("2026-05-10 12:00:00", "2026-05-11 12:00:00") == [
        (datetime(2026, 5, 10, 12), datetime(2026, 5, 11, 11, 59, 59)),
        (datetime(2026, 5, 11, 12), datetime(2026, 5, 11, 12)),
    ]


def test_small_windows_give_the_same_records_as_one_window(make_sdk, add_cdrs):
    three_days(add_cdrs)
    hourly, _ = make_sdk(window=timedelta(hours=1))
    daily, _ = make_sdk(window=timedelta(days=40))
    span = ("2026-05-10 00:00:00", "2026-05-11 23:59:59")
    assert list(hourly.iter_cdrs("all", *span)) == list(daily.iter_cdrs("all", *span))
    assert len(list(daily.iter_cdrs("all", *span))) == 3


def test_records_are_typed_with_none_for_empty_fields(sdk, add_cdrs):
    three_days(add_cdrs)
    first = next(sdk.iter_cdrs("1000", *MAY))
    assert first == Cdr(
        callid="1.1",
        timestart=datetime(2026, 5, 10, 9, 0, 0),
        callfrom="1000",
        callto="0215550100",
        callduraction=42,
        talkduraction=34,
        srctrunkname=None,
        dsttrunkname="SIP-Provider",
        status="ANSWERED",
        type="Outbound",
        pincode=None,
        recording=None,
        didnumber=None,
        sn="369392534749",
    )
    assert first.to_json()["timestart"] == "2026-05-10T09:00:00"


def test_extension_filter_is_passed_through(sdk, add_cdrs):
    three_days(add_cdrs)
    assert [c.callid for c in sdk.iter_cdrs("1000", *MAY)] == ["1.1", "1.3"]


def test_v2_uses_number_and_returns_the_same_file(make_sdk, flow, add_cdrs):
    three_days(add_cdrs)
    v2, recorder = make_sdk(api_version="v2.0.0")
    out = io.BytesIO()
    v2.download("1000,1002", *MAY, out)
    assert [line.split(",")[0] for line in out.getvalue().decode().splitlines()] == [
        "callid", "1.1", "1.3", "1.4",
    ]  # fmt: skip
    assert "cdr/download" in recorder.calls


@pytest.mark.parametrize("empty_download", ["errno", "header"])
def test_no_match_is_zero_records_and_a_header_only_file(make_sdk, empty_download):
    client, _ = make_sdk(settings={"empty_download": empty_download})
    out = io.BytesIO()
    assert list(client.iter_cdrs("all", *MAY)) == []
    result = client.download("all", *MAY, out)
    assert (result.rows, out.getvalue()) == (0, CSV_HEADER.encode())


def test_download_to_a_path_leaves_no_file_when_the_connection_breaks(make_sdk, add_cdrs, tmp_path):
    three_days(add_cdrs)
    client, _ = make_sdk(after=cut_download(number=2, limit=30))
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(ConnectError, match="broke during a download"):
        client.download("all", "2026-05-10 00:00:00", "2026-05-12 23:59:59", folder / "cdr.csv")
    assert list(folder.iterdir()) == []


def test_download_to_a_path_reports_progress_per_window(sdk, add_cdrs, tmp_path):
    three_days(add_cdrs)
    seen = []
    target = tmp_path / "cdr.csv"
    sdk.download(
        "all", "2026-05-10 00:00:00", "2026-05-12 23:59:59", target,
        progress=lambda s: seen.append((s.windows_done, s.windows_total, s.rows)),
    )  # fmt: skip
    assert seen == [(1, 3, 2), (2, 3, 3), (3, 3, 4)]
    assert len(target.read_text().splitlines()) == 5
