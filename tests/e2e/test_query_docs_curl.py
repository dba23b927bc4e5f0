"""docs/query.md's curl examples, pasted as is into bash against a real ``cdrgate serve``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import PASSWORD, Server, ServerFactory

DOC = Path(__file__).resolve().parents[2] / "docs" / "query.md"

pytestmark = pytest.mark.skipif(
    shutil.which("curl") is None or shutil.which("md5sum") is None, reason="needs curl, md5sum"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    factory = ServerFactory(tmp_path_factory.mktemp("query-docs"))
    yield factory()
    factory.close()


def test_every_example_of_the_query_docs_answers_with_data(server):
    block = re.search(r"```sh\n(.*?)```", DOC.read_text(), re.S)
    assert block is not None
    script = block[1].replace("BASE=http://127.0.0.1:8088", f"BASE={server.base_url}")
    env = {**os.environ, "CDRGATE_PBX_PASSWORD": PASSWORD}
    done = subprocess.run(
        ["bash", "-e"],
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert done.returncode == 0 and not done.stderr, done.stderr
    out = done.stdout
    assert "problem" not in out and '"status":4' not in out and "Traceback" not in out
    # The test server's CDRs are in May 2026, extensions from 1000: every example finds some.
    assert out.count('"items":[{') == 3, out
    assert "callid,timestart,callfrom" in out and '"total":' in out
    assert out.count('"groups":[{') == 2, out
