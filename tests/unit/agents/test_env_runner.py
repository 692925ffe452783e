"""Environment calls off the controller thread: results, errors, timeouts, hung threads
replaced, async calls cancelled, queue time not counted."""

from __future__ import annotations

import asyncio
import threading
import time

from rlkit.agents.env_runner import EnvRunner


def collect(runner, n, timeout_s=5.0):
    out, deadline = [], time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        time.sleep(0.02)
        out += runner.poll()
    return {d.key: d for d in out}


def test_plain_and_async_results_and_errors():
    async def double(x):
        await asyncio.sleep(0.01)
        return 2 * x

    def boom():
        raise RuntimeError("env crashed")

    runner = EnvRunner(max_workers=2, timeout_s=2.0)
    runner.submit("plain", lambda x: x + 1, 1)
    runner.submit("async", double, 21)
    runner.submit("boom", boom)
    got = collect(runner, 3)
    assert got["plain"].value == 2 and got["async"].value == 42
    assert isinstance(got["boom"].error, RuntimeError) and not got["boom"].timed_out
    assert got["async"].latency_s >= 0.01


def test_a_hung_call_times_out_and_its_thread_is_replaced():
    release = threading.Event()
    runner = EnvRunner(max_workers=1, timeout_s=0.2)
    runner.submit("hung", release.wait)
    runner.submit("next", lambda: "ok")  # queued behind it on the only thread
    got = collect(runner, 2, timeout_s=3.0)
    assert got["hung"].timed_out and got["next"].value == "ok"
    assert runner.written_off == 1
    release.set()


def test_a_hung_coroutine_is_cancelled():
    async def forever():
        await asyncio.sleep(3600)

    runner = EnvRunner(max_workers=1, timeout_s=0.1)
    runner.submit("aio", forever)
    got = collect(runner, 1)
    assert got["aio"].timed_out and runner.written_off == 0


def test_auto_pool_holds_every_trajectory_that_can_be_live():
    from rlkit.agents.multi_turn import auto_env_workers
    from rlkit.config.loader import config_from_dict
    from rlkit.runtime.controller.strategies import StrategyContext

    def ctx(prompts, samples, alpha):
        cfg = config_from_dict(
            {
                "model": {"kind": "tiny"},
                "rollout": {"prompts_per_step": prompts, "samples_per_prompt": samples},
                "async": {"alpha": alpha},
            }
        )
        return StrategyContext(cfg=cfg)

    assert auto_env_workers(None) == 8
    assert auto_env_workers(ctx(4, 8, 2)) == 96  # 4 x 8 x (2 + 1)
    assert auto_env_workers(ctx(1, 2, 0)) == 8 and auto_env_workers(ctx(64, 16, 4)) == 128
