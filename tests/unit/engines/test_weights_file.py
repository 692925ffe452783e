"""The weights file a vLLM engine's workers read new weights from (rlkit.engines.vllm_ext): it holds
the bytes while the engine loads, lives in /dev/shm when there is room, else in the temporary
directory, and is gone afterwards, also when the load fails."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import namedtuple

import pytest

from rlkit.engines.vllm_ext import weights_file


def test_holds_the_bytes_then_is_removed():
    with weights_file(b"abc" * 10) as path:
        assert open(path, "rb").read() == b"abc" * 10
        if os.path.isdir("/dev/shm"):
            assert path.startswith("/dev/shm/")
    assert not os.path.exists(path)


def test_removed_when_the_load_fails():
    with pytest.raises(RuntimeError), weights_file(b"x") as path:
        raise RuntimeError("the engine refused the weights")
    assert not os.path.exists(path)


def test_temporary_directory_when_shared_memory_is_short(monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(10, 9, 1))
    with weights_file(b"abcd") as path:
        assert os.path.dirname(path) == tempfile.gettempdir()


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    return int(proc.stdout)


def test_files_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    from rlkit.engines.model_io import remove_stale_weights_files

    dead = tmp_path / f"rlkit-weights-{_dead_pid()}-abc.safetensors"
    live = tmp_path / f"rlkit-weights-{os.getpid()}-def.safetensors"
    other = tmp_path / "model.safetensors"
    for p in (dead, live, other):
        p.write_bytes(b"x")
    assert remove_stale_weights_files(tmp_path) == 1
    assert not dead.exists() and live.exists() and other.exists()


def test_a_rank_writing_weights_sweeps_what_killed_ranks_left(monkeypatch, tmp_path):
    import torch

    from rlkit.engines import model_io

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(10, 9, 1))  # -> tmp_path
    left = tmp_path / f"rlkit-weights-{_dead_pid()}-abc.safetensors"
    left.write_bytes(b"x")
    path = model_io.write_weights_file({"w": torch.ones(2)})
    try:
        assert os.path.dirname(path) == str(tmp_path) and not left.exists()
        assert model_io.load_weights_state(path)["w"].tolist() == [1.0, 1.0]
    finally:
        os.unlink(path)
