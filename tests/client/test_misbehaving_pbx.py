"""The SDK and CLI against a PBX that misbehaves on real sockets (tests/client/fake_pbx.py).

Whatever the far end does, a user gets one error line and a non-zero exit (an SDK exception
of a documented type), no file that looks complete, and a sync that has not stored or marked
more than it read; a re-run once the PBX behaves completes.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import CliRunner, Result

from cdrgate.cdr import CSV_HEADER
from cdrgate.cli import app as cli_app
from cdrgate.client import CdrClient, ConnectError, PbxError, ProtocolError
from cdrgate.errors import DEVICE_ONLY_MEANINGS, MEANINGS
from cdrgate.storage import sync_state
from cdrgate.storage.db import Database
from cdrgate.timefmt import parse_pbx_time
from tests.client.fake_pbx import Answer, FakePbx, http, json_answer

runner = CliRunner()
DAY = ["--start", "2026-05-01 00:00:00", "--end", "2026-05-01 23:59:59"]
# Short enough that a stall ends the test quickly; the fake's stalls last until shutdown.
TIMEOUT = "1"

ROWS = b"".join(
    b"1.%d,2026-05-01 10:00:%02d,1000,2000,5,3,,,ANSWERED,Internal,,,,SN1\n" % (i, i)
    for i in range(20)
)
CSV = CSV_HEADER.encode() + ROWS
CUT = CSV[:300]  # the header and a few rows, the last one cut mid-line


def csv_answer(body: bytes = CSV, **kwargs) -> Answer:
    return Answer(http(body, content_type="text/csv", **kwargs))


def failed(errno: str) -> Answer:
    return Answer(json_answer({"status": "Failed", "errno": errno}))


def html(status: str) -> Answer:
    return Answer(http(b"<html><body><h1>" + status.encode() + b"</h1></body></html>",
                       status, "text/html"))  # fmt: skip


def download(url: str, *args: str) -> Result:
    return runner.invoke(
        cli_app,
        ["download", "--pbx", url, "--username", "api", "--timeout", TIMEOUT, *DAY, *args],
        env={"CDRGATE_PBX_PASSWORD": "secret"},
    )


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.stderr
    assert "Traceback" not in result.output + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


MISBEHAVIOURS = {
    "stalls mid-CSV": (
        {"cdr/download": Answer(http(CUT, content_type="text/csv", length=len(CSV)), "hang")},
        ConnectError,
    ),
    "stalls after its head": (
        {"cdr/download": Answer(http(b"", content_type="text/csv", length=len(CSV)), "hang")},
        ConnectError,
    ),
    "closes mid-CSV, Content-Length": (
        {"cdr/download": Answer(http(CUT, content_type="text/csv", length=len(CSV)), "close")},
        ConnectError,
    ),
    "chunked cut short": (
        {
            "cdr/download": Answer(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"%x\r\n" % len(CUT)
                + CUT
                + b"\r\n",
                "close",
            )
        },
        ConnectError,
    ),
    "resets mid-CSV": (
        {"cdr/download": Answer(http(CUT, content_type="text/csv", length=len(CSV)), "reset")},
        ConnectError,
    ),
    "closes mid-line, no Content-Length": (
        {"cdr/download": Answer(http(CUT, content_type="text/csv", length=-1), "close")},
        ConnectError,
    ),
    "foreign header": ({"cdr/download": csv_answer(b"id,start,from,to\n1,2,3,4\n")}, ProtocolError),
    "a missing column": (
        {"cdr/download": csv_answer(CSV.replace(b",sn\n", b"\n", 1))},
        ProtocolError,
    ),
    "a ragged row": (
        {"cdr/download": csv_answer(CSV + b"1.99,2026-05-01 10:01:00,1000\n")},
        ProtocolError,
    ),
    "invalid UTF-8": (
        {"cdr/download": csv_answer(CSV[:200] + b"\xff\xfe" + CSV[200:])},
        ProtocolError,
    ),
    "errno 10004": ({"cdr/download": failed("10004")}, PbxError),
    "errno 20012": ({"cdr/download": failed("20012")}, PbxError),
    "errno 20015": ({"cdr/download": failed("20015")}, PbxError),
    "errno 20018": ({"cdr/download": failed("20018")}, PbxError),
    "HTML 500": ({"cdr/download": html("500 Internal Server Error")}, ProtocolError),
    "HTML 502": ({"cdr/download": html("502 Bad Gateway")}, ProtocolError),
    "HTML 504": ({"cdr/download": html("504 Gateway Timeout")}, ProtocolError),
    "301 elsewhere": (
        {
            "cdr/download": Answer(
                http(b"", "301 Moved Permanently", headers=b"Location: http://127.0.0.1:9/x\r\n")
            )
        },
        ProtocolError,
    ),
    "a line without end": (
        {
            "cdr/download": Answer(
                http(CSV_HEADER.encode() + b"y" * (2 << 20), content_type="text/csv")
            )
        },
        ProtocolError,
    ),
    "login without token": ({"login": Answer(json_answer({"status": "Success"}))}, ProtocolError),
    "login with a number for a token": (
        {"login": Answer(json_answer({"status": "Success", "token": 12345}))},
        ProtocolError,
    ),
    "says nothing": ({"login": Answer(b"", "hang")}, ConnectError),
    "resets the connection": ({"login": Answer(b"", "reset")}, ConnectError),
}


@pytest.mark.parametrize("answers, error", MISBEHAVIOURS.values(), ids=MISBEHAVIOURS.keys())
def test_a_misbehaving_pbx_is_one_error_line_and_no_file(answers, error, tmp_path):
    target = tmp_path / "may.csv"
    with FakePbx(answers).running() as url:
        one_error_line(download(url, "-o", str(target)))
        with CdrClient(url, "api", "secret", timeout=float(TIMEOUT)) as pbx, pytest.raises(error):
            pbx.download("all", DAY[1], DAY[3], tmp_path / "sdk.csv")
    assert sorted(tmp_path.iterdir()) == []


def test_a_failed_download_keeps_the_previous_file_and_a_rerun_completes(tmp_path):
    target = tmp_path / "may.csv"
    target.write_bytes(b"yesterday's file\n")
    broken = Answer(http(CUT, content_type="text/csv", length=len(CSV)), "close")
    with FakePbx({"cdr/download": [broken, csv_answer()]}).running() as url:
        one_error_line(download(url, "-o", str(target)))
        assert target.read_bytes() == b"yesterday's file\n"
        result = download(url, "-o", str(target))
    assert result.exit_code == 0, result.stderr
    assert target.read_bytes() == CSV


def test_a_sync_cut_in_its_second_window_keeps_the_first_and_resumes(tmp_path):
    into = f"sqlite:///{tmp_path / 'mirror.db'}"
    second_day = CSV.replace(b"2026-05-01", b"2026-05-02").replace(b"1.", b"2.")
    cut = Answer(http(second_day[:300], content_type="text/csv", length=len(CSV)), "close")
    args = ["sync", "--username", "api", "--into", into, "--timeout", TIMEOUT,
            "--since", "2026-05-01 00:00:00", "--until", "2026-05-02 23:59:59"]  # fmt: skip
    env = {"CDRGATE_PBX_PASSWORD": "secret"}
    answers = {"cdr/download": [csv_answer(), cut, csv_answer(), csv_answer(second_day)]}
    with FakePbx(answers).running() as url:
        one_error_line(runner.invoke(cli_app, [*args, "--pbx", url], env=env))
        db = Database(into)
        try:
            with db.read() as conn:
                (state,) = sync_state.all_states(conn)
                stored = conn.exec_driver_sql("SELECT count(*) FROM cdr").scalar_one()
            # The first day is stored and marked; nothing of the cut second day.
            assert (stored, state.mark_ts) == (20, parse_pbx_time("2026-05-01 10:00:19"))
        finally:
            db.dispose()
        again = runner.invoke(cli_app, [*args, "--pbx", url], env=env)
    assert again.exit_code == 0, again.stderr
    assert "40 CDRs read, 20 new" in again.stdout


def test_a_crlf_csv_is_written_with_its_own_line_ends_throughout(tmp_path):
    # A device (or a proxy) sending CRLF: the file must not mix an LF header with CRLF rows.
    body = CSV.replace(b"\n", b"\r\n")
    target = tmp_path / "may.csv"
    with FakePbx({"cdr/download": csv_answer(body)}).running() as url:
        result = download(url, "-o", str(target))
    assert result.exit_code == 0, result.stderr
    assert target.read_bytes() == body


def test_an_oversized_answer_head_is_a_protocol_error_not_an_https_hint():
    huge = Answer(http(b"{}", headers=b"X-Padding: " + b"a" * 1_000_000 + b"\r\n"))
    with FakePbx({"login": huge}).running() as url:
        with CdrClient(url, "api", "secret") as pbx, pytest.raises(ProtocolError) as caught:
            pbx.login()
    assert "HTTPS" not in str(caught.value)
    assert "head" in str(caught.value)


def test_a_redirect_names_where_it_points_and_is_not_followed():
    moved = Answer(http(b"", "302 Found", headers=b"Location: https://pbx.example:8088/\r\n"))
    with FakePbx({"login": moved}).running() as url:
        with CdrClient(url, "api", "secret") as pbx, pytest.raises(ProtocolError) as caught:
            pbx.login()
    assert "302" in str(caught.value) and "https://pbx.example:8088/" in str(caught.value)


def test_a_gateway_error_says_the_far_end_failed_not_that_the_url_is_wrong():
    with FakePbx({"cdr/download": html("502 Bad Gateway")}).running() as url:
        with CdrClient(url, "api", "secret") as pbx, pytest.raises(ProtocolError) as caught:
            list(pbx.iter_cdrs("all", DAY[1], DAY[3]))
    message = str(caught.value)
    assert "HTTP 502 Bad Gateway" in message and "S-Series API URL" not in message


def test_a_device_errno_cdrgate_never_sends_is_still_said_in_words():
    with FakePbx({"cdr/download": failed("20018")}).running() as url:
        with CdrClient(url, "api", "secret") as pbx, pytest.raises(PbxError) as caught:
            list(pbx.iter_cdrs("all", DAY[1], DAY[3]))
    assert caught.value.errno == "20018"
    assert "voice file does not exist (errno 20018)" in str(caught.value)


def test_a_huge_answer_to_login_is_refused_without_reading_it_all():
    # Valid JSON, but 64 MiB of it: the client stops reading at its cap instead of holding it.
    padded = b'{"status":"Success","token":"t","pad":"' + b"x" * (64 << 20) + b'"}'
    with FakePbx({"login": Answer(http(padded))}).running() as url:
        with CdrClient(url, "api", "secret") as pbx, pytest.raises(ProtocolError) as caught:
            pbx.login()
    assert "login" in str(caught.value) and "MiB" in str(caught.value)


@pytest.mark.parametrize("what", ["cdr", "recording"])
def test_a_token_of_odd_shape_reaches_the_download_link_intact(what, tmp_path):
    token = "a+b&c d/é%"
    answers = {
        "login": Answer(json_answer({"status": "Success", "token": token})),
        "cdr/download": csv_answer(),
        "recording/download": Answer(http(b"RIFF", content_type="audio/wav")),
    }
    fake = FakePbx(answers)
    with fake.running() as url, CdrClient(url, "api", "secret") as pbx:
        if what == "cdr":
            list(pbx.iter_cdrs("all", DAY[1], DAY[3]))
        else:
            pbx.download_recording("call.wav", tmp_path / "call.wav")
    (link,) = [t for t in fake.targets if t.startswith(f"/api/v1.1.0/{what}/download?")]
    assert parse_qs(urlsplit(link).query)["token"] == [token]


def test_a_body_without_length_cut_mid_line_is_said_to_be_cut():
    # Without Content-Length or chunks, only the unfinished last line shows the cut.
    cut = Answer(http(CUT, content_type="text/csv", length=-1), "close")
    with FakePbx({"cdr/download": cut}).running() as url:
        line = one_error_line(download(url, "-o", "-"))
    assert "ended in the middle of a line" in line


NOT_A_FEED = {
    "302 to its login page": Answer(http(b"", "302 Found", headers=b"Location: /login\r\n")),
    "403": html("403 Forbidden"),
    "401 of its web server": Answer(http(b"<html>Unauthorized</html>", "401 Unauthorized",
                                         "text/html", b'WWW-Authenticate: Basic realm="PBX"\r\n')),
}  # fmt: skip


@pytest.mark.parametrize("answer", NOT_A_FEED.values(), ids=NOT_A_FEED.keys())
def test_a_pbx_whose_web_server_guards_other_paths_is_synced_by_windows(answer, tmp_path):
    # sync asks every far end for cdrgate's change feed first; a real PBX's web server may
    # answer that path with its login page or a refusal rather than a 404.
    into = f"sqlite:///{tmp_path / 'mirror.db'}"
    args = ["sync", "--username", "api", "--into", into, "--timeout", TIMEOUT,
            "--since", "2026-05-01 00:00:00", "--until", "2026-05-01 23:59:59"]  # fmt: skip
    fake = FakePbx({"/v1/cdrs/changes": answer, "cdr/download": csv_answer()})
    with fake.running() as url:
        result = runner.invoke(cli_app, [*args, "--pbx", url], env={"CDRGATE_PBX_PASSWORD": "x"})
    assert result.exit_code == 0, result.stderr
    assert "20 CDRs read, 20 new" in result.stdout


def test_an_html_page_answered_with_200_is_called_one():
    page = Answer(
        http(b"<!DOCTYPE html>\n<html><body>Sign in</body></html>\n", content_type="text/html")
    )
    with FakePbx({"cdr/download": page}).running() as url:
        line = one_error_line(download(url, "-o", "-"))
    assert "an HTML page" in line


def test_an_output_that_is_a_folder_is_refused_before_downloading(tmp_path):
    fake = FakePbx({"cdr/download": csv_answer()})
    with fake.running() as url:
        result = download(url, "-o", str(tmp_path))
        with CdrClient(url, "api", "secret") as pbx, pytest.raises(ValueError, match="folder"):
            pbx.download("all", DAY[1], DAY[3], tmp_path)
    assert result.exit_code == 2 and "is a folder" in result.stderr, result.stderr
    assert sorted(tmp_path.iterdir()) == [] and "cdr/download" not in fake.seen


def test_a_login_answer_cut_mid_body_moves_to_the_next_node():
    cut = Answer(http(b'{"status":"Succ', length=200), "close")
    with FakePbx({"login": cut}).running() as broken, FakePbx({}).running() as working:
        with CdrClient([broken, working], "api", "secret") as pbx:
            pbx.login()
            assert pbx.node_url == working


def test_the_device_only_errnos_are_those_cdrgate_never_sends():
    # One place for each meaning: a code cdrgate starts sending moves to Errno and MEANINGS.
    assert not set(DEVICE_ONLY_MEANINGS) & set(MEANINGS)


@pytest.fixture
def no_busy_waits(monkeypatch):
    """20010's waits shortened: these tests check the tries, not the clock."""
    import cdrgate.client._errors as errors_module

    monkeypatch.setattr(errors_module, "BUSY_WAITS_S", (0.0, 0.0, 0.0))


def test_a_busy_pbx_is_asked_again_with_a_new_random(no_busy_waits, tmp_path):
    """20010 means "try again shortly"; the README tells API clients so, and the SDK does."""
    fake = FakePbx({"cdr/download": [failed("20010"), failed("20010"), csv_answer()]})
    with fake.running() as url:
        result = download(url, "-o", str(tmp_path / "may.csv"))
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "may.csv").read_bytes() == CSV
    assert fake.seen.count("cdr/get_random") == 3


def test_a_pbx_that_stays_busy_is_an_error_after_its_retries(no_busy_waits):
    fake = FakePbx({"cdr/download": failed("20010")})
    with fake.running() as url:
        with CdrClient(url, "api", "secret") as pbx, pytest.raises(PbxError) as caught:
            list(pbx.iter_cdrs("all", DAY[1], DAY[3]))
    assert caught.value.errno == "20010"
    assert fake.seen.count("cdr/download") == 4  # the first try and three more


def test_a_busy_recording_download_is_asked_again(no_busy_waits, tmp_path):
    wav = b"RIFF" + bytes(60)
    audio = Answer(http(wav, content_type="audio/x-wav"))
    fake = FakePbx({"recording/download": [failed("20010"), audio]})
    with fake.running() as url, CdrClient(url, "api", "secret") as pbx:
        done = pbx.download_recording("20260501-1000-2000.wav", tmp_path)
    assert done.path.read_bytes() == wav
    assert fake.seen.count("recording/get_random") == 2


# A far end that trickles: one byte every TRICKLE_S, far inside the per-read timeout, so only
# the overall deadline (DEADLINE seconds a request) ends it. Short answers, so that without
# the deadline each case ends too (in ~20 s) and completes instead of failing.
TRICKLE_S = 0.05
DEADLINE = "1"
FEW_ROWS = CSV_HEADER.encode() + b"".join(ROWS.splitlines(keepends=True)[:4])


def trickled(data: bytes, *, head_at_once: bool = True) -> Answer:
    """``data`` trickled from its body on (or from its first byte)."""
    return Answer(
        data, trickle=TRICKLE_S, trickle_from=data.index(b"\r\n\r\n") + 4 if head_at_once else 0
    )


RANDOM: dict[str, object] = {"status": "Success", "extid": "all", "starttime": DAY[1], "endtime": DAY[3],
                            "random": "f" * 32}  # fmt: skip
TRICKLES = {
    "login's head": {"login": trickled(json_answer({"status": "Success"}), head_at_once=False)},
    "get_random's body": {"cdr/get_random": trickled(json_answer(RANDOM))},
    "the CSV": {"cdr/download": trickled(http(FEW_ROWS, content_type="text/csv"))},
    "an errno's body": {"cdr/download": trickled(failed("20012").data)},
}


@pytest.mark.parametrize("answers", TRICKLES.values(), ids=TRICKLES.keys())
def test_a_pbx_that_trickles_is_cut_at_the_deadline_and_leaves_no_file(answers, tmp_path):
    with FakePbx(answers).running() as url:
        line = one_error_line(download(url, "--deadline", DEADLINE, "-o", str(tmp_path / "a")))
        deadline = float(DEADLINE)
        with CdrClient(url, "api", "secret", timeout=float(TIMEOUT), deadline=deadline) as pbx:
            with pytest.raises(ConnectError, match="1 s deadline"):
                pbx.download("all", DAY[1], DAY[3], tmp_path / "sdk.csv")
    assert "took longer than the 1 s deadline" in line
    assert sorted(tmp_path.iterdir()) == []


def test_a_trickled_recording_is_cut_at_the_deadline_and_leaves_no_file(tmp_path):
    wav = Answer(
        http(b"RIFF" + bytes(400), content_type="audio/wav"), trickle=TRICKLE_S, trickle_from=60
    )
    with FakePbx({"recording/download": wav}).running() as url:
        with CdrClient(
            url, "api", "secret", timeout=float(TIMEOUT), deadline=float(DEADLINE)
        ) as pbx:
            with pytest.raises(ConnectError, match=r"recording download: .*1 s deadline"):
                pbx.download_recording("call.wav", tmp_path)
    assert sorted(tmp_path.iterdir()) == []


def test_a_sync_from_a_pbx_that_trickles_is_cut_at_the_deadline(tmp_path):
    into = f"sqlite:///{tmp_path / 'mirror.db'}"
    args = ["sync", "--username", "api", "--into", into, "--timeout", TIMEOUT,
            "--deadline", DEADLINE, "--since", DAY[1], "--until", DAY[3]]  # fmt: skip
    fake = FakePbx({"cdr/download": trickled(http(FEW_ROWS, content_type="text/csv"))})
    with fake.running() as url:
        result = runner.invoke(cli_app, [*args, "--pbx", url], env={"CDRGATE_PBX_PASSWORD": "x"})
    assert "took longer than the 1 s deadline" in one_error_line(result)


def test_the_deadline_bounds_each_answer_not_the_whole_download(tmp_path):
    # Eight windows, each answer trickling for ~0.3 s of a 2 s deadline: together longer than
    # the deadline, each well inside it, so the download completes.
    header_only = http(CSV_HEADER.encode(), content_type="text/csv")
    window = Answer(header_only, trickle=TRICKLE_S, trickle_from=len(header_only) - 6)
    with FakePbx({"cdr/download": window}).running() as url:
        result = download(url, "--deadline", "2", "--window-hours", "3", "-o", str(tmp_path / "a"))
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "a").read_bytes() == CSV_HEADER.encode()
