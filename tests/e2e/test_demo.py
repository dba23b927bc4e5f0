"""``make demo`` (scripts/demo.sh) run for real in a scratch DEMO_ROOT with a small database:
it checks the port before touching anything, keeps its password across runs unless asked to
rotate, and appends to the server log instead of truncating it."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdrgate.ingest.seeding import seed_database
from cdrgate.seed import SeedPlan
from cdrgate.services.auth import set_api_user
from cdrgate.storage import schema
from cdrgate.storage.db import Database

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.sh"
READY = "== serving until Ctrl-C"

pytestmark = pytest.mark.skipif(
    subprocess.run(["which", "curl"], capture_output=True).returncode != 0, reason="needs curl"
)


def run_demo(root: Path, port: int, **env: str) -> str:
    """Run the demo until it serves, stop it as Ctrl-C would, and return what it printed."""
    process = subprocess.Popen(
        ["bash", str(DEMO)],
        env={**os.environ, "DEMO_ROOT": str(root), "DEMO_PORT": str(port), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    printed: list[str] = []
    try:
        for line in process.stdout:
            printed.append(line)
            if line.startswith(READY):
                break
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)
        process.stdout.close()
    return "".join(printed)


def printed_password(output: str) -> str:
    line = next(line for line in output.splitlines() if "API user: api" in line)
    return line.split("password:")[1].split()[0]


def free_port() -> int:
    """A loopback port free right now. The demo serves on the port it is told (DEMO_PORT), so
    this test keeps the pick-then-bind window the launcher no longer has; a clash fails it
    with the demo's own "port N is in use" line."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def demo_root(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "demo").mkdir()
    # What the demo's own seeding makes, smaller: calls of extensions 1000.. around 2 March.
    db = Database(f"sqlite:///{tmp_path / 'demo' / 'cdrgate.db'}")
    schema.upgrade(db)
    seed_database(
        db, SeedPlan(count=400, seed=7, start="2026-03-01 00:00:00", days=3, extensions=4)
    )
    set_api_user(db, "api", "an earlier demo password", 1_780_000_000_000)
    db.dispose()
    yield tmp_path


def test_a_held_port_is_reported_and_nothing_is_touched(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run(
            ["bash", str(DEMO)],
            env={**os.environ, "DEMO_ROOT": str(tmp_path), "DEMO_PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1
    assert f"port {port} is in use: set DEMO_PORT" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert list(tmp_path.iterdir()) == []


def test_the_password_stays_across_runs_until_rotated_and_the_log_grows(demo_root):
    port = free_port()
    first = run_demo(demo_root, port)
    assert "CDRs in demo/download.csv" in first, first
    password = printed_password(first)
    stored = demo_root / "demo" / "api-password"
    assert stored.read_text().strip() == password
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert "CDRGATE_DATABASE=" in first and "cdrgate stats" in first

    again = run_demo(demo_root, port)
    assert printed_password(again) == password
    assert "CDRs in demo/download.csv" in again, again

    rotated = run_demo(demo_root, port, ROTATE="1")
    assert printed_password(rotated) != password
    assert stored.read_text().strip() == printed_password(rotated)

    log = (demo_root / "demo" / "serve.log").read_bytes()
    assert log.count(b"== demo started") == 3
    assert b"\0" not in log
    assert not (demo_root / "demo" / "serve.pid").exists()
