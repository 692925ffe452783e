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


def test_killed_rollout_worker_is_replaced_and_the_run_completes(
    tmp_path, tiny_model, ray_cluster, monkeypatch
):
    import ray

    from rlkit.runtime import cluster
    from rlkit.runtime.run import train

    started: list = []
    real_start = cluster.start_rollout_workers

    def recording_start(*args, **kw):
        started.extend(real_start(*args, **kw))
        return started[-1:] if args[2] == 1 else started

    monkeypatch.setattr(cluster, "start_rollout_workers", recording_start)
    recipe = tiny_recipe(
        tmp_path, name="kill", **{"async": {"alpha": 1}}, trainer={"total_steps": 4}
    )
    recipe["model"]["path"] = tiny_model
    metrics = tmp_path / "runs" / "kill" / "metrics.jsonl"
    killed: dict = {}

    def killer():
        while not started:
            time.sleep(0.2)
        pid = ray.get(started[0].__ray_call__.remote(lambda self: os.getpid()))
        while not (metrics.is_file() and metrics.read_text().strip()):  # after step 1
            time.sleep(0.2)
        os.kill(pid, signal.SIGKILL)
        killed["t"] = time.perf_counter()

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
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
