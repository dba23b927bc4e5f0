"""Scratch folders: removed when their block ends, and swept once their process is gone."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

from cdrgate.scratch import scratch_folder, sweep_abandoned


@pytest.fixture
def tmpdir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    return tmp_path


def test_a_folder_is_removed_when_its_block_ends_even_by_an_error(tmpdir_env):
    with pytest.raises(RuntimeError), scratch_folder("seed") as folder:
        (folder / "chunk0.db").write_bytes(b"x" * 100)
        assert folder.parent == tmpdir_env
        raise RuntimeError("the load failed")
    assert list(tmpdir_env.iterdir()) == []


def test_only_the_folders_of_processes_that_are_gone_are_swept(tmpdir_env):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    abandoned = tmpdir_env / f"cdrgate-scratch-seed-{gone.stdout.strip()}-abc"
    live = tmpdir_env / f"cdrgate-scratch-import-{os.getpid()}-def"
    unrelated = tmpdir_env / "cdrgate-seed-old"
    for folder in (abandoned, live, unrelated):
        folder.mkdir()
        (folder / "chunk0.db").write_bytes(b"x")
    assert sweep_abandoned() == [abandoned]
    assert sorted(p.name for p in tmpdir_env.iterdir()) == sorted([live.name, unrelated.name])
