"""The README's curl walk-through, pasted as is into bash against a real ``cdrgate serve``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import PASSWORD, Server, ServerFactory

README = Path(__file__).resolve().parents[2] / "README.md"

pytestmark = pytest.mark.skipif(
    shutil.which("curl") is None or shutil.which("md5sum") is None, reason="needs curl, md5sum"
)


def curl_block() -> str:
    section = README.read_text().split("## The API, with curl", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    return block[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    factory = ServerFactory(tmp_path_factory.mktemp("readme"))
    yield factory()
    factory.close()


def paste(
    server: Server, script: str, password: str = "not the api password"
) -> subprocess.CompletedProcess[str]:
    script = script.replace("BASE=http://127.0.0.1:8088", f"BASE={server.base_url}")
    env = {**os.environ, "CDRGATE_PBX_PASSWORD": password}
    return subprocess.run(
        ["bash"], input=script, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_with_a_wrong_password_the_snippet_says_which_errno_and_why(server):
    done = paste(server, curl_block())
    assert "failed: errno 20003" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_with_the_real_password_the_snippet_reaches_the_download(server):
    done = paste(server, curl_block(), PASSWORD)
    assert "failed:" not in done.stderr, done.stderr
    # The seeded CDRs are in May: the March range of the README matches none (20021).
    assert done.stdout.strip() == '{"status":"Failed","errno":"20021"}'


def test_against_a_wrong_base_url_the_snippet_says_so(server):
    done = paste(
        server, curl_block().replace("BASE=http://127.0.0.1:8088", "BASE=http://127.0.0.1:1")
    )
    assert "no JSON answer: is BASE right?" in done.stderr
    assert "Traceback" not in done.stderr
