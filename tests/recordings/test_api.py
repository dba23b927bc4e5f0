"""recording/get_random and recording/download: the file, its headers, and every refusal."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import Flow, make_cdr
from tests.recordings.conftest import WAV, RecordingFlow

NAME = "20260528100000-1000-0215550100.wav"


def errno(response) -> str:
    body = response.json()
    assert body["status"] == "Failed", body
    return body["errno"]


@pytest.mark.parametrize("version", ["v1.1.0", "v2.0.0"])
def test_download_returns_the_file_with_attachment_headers(rec_client, store_recording, version):
    store_recording(NAME)
    response = RecordingFlow(rec_client, version).download(NAME)
    assert response.status_code == 200
    assert response.content == WAV
    assert response.headers["content-type"] == "audio/wav"
    assert response.headers["content-disposition"] == f'attachment; filename="{NAME}"'
    assert response.headers["content-length"] == str(len(WAV))


def test_get_random_echoes_the_name_and_issues_32_hex(rec, store_recording):
    store_recording(NAME)
    answer = rec.get_random(rec.token(), NAME)
    assert answer["status"] == "Success"
    assert answer["recording"] == NAME
    assert len(answer["random"]) == 32 and int(answer["random"], 16) >= 0


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a.mp3", "audio/mpeg"), ("a.ogg", "audio/ogg"), ("a.gsm", "application/octet-stream")],
)
def test_content_type_follows_the_extension(rec, store_recording, name, expected):
    store_recording(name)
    assert rec.download(name).headers["content-type"] == expected


def test_post_download_ignores_the_body(rec, store_recording):
    store_recording(NAME)
    assert rec.download(NAME, method="POST", content=b"junk").content == WAV


def test_parameters_in_any_order_and_percent_encoded(rec, store_recording):
    name = "q 1+2.wav"
    store_recording(name)
    token = rec.token()
    random = rec.random(token, name)
    url = rec.url("recording/download") + f"?token={token}&random={random}&recording=q%201%2B2.wav"
    assert rec.http.get(url).content == WAV


def test_a_name_pasted_into_the_link_unencoded_keeps_its_plus(rec, store_recording):
    # Clients paste the name from the CDR as it is, and an inbound call's names the caller:
    # "+" read as a space made it another name, the random not its (20012).
    name = "20260528101500-1780000000.1-+41794377924-1017-Inbound.wav"
    store_recording(name)
    token = rec.token()
    random = rec.random(token, name)
    url = rec.url("recording/download") + f"?recording={name}&random={random}&token={token}"
    assert "+41794377924" in str(rec.http.build_request("GET", url).url)  # sent as it is
    assert rec.http.get(url).content == WAV


def test_a_form_encoded_name_still_reads_plus_as_a_space(rec, store_recording):
    name = "q 1.wav"  # urlencode / http_build_query: " " as "+"
    store_recording(name)
    token = rec.token()
    random = rec.random(token, name)
    url = rec.url("recording/download") + f"?recording=q+1.wav&random={random}&token={token}"
    assert rec.http.get(url).content == WAV


def test_a_file_in_a_deep_dated_folder_is_found(rec, store_recording):
    store_recording(NAME, sub="2026/05/28/queue/7000")
    assert rec.download(NAME).content == WAV


def test_a_file_copied_in_while_serving_is_found_without_restart(rec, store_recording):
    store_recording("first.wav")
    assert rec.download("first.wav").status_code == 200
    store_recording(NAME, sub="2026/05/29")
    assert rec.download(NAME).content == WAV


@pytest.mark.parametrize("name", [None, "", "   "])
def test_missing_or_blank_recording_is_10004(rec, name):
    assert errno_of(rec.get_random(rec.token(), name)) == "10004"


def test_missing_recording_at_download_is_10004(rec, store_recording):
    store_recording(NAME)
    token = rec.token()
    random = rec.random(token, NAME)
    url = rec.url("recording/download") + f"?random={random}&token={token}"
    assert errno(rec.http.get(url)) == "10004"


def test_bad_token_is_refused_as_for_cdrs(rec, store_recording):
    store_recording(NAME)
    assert errno_of(rec.get_random("0" * 32, NAME)) == "20004"
    answer = rec.http.post(rec.url("recording/get_random"), json={"recording": NAME}).json()
    assert answer["errno"] == "20005"


def test_a_name_no_cdr_carries_is_20014_even_if_the_file_exists(rec, store_recording):
    store_recording("orphan.wav", cdr=False)
    assert errno_of(rec.get_random(rec.token(), "orphan.wav")) == "20014"


def test_a_cdr_without_its_file_is_20014(rec, add_cdrs):
    add_cdrs(make_cdr(recording="gone.wav"))
    assert errno_of(rec.get_random(rec.token(), "gone.wav")) == "20014"


def test_a_file_removed_after_get_random_is_20014_at_download(rec, store_recording):
    path = store_recording(NAME)
    token = rec.token()
    random = rec.random(token, NAME)
    path.unlink()
    assert errno(rec.fetch(token, NAME, random)) == "20014"


def test_without_a_recordings_folder_every_name_is_20014(make_client, api_account, add_cdrs):
    add_cdrs(make_cdr(recording=NAME))
    flow = RecordingFlow(make_client())
    assert errno_of(flow.get_random(flow.token(), NAME)) == "20014"


@pytest.mark.parametrize(
    "name",
    [
        "../secret.wav",
        "..",
        "2026/05/28/x.wav",
        "..\\secret.wav",
        "/etc/passwd",
        "C:\\Windows\\win.ini",
        "..%2fsecret.wav",
    ],
)
def test_path_like_names_are_20014_even_when_a_cdr_names_them(rec, add_cdrs, folder, name):
    (folder.parent / "secret.wav").write_bytes(b"secret")
    add_cdrs(make_cdr(recording=name))
    assert errno_of(rec.get_random(rec.token(), name)) == "20014"


def test_a_name_with_a_nul_is_refused_with_the_api_bodys_20000(rec, add_cdrs):
    # No API body's string may hold a NUL (README's errno table): PostgreSQL cannot store one.
    add_cdrs(make_cdr(recording="x.wav\x00.txt"))  # stored as x.wav.txt: NUL means nothing
    assert errno_of(rec.get_random(rec.token(), "x.wav\x00.txt")) == "20000"


@pytest.mark.parametrize(
    "encoded", ["..%2Fsecret.wav", "%2E%2E%2Fsecret.wav", "..%5Csecret.wav", "x.wav%00"]
)
def test_encoded_traversal_on_the_download_is_refused(rec, store_recording, folder, encoded):
    (folder.parent / "secret.wav").write_bytes(b"secret")
    store_recording(NAME)
    token = rec.token()
    random = rec.random(token, NAME)
    url = rec.url("recording/download") + f"?recording={encoded}&random={random}&token={token}"
    response = rec.http.get(url)
    assert errno(response) == "20012"  # the random was issued for another name
    assert b"secret" not in response.content


def test_a_symlink_leading_outside_the_folder_is_20014(rec, add_cdrs, folder):
    outside = folder.parent / "outside.wav"
    outside.write_bytes(b"outside")
    (folder / "2026" / "05" / "28" / "link.wav").symlink_to(outside)
    add_cdrs(make_cdr(recording="link.wav"))
    assert errno_of(rec.get_random(rec.token(), "link.wav")) == "20014"


def test_a_symlinked_folder_leading_outside_is_not_walked(rec, add_cdrs, folder):
    outside = folder.parent / "elsewhere"
    outside.mkdir()
    (outside / "far.wav").write_bytes(b"far")
    (folder / "linked").symlink_to(outside, target_is_directory=True)
    add_cdrs(make_cdr(recording="far.wav"))
    assert errno_of(rec.get_random(rec.token(), "far.wav")) == "20014"


def test_a_symlink_inside_the_folder_is_served(rec, store_recording, folder, add_cdrs):
    target = store_recording("real.wav")
    (folder / "alias.wav").symlink_to(target)
    add_cdrs(make_cdr(callid="1780000009.9", recording="alias.wav"))
    assert rec.download("alias.wav").content == WAV


def test_second_use_of_a_random_is_20012(rec, store_recording):
    store_recording(NAME)
    token = rec.token()
    random = rec.random(token, NAME)
    assert rec.fetch(token, NAME, random).status_code == 200
    assert errno(rec.fetch(token, NAME, random)) == "20012"


def test_unknown_random_is_20012(rec, store_recording):
    store_recording(NAME)
    assert errno(rec.fetch(rec.token(), NAME, "f" * 32)) == "20012"


@pytest.mark.parametrize("where", [0, 10, 11, 31])
def test_a_random_with_one_digit_changed_is_20012_and_the_real_one_still_works(
    rec, store_recording, where
):
    # Its first 11 digits name its expiry (the row's key), the rest are secret.
    store_recording(NAME)
    token = rec.token()
    random = rec.random(token, NAME)
    digit = "0" if random[where] != "0" else "1"
    assert errno(rec.fetch(token, NAME, random[:where] + digit + random[where + 1 :])) == "20012"
    assert rec.fetch(token, NAME, random).status_code == 200


def test_random_older_than_30_seconds_is_20012(rec, store_recording, clock):
    store_recording(NAME)
    token = rec.token()
    random = rec.random(token, NAME)
    clock.advance(31)
    assert errno(rec.fetch(token, NAME, random)) == "20012"


def test_random_of_another_token_is_20012(rec, store_recording):
    store_recording(NAME)
    random = rec.random(rec.token(), NAME)
    assert errno(rec.fetch(rec.token(), NAME, random)) == "20012"


def test_random_for_another_recording_is_20012(rec, store_recording):
    store_recording(NAME)
    store_recording("other.wav")
    token = rec.token()
    random = rec.random(token, NAME)
    assert errno(rec.fetch(token, "other.wav", random)) == "20012"


def test_a_cdr_random_does_not_open_a_recording(rec, store_recording):
    store_recording(NAME)
    flow = Flow(rec.http)
    token = flow.token()
    cdr_random = flow.get_random(token)["random"]
    assert errno(rec.fetch(token, NAME, cdr_random)) == "20012"


def test_a_recording_random_does_not_open_a_cdr_download(rec, store_recording):
    store_recording(NAME)
    flow = Flow(rec.http)
    token = flow.token()
    random = rec.random(token, NAME)
    url = flow.download_url(token, random, "all", "2026-05-01 00:00:00", "2026-05-31 23:59:59")
    assert errno(rec.http.get(url)) == "20020"


def test_bad_allowedip_is_20015(rec, store_recording):
    store_recording(NAME)
    assert errno_of(rec.get_random(rec.token(), NAME, allowedip="10.0.0.1,10.0.0.2")) == "20015"


def test_download_from_a_third_ip_is_20015(rec, make_client, store_recording, folder):
    store_recording(NAME)
    token = rec.token()
    random = rec.random(token, NAME)
    stranger = RecordingFlow(make_client("127.0.0.9", recordings=str(folder)))
    assert errno(stranger.fetch(token, NAME, random)) == "20015"


def test_download_from_the_allowedip_is_served(rec, make_client, store_recording, folder):
    store_recording(NAME)
    token = rec.token()
    random = rec.random(token, NAME, allowedip="127.0.0.9")
    other = RecordingFlow(make_client("127.0.0.9", recordings=str(folder)))
    assert other.fetch(token, NAME, random).content == WAV


def test_a_range_answers_206_and_spends_the_random(rec, store_recording):
    store_recording(NAME)
    token = rec.token()
    random = rec.random(token, NAME)
    response = rec.fetch(token, NAME, random, headers={"Range": "bytes=4-9"})
    assert response.status_code == 206
    assert response.content == WAV[4:10]
    assert response.headers["content-range"] == f"bytes 4-9/{len(WAV)}"
    assert response.headers["content-length"] == "6"
    assert errno(rec.fetch(token, NAME, random)) == "20012"


def test_a_suffix_range_sends_the_tail(rec, store_recording):
    store_recording(NAME)
    response = rec.download(NAME, headers={"Range": "bytes=-5"})
    assert response.status_code == 206
    assert response.content == WAV[-5:]


def test_a_range_past_the_end_is_416(rec, store_recording):
    store_recording(NAME)
    response = rec.download(NAME, headers={"Range": f"bytes={len(WAV) + 10}-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(WAV)}"


def test_a_range_of_numbers_longer_than_python_reads_is_still_a_range(rec, store_recording):
    """Digits past Python's int limit (4300) are positions past the end: was 30003."""
    store_recording(NAME)
    huge = "9" * 5000
    past_end = rec.download(NAME, headers={"Range": f"bytes={huge}-"})
    assert past_end.status_code == 416
    assert past_end.headers["content-range"] == f"bytes */{len(WAV)}"
    to_the_end = rec.download(NAME, headers={"Range": f"bytes=4-{huge}"})
    assert to_the_end.status_code == 206
    assert to_the_end.content == WAV[4:]
    whole = rec.download(NAME, headers={"Range": f"bytes=-{huge}"})
    assert whole.status_code == 206
    assert whole.content == WAV
    padded = rec.download(NAME, headers={"Range": f"bytes={'0' * 5000}4-9"})
    assert padded.content == WAV[4:10]


def test_a_malformed_range_sends_the_whole_file(rec, store_recording):
    store_recording(NAME)
    response = rec.download(NAME, headers={"Range": "lines=1-2"})
    assert response.status_code == 200
    assert response.content == WAV


def test_a_100_way_race_on_one_random_serves_exactly_one_file(rec, store_recording):
    store_recording(NAME)
    token = rec.token()
    random = rec.random(token, NAME)
    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(lambda _: rec.fetch(token, NAME, random), range(100)))
    served = [r for r in responses if r.headers["content-type"] == "audio/wav"]
    assert len(served) == 1
    assert served[0].content == WAV
    assert {errno(r) for r in responses if r not in served} == {"20012"}


def test_downloads_are_audited_as_recordings(rec, store_recording, db):
    from cdrgate.storage import audit

    store_recording(NAME)
    rec.download(NAME)
    token = rec.token()
    rec.fetch(token, NAME, "f" * 32)
    with db.read() as conn:
        rows = audit.query(conn)
    assert [(r.kind, r.selector, r.outcome, r.errno) for r in rows] == [
        ("recording", NAME, "failed", "20012"),
        ("recording", NAME, "ok", None),
    ]
    assert rows[1].bytes == len(WAV)


def errno_of(answer) -> str:
    assert answer["status"] == "Failed", answer
    return answer["errno"]


def test_a_non_ascii_name_is_served_with_an_rfc_6266_filename(rec, store_recording):
    name = 'appel-é "vip".wav'
    store_recording(name)
    token = rec.token()
    random = rec.random(token, name)
    response = rec.http.get(
        rec.url("recording/download"), params={"recording": name, "token": token, "random": random}
    )
    assert response.content == WAV
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"appel-_ _vip_.wav\"; filename*=UTF-8''appel-%C3%A9%20%22vip%22.wav"
    )


def test_a_name_with_a_control_character_is_20014(rec, add_cdrs, folder):
    (folder / "a\rb.wav").write_bytes(WAV)
    add_cdrs(make_cdr(recording="a\rb.wav"))
    assert errno_of(rec.get_random(rec.token(), "a\rb.wav")) == "20014"


def test_a_download_cancelled_while_it_opens_the_file_is_audited_cut(
    rec, rec_client, store_recording, db, monkeypatch
):
    import asyncio
    import threading

    from starlette.types import Message

    from cdrgate.recfolder import RecordingFolder
    from cdrgate.storage import audit
    from tests import cancelled_request

    store_recording(NAME)
    token = rec.token()
    random = rec.random(token, NAME)
    opening, cancelled = threading.Event(), threading.Event()
    real_open = RecordingFolder.open

    def slow_open(self, name):
        opening.set()
        cancelled.wait(10)  # the request is cancelled (the drain's deadline) meanwhile
        return real_open(self, name)

    monkeypatch.setattr(RecordingFolder, "open", slow_open)
    target = f"/api/v1.1.0/recording/download?recording={NAME}&random={random}&token={token}"

    async def cancelled_download() -> None:
        sent: list[Message] = []
        request = cancelled_request.get(rec_client.app, target, sent)
        await asyncio.to_thread(opening.wait, 10)
        request.cancel()  # as uvicorn cancels a request at the drain's deadline
        cancelled.set()
        await asyncio.wait([request])
        assert request.cancelled() and sent == []

    asyncio.run(cancelled_download())
    with db.read() as conn:
        rows = audit.query(conn)
    # Before: the request ended under the open (anyio's hand-over let the cancel through), and
    # the body made afterwards was never finished: no record, and its export slot held.
    assert [(r.kind, r.outcome, r.bytes) for r in rows] == [("recording", "cut", 0)]
    assert rec_client.app.state.services.recordings.slots.in_use == 0


def test_a_recording_adds_its_bytes_to_the_export_bytes_but_no_cdr_row(
    rec, rec_client, store_recording
):
    from tests.ops.promtext import value

    store_recording(NAME)
    before = rec_client.get("/metrics").text
    assert rec.download(NAME).content == WAV
    after = rec_client.get("/metrics").text

    def grew(name: str) -> float:
        return value(after, name) - value(before, name)

    # Before: each recording counted one "CDR row sent".
    assert grew("cdrgate_export_rows_total") == 0
    assert grew("cdrgate_export_bytes_total") == len(WAV)
