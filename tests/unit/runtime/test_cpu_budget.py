"""The embedded cluster's CPU budget (rlkit.runtime.placement.cpu_budget): a recipe whose actors
cannot all be scheduled fails before start naming the keys, instead of waiting forever."""

from __future__ import annotations

import pytest

from rlkit.config import ConfigError
from rlkit.config.loader import load_recipe
from rlkit.runtime.placement.cpu_budget import check_cpu_budget, cpu_reservations


def test_a_separate_critic_that_does_not_fit_is_named_before_start():
    cfg = load_recipe("recipes/asyppo_cpu.yaml", ["critic.placement=separate"])
    assert cpu_reservations(cfg) == {
        "rollout.worker_cpus": 1.0, "trainer.rank_cpus": 1.0, "critic.rank_cpus": 0.5,
    }  # fmt: skip
    with pytest.raises(ConfigError, match=r"ray.num_cpus: the run reserves 2.5 Ray CPUs") as err:
        check_cpu_budget(cfg)
    assert "critic.rank_cpus" in str(err.value) and "has 2:" in str(err.value)


@pytest.mark.parametrize(
    "over",
    [
        [],  # the shipped recipe: colocated critic (reserves nothing)
        ["critic.placement=separate", "ray.num_cpus=2.5"],
        ["critic.placement=separate", "ray.address=auto"],  # a joined cluster: not checked
    ],
)
def test_recipes_that_fit_pass(over):
    check_cpu_budget(load_recipe("recipes/asyppo_cpu.yaml", over))


def test_dedicated_reward_models_count():
    cfg = load_recipe(
        "recipes/quickstart.yaml",
        ["reward.models=[{name: j, kind: classifier, tiny: {hidden_size: 64}, cpus: 1.5}]"],
    )
    assert cpu_reservations(cfg)["reward.models[].cpus"] == 1.5
    with pytest.raises(ConfigError, match="reward.models"):
        check_cpu_budget(cfg)
