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
