"""The environment's own reward, for multi-turn recipes (rlkit.agents, docs/agents.md).

A multi-turn trajectory's reward fields carry `env_reward`, the sum of its environment steps'
rewards; this reward returns it, so `reward.fns: [{fn: env_reward}]` trains on what the
environment says, and other reward functions can be weighted in next to it.
"""

from __future__ import annotations

from typing import Any

from rlkit.rewards.registry import reward


@reward("env_reward")
def env_reward(prompt: str, completion: str, env_reward: float | None = None, **_: Any) -> float:
    """The summed step rewards of the trajectory (a sample with none is an error: the recipe
    pairs this reward with a strategy that runs no environment)."""
    if env_reward is None:
        raise ValueError("env_reward: the sample has no environment reward (use multi_turn)")
    return float(env_reward)
