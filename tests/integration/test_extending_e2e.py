"""docs/extending.md end to end: a user's estimator, policy loss, token hook, rollout strategy
and credit stage, all named by path in one recipe, train on the real stack (vLLM worker,
two-rank DeepSpeed group, Ray); and the entropy bonus changes the trained loss."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rlkit.config.loader import config_from_dict
from tests.integration.conftest import tiny_recipe

pytestmark = pytest.mark.slow

EX = "docs/examples"


def _rows(tmp_path, tiny_model, worker, name, **sections) -> list[dict]:
    from rlkit.runtime.run import train

    recipe = tiny_recipe(tmp_path, name=name, **sections)
    recipe["model"]["path"] = tiny_model
    run_dir = train(config_from_dict(recipe), workers=[worker], log=lambda *_: None)
    return [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def test_user_plugins_by_path_train_end_to_end(tmp_path, tiny_model, vllm_worker):
    stage = f"{EX}/custom_stage.py:BrevityBonus"
    rows = _rows(
        tmp_path,
        tiny_model,
        vllm_worker,
        "plugins",
        algo={
            "advantage": f"{EX}/custom_algo.py:rank_advantage",
            "policy_loss": f"{EX}/custom_algo.py:clipped_reinforce",
            "loss_kw": {"cap": 1.5},
            "token_hook": f"{EX}/custom_hook.py:LateTokenWeights",
            "token_hook_kw": {"slope": 2.0},
            "credit": [stage],
            "credit_kw": {stage: {"bonus": 0.2}},
        },
        rollout={"strategy": f"{EX}/custom_strategy.py:GreedyFirst"},
        trainer={"total_steps": 2, "lr_schedule": "linear", "warmup_steps": 1},
        **{"async": {"alpha": 1}},
    )
    assert len(rows) == 2
    for r in rows:
        assert r["algo/advantage"].endswith("custom_algo.py:rank_advantage")
        assert r["reinforce/ratio_mean"] > 0  # the user's loss ran in the trainer
        assert r["hook/weight_mean"] > 1.0  # the user's hook weighted the tokens
        assert r["brevity/bonus_mean"] >= 0  # the user's stage ran in the controller
        assert math.isfinite(r["loss"]) and r["grad_norm"] > 0
    # warmup 1 step then linear decay over 2 steps: lr rises to its peak, then falls
    assert rows[0]["lr"] == pytest.approx(1e-3) and rows[1]["lr"] < rows[0]["lr"]


def test_entropy_coef_changes_the_trained_loss(tmp_path, tiny_model, vllm_worker):
    common = {"async": {"mode": "sync"}, "trainer": {"total_steps": 1}}
    plain = _rows(tmp_path, tiny_model, vllm_worker, "no_bonus", **common)[0]
    bonus = _rows(tmp_path, tiny_model, vllm_worker, "bonus", algo={"entropy_coef": 0.5}, **common)
    bonus = bonus[0]
    assert bonus["reward/mean"] == plain["reward/mean"]  # same samples (seeded, synchronous)
    # the entropy term is −H aggregated over the step's tokens (token-mean), H > 0
    assert bonus["term/entropy"] == pytest.approx(-bonus["entropy/mean"], rel=0.05)
    assert bonus["loss"] == pytest.approx(plain["loss"] + 0.5 * bonus["term/entropy"], abs=1e-5)
    assert bonus["loss"] < plain["loss"] - 0.1
