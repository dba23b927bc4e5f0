"""Files cdrgate creates that hold call records, password hashes or keys are owner-only,
whatever the umask of the shell that ran it (the real CLI, umask 000)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from cdrgate.storage.sqlite_head import PRIVATE_FILE_MODE
from tests.servers import CLI


def _cli(*args: str, database: Path) -> None:
    env = {**os.environ, "CDRGATE_DATABASE": f"sqlite:///{database}"}
    done = subprocess.run(
        [*CLI, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        # The loosest umask a shell can have: without an explicit mode a file is 0644 or more.
        preexec_fn=lambda: os.umask(0),
    )
    assert done.returncode == 0, done.stderr


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_store_its_backup_and_a_restored_store_are_owner_only(tmp_path):
    store = tmp_path / "cdrgate.db"
    _cli("db", "upgrade", database=store)
    assert _mode(store) == PRIVATE_FILE_MODE

    backup = tmp_path / "backup.db"
    _cli("backup", "--output", str(backup), database=store)
    assert _mode(backup) == PRIVATE_FILE_MODE

    restored = tmp_path / "restored.db"
    _cli("restore", str(backup), database=restored)
    assert _mode(restored) == PRIVATE_FILE_MODE
