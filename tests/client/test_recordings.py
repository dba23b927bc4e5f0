"""CdrClient.download_recording against the real app: the file, the retry, the atomic write."""

from __future__ import annotations

import os
import stat
import threading

import httpx
import pytest

from cdrgate.client import PbxError, ProtocolError
from tests.conftest import make_cdr

NAME = "20260528100000-1000-0215550100.wav"
DATA = b"RIFF" + bytes(range(256)) * 64


@pytest.fixture
def folder(tmp_path, add_cdrs):
    root = tmp_path / "recordings" / "2026" / "05"
    root.mkdir(parents=True)
    (root / NAME).write_bytes(DATA)
    add_cdrs(make_cdr(recording=NAME), make_cdr(callid="1780000000.2", recording="gone.wav"))
    return tmp_path / "recordings"


def test_download_recording_writes_the_file(make_sdk, folder, tmp_path):
    client, recorder = make_sdk(settings={"recordings": str(folder)})
    result = client.download_recording(NAME, tmp_path / "out.wav")
    assert (tmp_path / "out.wav").read_bytes() == DATA
    assert result.bytes == len(DATA)
    assert recorder.calls == ["login", "recording/get_random", "recording/download"]


def test_a_folder_destination_keeps_the_name(make_sdk, folder, tmp_path):
    client, _ = make_sdk(settings={"recordings": str(folder)})
    out = tmp_path / "mirror"
    out.mkdir()
    assert client.download_recording(NAME, out).path == out / NAME
    assert (out / NAME).read_bytes() == DATA


def test_v2_works_the_same(make_sdk, folder, tmp_path):
    client, _ = make_sdk(settings={"recordings": str(folder)}, api_version="v2.0.0")
    client.download_recording(NAME, tmp_path / "out.wav")
    assert (tmp_path / "out.wav").read_bytes() == DATA


def test_a_missing_recording_raises_20014_and_leaves_no_file(make_sdk, folder, tmp_path):
    client, _ = make_sdk(settings={"recordings": str(folder)})
    with pytest.raises(PbxError) as caught:
        client.download_recording("gone.wav", tmp_path)
    assert caught.value.errno == "20014"
    assert list(tmp_path.glob("gone.wav*")) == list(tmp_path.glob(".gone*")) == []


def test_a_spent_random_is_retried_once(make_sdk, folder, tmp_path):
    refused: list[int] = []

    def spend_first(request: httpx.Request, response: httpx.Response):
        if request.url.path.endswith("recording/download") and not refused:
            refused.append(True)
            return httpx.Response(200, json={"status": "Failed", "errno": "20012"})
        return None

    client, recorder = make_sdk(settings={"recordings": str(folder)}, after=spend_first)
    client.download_recording(NAME, tmp_path / "out.wav")
    assert (tmp_path / "out.wav").read_bytes() == DATA
    assert recorder.calls.count("recording/get_random") == 2


def test_a_short_body_fails_and_keeps_the_old_file(make_sdk, folder, tmp_path):
    def truncate(request: httpx.Request, response: httpx.Response):
        if request.url.path.endswith("recording/download"):
            response.read()
            headers = dict(response.headers)
            return httpx.Response(200, headers=headers, content=response.content[:100])
        return None

    (tmp_path / "out.wav").write_bytes(b"old")
    client, _ = make_sdk(settings={"recordings": str(folder)}, after=truncate)
    with pytest.raises(ProtocolError, match="100 bytes"):
        client.download_recording(NAME, tmp_path / "out.wav")
    assert (tmp_path / "out.wav").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_a_device_or_fifo_destination_is_written_in_place_not_replaced(make_sdk, folder, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as pipe:
            received.append(pipe.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    client, _ = make_sdk(settings={"recordings": str(folder)})
    result = client.download_recording(NAME, fifo)
    reader.join(10)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert received == [DATA] and result.bytes == len(DATA)
    assert list(tmp_path.glob(".pipe.*")) == []
