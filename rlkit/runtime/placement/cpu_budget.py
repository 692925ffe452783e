"""The embedded Ray cluster's CPU budget, checked before anything starts.

Each actor reserves Ray CPUs when it is created (rollout workers `rollout.worker_cpus`, trainer
ranks `trainer.rank_cpus`, separate critic ranks `critic.rank_cpus`, dedicated reward models
their `cpus`).  On the embedded cluster (`ray.address: null`) Ray has exactly `ray.num_cpus`
of them, and an actor whose reservation does not fit is never scheduled: the run would wait
for it forever, printing nothing (seen with `recipes/asyppo_cpu.yaml`'s separate critic on the
default 2.0).  So the sum is checked first and a recipe that cannot fit gets one error naming
the keys.  A joined cluster (`ray.address` set) is not checked: its size is not known here.
"""

from __future__ import annotations

import sys

from rlkit.config import ConfigError, RecipeConfig


def cpu_reservations(cfg: RecipeConfig) -> dict[str, float]:
    """Ray CPUs each part of the run reserves, keyed by the recipe keys that set them."""
    out = {
        "rollout.worker_cpus": cfg.rollout.num_workers * cfg.rollout.worker_cpus,
        "trainer.rank_cpus": cfg.trainer.world_size * cfg.trainer.rank_cpus,
    }
    c = cfg.critic
    if c.enabled and c.placement == "separate":
        out["critic.rank_cpus"] = c.world_size * c.rank_cpus
    models = sum(m.cpus for m in cfg.reward.models if m.placement == "dedicated")
    if models:
        out["reward.models[].cpus"] = models
    return out


def embedded_cpus(cfg: RecipeConfig) -> float:
    """The embedded cluster's CPUs: the running one's when this process started it already
    (tests, sweeps), else `ray.num_cpus`."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return float(ray.cluster_resources().get("CPU", 0.0))
    return cfg.ray.num_cpus


def check_cpu_budget(cfg: RecipeConfig) -> None:
    """ConfigError when the reservations exceed the embedded cluster's CPUs."""
    if cfg.ray.address is not None:
        return
    parts = cpu_reservations(cfg)
    total, have = sum(parts.values()), embedded_cpus(cfg)
    if total <= have + 1e-9:
        return
    listed = " + ".join(f"{v:g} ({k})" for k, v in parts.items())
    raise ConfigError(
        "ray.num_cpus",
        f"the run reserves {total:g} Ray CPUs ({listed}) but the embedded cluster has "
        f"{have:g}: an actor that does not fit would wait forever. Raise "
        "ray.num_cpus, lower those reservations, or set critic.placement: colocated",
    )
