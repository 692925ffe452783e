"""A rollout worker killed mid-run (SIGKILL, as the OOM killer does): the controller replaces it
with the current weights, re-issues its groups, and the run completes with the counts adding up.

The run starts its own worker (the session's shared `vllm_worker` is never killed)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from rlkit.config.loader import config_from_dict
from tests.integration.conftest import tiny_recipe

pytestmark = pytest.mark.slow


def recorded_workers(monkeypatch) -> list:
    """The rollout workers the run starts (its own and replacements), in start order."""
    from rlkit.runtime.placement import cluster

    started: list = []
    real_start = cluster.start_rollout_workers

    def recording_start(*args, **kw):
        new = real_start(*args, **kw)
        started.extend(new)
        return new

    monkeypatch.setattr(cluster, "start_rollout_workers", recording_start)
    return started


def kill_first_worker(started: list, when=lambda: True) -> tuple[threading.Thread, dict]:
    """SIGKILL the run's first worker process once it is up and `when()` holds."""
    import ray

    killed: dict = {}

    def killer():
        while not started:
            time.sleep(0.2)
        pid = ray.get(started[0].__ray_call__.remote(lambda self: os.getpid()))
        while not when():
            time.sleep(0.2)
        os.kill(pid, signal.SIGKILL)
        killed["t"] = time.perf_counter()

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    return thread, killed


def test_killed_rollout_worker_is_replaced_and_the_run_completes(
    tmp_path, tiny_model, ray_cluster, monkeypatch
):
    from rlkit.runtime.run import train

    started = recorded_workers(monkeypatch)
    recipe = tiny_recipe(
        tmp_path, name="kill", **{"async": {"alpha": 1}}, trainer={"total_steps": 4}
    )
    recipe["model"]["path"] = tiny_model
    metrics = tmp_path / "runs" / "kill" / "metrics.jsonl"
    after_step_1 = lambda: metrics.is_file() and metrics.read_text().strip()  # noqa: E731
    thread, killed = kill_first_worker(started, after_step_1)
    run_dir = train(config_from_dict(recipe), log=lambda *_: None)
    t_end = time.perf_counter()
    thread.join(timeout=5)
    rows = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    assert "t" in killed, "the worker was never killed"
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert rows[0]["rollout/worker_restarts"] == 0
    assert rows[-1]["rollout/worker_restarts"] == 1 and len(started) == 2
    assert rows[-1]["rollout/reissued_groups"] >= 1
    assert all(r["rollout/accounting_ok"] == 1.0 for r in rows)
    last = rows[-1]
    ended = sum(last[f"rollout/{k}_groups"] for k in ("aborted", "dropped", "filtered", "failed"))
    assert 16 + ended <= last["rollout/admitted_groups"]  # 4 steps x 4 groups were trained
    assert all(r["staleness/max"] <= 1 for r in rows)
    print(
        f"\n[worker-failure] kill -> end of run {t_end - killed['t']:.1f} s; "
        f"step times {[round(r['time/step_s'], 1) for r in rows]}"
    )


def test_past_the_restart_bound_the_run_stops_naming_the_dead_worker(
    tmp_path, tiny_model, ray_cluster, monkeypatch
):
    from rlkit.runtime.controller.worker_restarts import RolloutWorkerLost
    from rlkit.runtime.run import train

    started = recorded_workers(monkeypatch)
    recipe = tiny_recipe(
        tmp_path, name="bound", rollout={"max_worker_restarts": 0}, trainer={"total_steps": 8}
    )
    recipe["model"]["path"] = tiny_model
    metrics = tmp_path / "runs" / "bound" / "metrics.jsonl"
    after_step_1 = lambda: metrics.is_file() and metrics.read_text().strip()  # noqa: E731
    thread, _ = kill_first_worker(started, after_step_1)  # the engine is serving by then
    with pytest.raises(RolloutWorkerLost) as err:
        train(config_from_dict(recipe), log=lambda *_: None)
    thread.join(timeout=5)
    msg = str(err.value)
    assert msg.startswith("rollout worker 0 died (ActorDiedError") and "\n" not in msg
    assert "rollout.max_worker_restarts = 0" in msg and len(started) == 1
