"""Shared fixtures: a reward file on disk that worker processes can load by path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

REWARDS_SRC = textwrap.dedent(
    """
    import asyncio
    import os
    import threading
    import time

    from rlkit.rewards import reward


    def half(prompt, completion, **kw):
        return 0.5


    def with_parts(prompt, completion, **kw):
        return {"score": 1.0, "chars": float(len(completion)), "token_scores": [0.1, 0.2, 0.3]}


    async def async_len(prompt, completion, **kw):
        await asyncio.sleep(0.01)
        return float(len(completion))


    @reward(batch=True)
    def batch_match(prompts, completions, answer):
        return [float(c == a) for c, a in zip(completions, answer)]


    def flaky(prompt, completion, **kw):
        if completion == "boom":
            raise ZeroDivisionError("boom input")
        return 1.0


    def hang(prompt, completion, **kw):
        if completion == "spin":
            while True:
                pass
        if completion == "sleep":
            time.sleep(1e9)
        return 1.0


    def nap(prompt, completion, seconds=0.5, **kw):
        time.sleep(float(seconds))
        return 1.0


    def worker_pid(prompt, completion, **kw):
        return float(os.getpid())


    def in_main_thread(prompt, completion, **kw):
        return float(threading.current_thread() is threading.main_thread())


    def only_answer(prompt, completion, answer):
        return float(completion == answer)


    def knob(prompt, completion, scale=1.0):
        return float(scale)


    def bad_return(prompt, completion, **kw):
        return "not a number"


    def crash(prompt, completion, **kw):
        if completion == "crash":
            os._exit(3)
        return 1.0


    def torch_loaded(prompt, completion, **kw):
        import sys
        return float("torch" in sys.modules)
    """
)


@pytest.fixture(scope="session")
def reward_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a .py file holding the test rewards (loaded as ``<path>:<fn>``)."""
    path = tmp_path_factory.mktemp("rewards") / "pool_rewards.py"
    path.write_text(REWARDS_SRC)
    return path


@pytest.fixture(scope="session")
def rf(reward_file: Path):
    """``rf("half")`` -> ``"/tmp/.../pool_rewards.py:half"``."""
    return lambda name: f"{reward_file}:{name}"
