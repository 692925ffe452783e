"""Group filters: which finished groups go to the buffer (the rest are counted as filtered and
replaced by new groups)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def has_signal(group: Any) -> bool:
    """DAPO dynamic sampling: a group whose rewards are all equal has zero advantage."""
    import torch

    from rlkit.algos import dynamic_sampling_filter

    rewards = torch.tensor([s.reward for s in group.samples.values()], dtype=torch.float64)
    keep = dynamic_sampling_filter(rewards, torch.zeros(len(rewards), dtype=torch.long))
    return bool(keep.keep_mask.all())


def group_filter(cfg: Any) -> Callable[[Any], bool]:
    """`algo.dynamic_sampling` -> DAPO's filter; otherwise every group is kept."""
    return has_signal if cfg.algo.dynamic_sampling else (lambda group: True)
