"""Rewards as plain Python functions, run safely and concurrently (docs/rewards.md).

A reward is ``fn(prompt, completion, **fields) -> float | dict`` (fields: the dataset row's
columns), or a batch function marked ``@reward(batch=True)``; either may be ``async def``.
Recipes name them ``"module:function"``, ``"path/file.py:function"`` or by a short name
registered with ``@reward("name")``. :class:`RewardPool` runs them with per-call timeouts in
worker processes (or threads) and combines them with weights into :class:`RewardResult`.
This package imports no torch.
"""

from rlkit.rewards.loader import RewardLoadError, load_reward, resolve_reward
from rlkit.rewards.pool import RewardPool
from rlkit.rewards.registry import reward
from rlkit.rewards.types import RewardOutputError, RewardResult, RewardSpec, normalize_output

__all__ = [
    "RewardLoadError",
    "RewardOutputError",
    "RewardPool",
    "RewardResult",
    "RewardSpec",
    "load_reward",
    "normalize_output",
    "resolve_reward",
    "reward",
]
