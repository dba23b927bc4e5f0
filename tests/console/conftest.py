"""A real ``cdrgate serve`` with recordings, and Debian's chromium driven by Playwright.

Outside CI the browser tests skip, loudly, when chromium or Playwright is missing; in CI
(``CI`` set) they fail instead, so a broken install never passes as green.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cdrgate.recdemo import write_demo_recordings
from cdrgate.storage.db import Database
from tests.servers import PASSWORD, PASSWORD_MD5, Server, launch, prepare_database

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
RECORDED_DAY = "2026-05-10"
REPO = Path(__file__).resolve().parents[2]


def _missing_browser() -> str | None:
    if shutil.which(CHROMIUM) is None:
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is missing (pip install -e '.[test]')"
    return None


# Module scope, not session: Playwright's sync API keeps an asyncio loop running in this
# thread while it is open, and later tests that call asyncio.run() would fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _missing_browser()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run in CI: {reason}")
        pytest.skip(f"BROWSER TESTS SKIPPED: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Console:
    server: Server
    recordings: list[str]  # names of the recordings on disk
    database_url: str

    @property
    def url(self) -> str:
        return self.server.base_url + "/ui/"

    def api_token(self) -> str:
        answer = httpx.post(
            self.server.base_url + "/api/v1.1.0/login",
            json={"username": "api", "password": PASSWORD_MD5},
        )
        return str(answer.json()["token"])


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    directory = tmp_path_factory.mktemp("console")
    database_url = prepare_database(directory, seed=2000)
    db = Database(database_url)
    try:
        written = write_demo_recordings(db, directory / "recordings", RECORDED_DAY, count=3)
    finally:
        db.dispose()
    env = {**os.environ, "CDRGATE_DATABASE": database_url, "CDRGATE_ACCESS_LOG": "0"}
    args = ("--recordings", str(directory / "recordings"))
    server = launch(args, env, directory / "serve.log", directory)
    try:
        yield Console(server, [path.name for path in written], database_url)
    finally:
        server.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1440, "height": 900})
    tab = context.new_page()
    yield tab
    context.close()


def sign_in(page: Any, console: Console, path: str = "", username: str = "api") -> None:
    page.goto(console.url + path)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


@pytest.fixture
def screenshot(tmp_path: Path):
    """``screenshot(page, name)``: into docs/img/ with CDRGATE_SCREENSHOTS=1 (to refresh the
    README's pictures), else into the test's temporary folder, so a test run changes no file."""

    def take(page: Any, name: str) -> Path:
        folder = REPO / "docs" / "img" if os.environ.get("CDRGATE_SCREENSHOTS") else tmp_path
        target = folder / f"console-{name}.png"
        page.screenshot(path=str(target), full_page=True)
        return target

    return take
