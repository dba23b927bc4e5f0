"""Every ```sh and ```python block of README.md and docs/*.md runs as pasted against a
demo-like server (``make demo``'s exports, a seeded 2026 database, the API user ``api``),
unless an ``<!-- not-run: reason -->`` line right before it says why it cannot."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cdrgate.ingest.seeding import seed_database
from cdrgate.seed import SeedPlan
from cdrgate.services.auth import set_api_user
from cdrgate.storage import schema
from cdrgate.storage.db import Database
from tests.servers import Server, launch

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DEMO_ADDRESS = "127.0.0.1:8088"
DEMO_PASSWORD = "the demo's api password"
BLOCK = re.compile(r"(?P<before>[^\n]*)\n```(?P<lang>sh|python)\n(?P<code>.*?)```", re.S)
NOT_RUN = re.compile(r"<!-- not-run: (?P<reason>\S.*?) -->")


@dataclass(frozen=True)
class Snippet:
    doc: str
    line: int
    lang: str
    code: str
    not_run: str | None

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def snippets() -> list[Snippet]:
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start("lang")) + 1
            marker = NOT_RUN.fullmatch(match["before"].strip())
            found.append(
                Snippet(
                    str(path.relative_to(ROOT)), line, match["lang"], match["code"],
                    marker["reason"] if marker else None,
                )
            )  # fmt: skip
    return found


SNIPPETS = snippets()
RUNNABLE = [s for s in SNIPPETS if s.not_run is None]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    directory = tmp_path_factory.mktemp("demo")
    url = f"sqlite:///{directory / 'cdrgate.db'}"
    db = Database(url)
    schema.upgrade(db)
    # make demo's data, thinner: the whole of 2026, extensions from 1000. Thick enough that
    # the day the snippets ask for (2026-03-02, extensions 1000 and 1001) has calls whatever
    # the generator draws (~5 expected; make demo's 200k rows give ~35).
    seed_database(db, SeedPlan(count=30_000, seed=7, start="2026-01-01 00:00:00", days=365))
    set_api_user(db, "api", DEMO_PASSWORD, 1_780_000_000_000)
    db.dispose()
    env = {**os.environ, "CDRGATE_DATABASE": url}
    server = launch((), env, directory / "serve.log", directory)
    # What the demo tells the user to export.
    bin_dir = str(Path(sys.executable).parent)
    env.update(PATH=f"{bin_dir}:{env['PATH']}", CDRGATE_PBX_PASSWORD=DEMO_PASSWORD)
    yield server, env
    server.stop()


def test_the_docs_have_runnable_snippets_and_say_why_the_others_do_not_run():
    assert len(RUNNABLE) >= 5
    for snippet in SNIPPETS:
        before = snippet.not_run or ""
        assert "-->" not in before, snippet.id


@pytest.mark.skipif(shutil.which("curl") is None, reason="the snippets use curl")
@pytest.mark.parametrize("snippet", RUNNABLE, ids=lambda s: s.id)
def test_snippet_runs_as_pasted_against_the_demo(snippet: Snippet, demo, tmp_path):
    server, env = demo
    code = snippet.code.replace(DEMO_ADDRESS, f"127.0.0.1:{server.port}")
    if snippet.lang == "sh":
        # As pasted, but stop at the first failing command so the test sees it.
        command = ["bash", "-e", "-o", "pipefail"]
    else:
        command = [sys.executable, "-"]
    done = subprocess.run(
        command, input=code, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    shown = f"{snippet.id}\n--- stdout\n{done.stdout[-2000:]}\n--- stderr\n{done.stderr[-2000:]}"
    assert done.returncode == 0, shown
    assert "Traceback" not in done.stderr and "error:" not in done.stderr, shown
    assert '"status":"Failed"' not in done.stdout, shown
