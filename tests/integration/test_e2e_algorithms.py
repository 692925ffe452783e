"""A few real training steps per estimator / loss family, selected by name from the recipe:
rewards finite, losses finite, the trainer logs which algorithms ran."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rlkit.config.loader import config_from_dict
from tests.integration.conftest import tiny_recipe

pytestmark = pytest.mark.slow

FAMILIES = [
    {"advantage": "rloo", "policy_loss": "cispo", "kl_beta": 0.05, "kl_in_reward": True},
    {"advantage": "dr_grpo", "policy_loss": "gspo", "agg": "seq-mean-token-sum-norm"},
    {
        "advantage": "reinforce_pp",
        "policy_loss": "decoupled_ppo",
        "kl_beta": 0.05,
        "entropy_coef": 0.01,
        "dynamic_sampling": True,
    },
    {"advantage": "gae", "policy_loss": "ppo"},  # PPO with a critic group of 2 value models
]


@pytest.mark.parametrize("algo", FAMILIES, ids=[f["advantage"] for f in FAMILIES])
def test_family_runs(tmp_path, tiny_model, vllm_worker, algo):
    from rlkit.runtime.run import train

    with_critic = algo["advantage"] == "gae"
    epochs = algo["advantage"] == "rloo"
    critic = {"enabled": with_critic, "num_critics": 2, "lr": 1e-3, "micro_batch_size": 4}
    recipe = tiny_recipe(
        tmp_path,
        name=algo["advantage"],
        algo=algo,
        critic=critic,
        # rloo/cispo also runs PPO-style: 2 epochs x 2 mini-batches (π_old recomputed first)
        trainer={"total_steps": 2, **({"mini_batches": 2, "ppo_epochs": 2} if epochs else {})},
        **{"async": {"alpha": 1}},
    )
    recipe["model"]["path"] = tiny_model
    run_dir = train(config_from_dict(recipe), workers=[vllm_worker], log=lambda *_: None)
    rows = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for r in rows:
        assert r["algo/advantage"] == algo["advantage"]
        assert r["algo/policy_loss"] == algo["policy_loss"]
        assert math.isfinite(r["loss"]) and math.isfinite(r["reward/mean"])
        assert math.isfinite(r["grad_norm"]) and r["grad_norm"] > 0
        if epochs:  # later updates see a policy that moved: ratios leave 1
            assert r["pg/ratio_max"] > 1 + 1e-6 or r["pg/ratio_min"] < 1 - 1e-6
        if algo.get("kl_in_reward"):  # KL shapes the reward, no KL loss term
            assert r["kl/reward_penalty"] >= 0 and "kl/mean" not in r
        elif algo.get("kl_beta"):
            assert math.isfinite(r["kl/mean"]) and r["kl/mean"] >= -1e-6
        if algo.get("dynamic_sampling"):
            assert "rollout/filtered_groups" in r and r["reward/std"] > 0
        if with_critic:  # each critic trained on its own half of every group
            for m in (0, 1):
                assert math.isfinite(r[f"critic{m}/loss"]) and r[f"critic{m}/loss"] >= 0
            assert math.isfinite(r["critic/value_mean"])
    if with_critic:  # the critics learn: the value head moves off its zero init
        assert rows[-1]["critic/value_mean"] != 0.0
