"""RewardPool: combination, async/batch functions, failures, timeouts, concurrency, metrics."""

from __future__ import annotations

import logging
import os
import time

import pytest

from rlkit.rewards import RewardPool, RewardSpec, reward

MODES = ["process", "thread"]


@pytest.mark.parametrize("mode", MODES)
def test_weighted_dict_async_and_batch_rewards(rf, mode):
    specs = [
        RewardSpec(rf("half"), weight=2.0),
        {"fn": rf("with_parts")},
        {"fn": rf("async_len"), "weight": 0.5},
        rf("batch_match"),
    ]
    with RewardPool(specs, mode=mode, num_workers=2) as pool:
        res = pool.score_batch(["p", "p"], ["abcd", "xy"], [{"answer": "abcd"}, {"answer": "zz"}])
        one = pool.submit("p", "abcd", {"answer": "abcd"}).result(timeout=30)
        metrics = pool.metrics()
    # 2*0.5 + 1*1.0 + 0.5*len + 1*match
    assert [r.score for r in res] == pytest.approx([1 + 1 + 2 + 1, 1 + 1 + 1 + 0])
    assert one.score == pytest.approx(5.0)
    assert res[0].components == {
        "half": 0.5, "with_parts": 1.0, "with_parts/chars": 4.0, "async_len": 4.0,
        "batch_match": 1.0,
    }  # fmt: skip
    assert res[1].token_scores == pytest.approx([0.1, 0.2, 0.3])
    assert not any(r.failed for r in res)
    assert metrics["reward/samples"] == 3 and metrics["reward/errors"] == 0
    assert metrics["reward/mean"] == pytest.approx((5 + 3 + 5) / 3)
    assert metrics["reward/async_len"] == pytest.approx((4 + 2 + 4) / 3)
    # 3 samples x 3 per-sample functions + 2 batch calls (one batch, one submit)
    assert metrics["reward/calls"] == 11


def test_process_workers_run_rewards_in_their_main_thread_without_torch(rf):
    with RewardPool([rf("in_main_thread"), rf("torch_loaded"), rf("worker_pid")]) as pool:
        res = pool.submit("p", "c", {}).result(timeout=30)
    assert res.components["in_main_thread"] == 1.0  # signal.alarm-based timeouts work there
    assert res.components["torch_loaded"] == 0.0
    assert int(res.components["worker_pid"]) != os.getpid()


def test_fields_filtered_and_recipe_kwargs_override(rf):
    specs = [rf("only_answer"), {"fn": rf("knob"), "kwargs": {"scale": 3.0}}]
    with RewardPool(specs, mode="thread") as pool:
        res = pool.submit("p", "7", {"answer": "7", "scale": 9.0, "other": 1}).result(5)
    assert not res.failed, res.error
    assert res.components == {"only_answer": 1.0, "knob": 3.0}


@pytest.mark.parametrize("mode", MODES)
def test_exception_gives_fallback_is_counted_logged_once(rf, mode, caplog):
    caplog.set_level(logging.WARNING, logger="rlkit.rewards")
    with RewardPool([rf("flaky")], fallback=-1.0, mode=mode, num_workers=1) as pool:
        res = pool.score_batch(["p"] * 4, ["ok", "boom", "ok", "boom"])
        metrics = pool.metrics()
        after = pool.submit("p", "ok").result(timeout=30)
    assert [r.score for r in res] == [1.0, -1.0, 1.0, -1.0]
    assert [r.failed for r in res] == [False, True, False, True]
    assert "ZeroDivisionError: boom input" in res[1].error
    assert metrics["reward/errors"] == 2 and metrics["reward/calls"] == 4
    assert metrics["reward/failed"] == 2
    assert after.score == 1.0 and not after.failed
    logged = [r for r in caplog.records if r.name == "rlkit.rewards"]
    assert len(logged) == 1
    assert "'boom'" in logged[0].getMessage() and "ZeroDivisionError" in logged[0].getMessage()


def test_invalid_return_is_an_error_not_a_crash(rf):
    with RewardPool([rf("bad_return"), rf("half")], mode="thread") as pool:
        res = pool.submit("p", "c").result(timeout=5)
        metrics = pool.metrics()
    assert res.failed and "RewardOutputError" in res.error and res.score == 0.5
    assert metrics["reward/errors"] == 1


@pytest.mark.parametrize("completion", ["spin", "sleep"])
def test_hung_process_reward_times_out_is_killed_and_replaced(rf, completion):
    with RewardPool([rf("hang")], timeout_s=1.0, fallback=-2.0, num_workers=1) as pool:
        assert pool.wait_ready(60)
        (old_pid,) = pool.worker_pids()
        start = time.monotonic()
        res = pool.submit("p", completion).result(timeout=30)
        elapsed = time.monotonic() - start
        assert 0.9 <= elapsed < 2.5  # timeout_s + kill, not forever
        assert res.failed and res.score == -2.0 and "timeout" in res.error.lower()
        with pytest.raises(ProcessLookupError):
            os.kill(old_pid, 0)  # killed and reaped, not leaked
        assert pool.submit("p", "fine").result(timeout=30).score == 1.0
        metrics = pool.metrics()
        assert pool.worker_pids() and pool.worker_pids() != [old_pid]
    assert metrics["reward/timeouts"] == 1 and metrics["reward/errors"] == 0
    assert metrics["reward/worker_restarts"] == 1


def test_slow_thread_reward_times_out_and_pool_stays_usable(rf):
    specs = [{"fn": rf("nap"), "kwargs": {"seconds": 2.0}}]
    with RewardPool(specs, timeout_s=0.3, mode="thread", num_workers=1) as pool:
        start = time.monotonic()
        res = pool.submit("p", "c").result(timeout=5)
        assert time.monotonic() - start < 1.0
        assert res.failed and pool.metrics()["reward/timeouts"] == 1
    with RewardPool([rf("half")], timeout_s=0.3, mode="thread", num_workers=1) as pool:
        assert pool.submit("p", "c").result(timeout=5).score == 0.5


@pytest.mark.parametrize("mode", MODES)
def test_sleeping_rewards_run_concurrently_and_submit_does_not_block(rf, mode):
    specs = [{"fn": rf("nap"), "kwargs": {"seconds": 0.5}}]
    with RewardPool(specs, num_workers=4, mode=mode) as pool:
        assert pool.wait_ready(60)
        start = time.monotonic()
        futures = [pool.submit("p", str(i)) for i in range(4)]
        assert time.monotonic() - start < 0.1 and not any(f.done() for f in futures)
        results = [f.result(timeout=30) for f in futures]
        elapsed = time.monotonic() - start
    assert all(r.score == 1.0 for r in results)
    assert elapsed < 1.5  # ~max (0.5 s), not sum (2.0 s)


def test_process_mode_rejects_local_functions_thread_mode_runs_them():
    @reward("rlkit_test_local_reward")
    def local(prompt, completion, **kw):
        return 2.0

    with pytest.raises(ValueError, match="mode='thread'"):
        RewardPool(["rlkit_test_local_reward"])
    with RewardPool(["rlkit_test_local_reward"], mode="thread") as pool:
        assert pool.submit("p", "c").result(timeout=5).score == 2.0


def test_closed_pool_refuses_work(rf):
    pool = RewardPool([rf("half")], mode="thread")
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit("p", "c")


def test_math_accuracy_in_process_and_thread_pools():
    completions = ["\\boxed{12}", "\\boxed{13}", "\\boxed{\\frac{1}{2}}", "\\boxed{0.4}"]
    fields = [{"answer": "12"}, {"answer": "12"}, {"answer": "0.5"}, {"answer": "0.5"}]
    for mode in MODES:  # thread mode: math-verify must run without signal.alarm
        with RewardPool(["rewards.math:accuracy"], mode=mode, timeout_s=30) as pool:
            res = pool.score_batch(["q"] * 4, completions, fields)
        assert [r.score for r in res] == [1.0, 0.0, 1.0, 0.0], [r.error for r in res]
        assert not any(r.failed for r in res)


def test_worker_crash_is_an_error_and_the_worker_is_replaced(rf):
    with RewardPool([rf("crash")], fallback=0.25, num_workers=1) as pool:
        res = pool.submit("p", "crash").result(timeout=30)
        assert res.failed and res.score == 0.25
        assert "worker died" in res.error
        assert pool.submit("p", "fine").result(timeout=30).score == 1.0
        assert pool.metrics()["reward/errors"] == 1


def test_from_config_builds_the_recipe_section(rf):
    cfg = {
        "fns": [{"fn": rf("half"), "weight": 1.0}, {"fn": rf("with_parts"), "weight": 0.1}],
        "timeout_s": 5,
        "fallback": 0.0,
        "num_workers": 2,
        "mode": "thread",
    }
    with RewardPool.from_config(cfg) as pool:
        assert pool.submit("p", "c").result(timeout=5).score == pytest.approx(0.5 + 0.1)
    with pytest.raises(ValueError, match="unknown reward config keys"):
        RewardPool.from_config({"fns": [rf("half")], "timeout": 3})
