"""DAPO (Yu et al. 2025) dynamic sampling: drop groups that carry no gradient.

(DAPO's soft overlong punishment is a reward: rewards/length.py.)"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from rlkit.algos.advantages import GroupIds, group_index


class DynamicSamplingResult(NamedTuple):
    """``keep_mask``: bool [B], True for samples of groups that are kept;
    ``num_dropped``: number of *groups* dropped (all rewards equal)."""

    keep_mask: Tensor
    num_dropped: int


def dynamic_sampling_filter(
    rewards: Tensor, group_ids: GroupIds, atol: float = 0.0
) -> DynamicSamplingResult:
    """Drop groups whose rewards are all equal (max - min <= atol): their GRPO advantage is 0 and
    they carry no gradient. The caller keeps sampling until the batch is full."""
    idx = group_index(group_ids, rewards.shape[0], rewards.device)
    g = int(idx.max()) + 1 if idx.numel() else 0
    r = rewards.detach().to(torch.float64)
    hi = torch.full((g,), -torch.inf, dtype=r.dtype, device=r.device).scatter_reduce(
        0, idx, r, reduce="amax"
    )
    lo = torch.full((g,), torch.inf, dtype=r.dtype, device=r.device).scatter_reduce(
        0, idx, r, reduce="amin"
    )
    keep_group = (hi - lo) > atol
    return DynamicSamplingResult(keep_group[idx], int((~keep_group).sum()))
