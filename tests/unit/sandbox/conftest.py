"""Sandbox fixtures: skip (naming why) where bubblewrap cannot run; find leftover processes."""

from __future__ import annotations

import os
import textwrap
import time
import uuid

import pytest

from rlkit.sandbox import SandboxUnavailable, run_python

SLACK_S = 3.0  # run_python promises to return within timeout_s plus a small constant


@pytest.fixture(scope="session")
def sandbox() -> None:
    """Skip the test, with the sandbox's own reason, on a platform where bwrap cannot run."""
    try:
        run_python("pass")
    except SandboxUnavailable as e:
        pytest.skip(f"sandbox unavailable here: {e}")


@pytest.fixture
def marker() -> str:
    """A unique string to put in a program's code: its processes carry it in their cmdline."""
    return f"rlkit_sbx_{uuid.uuid4().hex}"


@pytest.fixture
def run_hostile(marker):
    """`run_python` on `marker` + code, asserting it returned in time and left no process."""

    def run(code: str, **kw):
        start = time.monotonic()
        result = run_python(f"# {marker}\n" + textwrap.dedent(code), **kw)
        elapsed = time.monotonic() - start
        assert elapsed < kw.get("timeout_s", 5.0) + SLACK_S, elapsed
        assert processes_with(marker) == [], "a process of the run survived it"
        return result

    return run


def processes_with(marker: str) -> list[int]:
    """Host pids whose command line contains `marker` (bwrap and every sandboxed python)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(name))
        except OSError:  # gone meanwhile, or not ours to read
            pass
    return found
