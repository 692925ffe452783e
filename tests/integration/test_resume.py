"""Runs that survive a trainer failure (issue 12, points 2-3): a trainer rank killed mid-run stops
the run with one line naming what died and the resume command; `--resume` then completes it,
and at alpha = 0 the resumed run's metrics equal the uninterrupted run's (rewards exactly,
losses to 1e-5); a finished run is extended with a larger `trainer.total_steps`.  With
`trainer.max_restarts: 1` (issue 23, item 4) the same kill restarts the trainer group in
process and the run completes, equal to the uninterrupted one."""

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

STEPS = 5


def recipe(tmp_path, tiny_model, name: str, **over) -> dict:
    r = tiny_recipe(
        tmp_path,
        name=name,
        algo={"kl_beta": 0.01},  # the reference must stay the initial model after a resume
        trainer={"total_steps": STEPS, "save_every": 2, **over},
        **{"async": {"mode": "async", "alpha": 0}},
    )
    r["model"]["path"] = tiny_model
    return r


def rows(run_dir) -> list[dict]:
    return [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def kill_a_trainer_rank_after(monkeypatch, metrics: Path, steps: int) -> dict:
    """SIGKILL trainer rank 1 once `metrics` holds `steps` records and a checkpoint is on disk
    (saves are written in the background: a step's record can precede its checkpoint)."""
    import ray

    from rlkit.runtime.actors import trainer_group
    from rlkit.runtime.checkpoints import latest_resumable

    groups: list = []
    real_init = trainer_group.TrainerGroup.__init__

    def recording_init(self, *a, **kw):
        real_init(self, *a, **kw)
        groups.append(self)

    monkeypatch.setattr(trainer_group.TrainerGroup, "__init__", recording_init)
    killed: dict = {}

    def killer():
        while not groups:
            time.sleep(0.1)
        pid = ray.get(groups[0].ranks[1].__ray_call__.remote(lambda self: os.getpid()))
        while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= steps):
            time.sleep(0.05)
        while latest_resumable(metrics.parent / "checkpoints") is None:
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        killed["pid"] = pid

    threading.Thread(target=killer, daemon=True).start()
    return killed


@pytest.fixture(scope="module")
def whole(tmp_path_factory, tiny_model, ray_cluster, vllm_worker) -> list[dict]:
    """The uninterrupted run's records (the runs below must repeat them)."""
    from rlkit.runtime.run import train

    tmp = tmp_path_factory.mktemp("whole")
    cfg = config_from_dict(recipe(tmp, tiny_model, "whole"))
    return rows(train(cfg, log=lambda *_: None, workers=[vllm_worker]))


def same_run(whole: list[dict], got: list[dict]) -> None:
    """Every step's reward and length equal, loss to 1e-5, each step logged once."""
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))
    for a, b in zip(whole, got):
        assert a["reward/mean"] == b["reward/mean"], a["step"]
        assert a["response_length/mean"] == b["response_length/mean"], a["step"]
        assert abs(a["loss"] - b["loss"]) < 1e-5, (a["step"], a["loss"], b["loss"])
        assert abs(a["lr"] - b["lr"]) < 1e-12
    assert got[-1]["rollout/accounting_ok"] == 1.0
    assert got[-1]["rollout/admitted_groups"] == whole[-1]["rollout/admitted_groups"]


def test_killed_trainer_rank_stops_cleanly_and_resume_repeats_the_run_exactly(
    tmp_path, tiny_model, ray_cluster, vllm_worker, monkeypatch, whole
):
    from rlkit.runtime.run import RankGroupLost, train

    quiet = {"log": lambda *_: None, "workers": [vllm_worker]}

    cut = recipe(tmp_path, tiny_model, "cut")
    run_dir = tmp_path / "runs" / "cut"
    killed = kill_a_trainer_rank_after(monkeypatch, run_dir / "metrics.jsonl", 2)
    with pytest.raises(RankGroupLost) as err:
        train(config_from_dict(cut), **quiet)
    monkeypatch.undo()
    msg = str(err.value)
    assert "pid" in killed and "\n" not in msg
    assert msg.startswith("a trainer rank died at step ")
    assert f"--resume {run_dir}" in msg and f"rlkit train {run_dir}/config.yaml" in msg
    stopped_at = len(rows(run_dir))
    assert 2 <= stopped_at < STEPS

    train(config_from_dict(cut), resume=str(run_dir), **quiet)
    same_run(whole, rows(run_dir))

    # a finished run is extended: one more step from its final checkpoint
    longer = recipe(tmp_path, tiny_model, "cut", total_steps=STEPS + 1)
    train(config_from_dict(longer), resume=str(run_dir), **quiet)
    assert [r["step"] for r in rows(run_dir)] == list(range(1, STEPS + 2))
    assert (run_dir / "checkpoints" / f"step_{STEPS + 1}" / "trainer_state").is_dir()


def test_a_killed_trainer_rank_is_restarted_in_process_with_max_restarts(
    tmp_path, tiny_model, ray_cluster, vllm_worker, monkeypatch, whole
):
    """trainer.max_restarts: 1 (issue 23, item 4): the same kill ends in a completed run, with
    a new trainer group going on from the last checkpoint, the rollout worker kept; at alpha = 0
    the run is the uninterrupted one."""
    from rlkit.runtime.run import train

    lines: list[str] = []
    cfg = recipe(tmp_path, tiny_model, "restarted", max_restarts=1)
    run_dir = tmp_path / "runs" / "restarted"
    killed = kill_a_trainer_rank_after(monkeypatch, run_dir / "metrics.jsonl", 2)
    train(config_from_dict(cfg), log=lines.append, workers=[vllm_worker])
    assert "pid" in killed
    said = [x for x in lines if "restart 1 of at most 1" in x]
    assert len(said) == 1 and said[0].startswith("[rlkit] a trainer rank died at step ")
    got = rows(run_dir)
    same_run(whole, got)
    assert got[-1]["trainer/restarts"] == 1.0
    assert (run_dir / "checkpoints" / f"step_{STEPS}" / "trainer_state").is_dir()
