"""The embedded cluster's CPU budget (rlkit.runtime.placement.cpu_budget): a recipe whose actors
cannot all be scheduled fails before start naming the keys, instead of waiting forever."""

from __future__ import annotations

import pytest

from rlkit.config import ConfigError
from rlkit.config.loader import load_recipe
from rlkit.runtime.placement import cpu_budget
from rlkit.runtime.placement.cpu_budget import check_cpu_budget, cpu_reservations, embedded_cpus


@pytest.fixture(autouse=True)
def no_running_cluster(monkeypatch):
    """As in a fresh `rlkit train`: no Ray cluster in this process yet (the suite's integration
    tests may have started one with more CPUs)."""
    monkeypatch.setattr(cpu_budget, "embedded_cpus", lambda cfg: cfg.ray.num_cpus)


class FakeRay:
    def __init__(self, up: bool):
        self.up = up

    def is_initialized(self):
        return self.up

    def cluster_resources(self):
        return {"CPU": 4.0}


def test_the_running_cluster_counts_when_this_process_started_one(monkeypatch):
    import sys

    cfg = load_recipe("recipes/quickstart.yaml")
    monkeypatch.setitem(sys.modules, "ray", FakeRay(False))
    assert embedded_cpus(cfg) == 2.0  # ray.num_cpus: the cluster `train` will start
    monkeypatch.setitem(sys.modules, "ray", FakeRay(True))
    assert embedded_cpus(cfg) == 4.0  # the one already running (tests, sweeps)


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
