"""DAPO (Yu et al. 2025) batch-shaping helpers: dynamic sampling and soft overlong punishment."""

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


def overlong_reward_penalty(
    lengths: Tensor, max_len: int, cache_len: int, penalty_factor: float = 1.0
) -> Tensor:
    """DAPO soft overlong punishment, added to the reward:
    0 if L <= max_len - cache_len; ((max_len - cache_len) - L) / cache_len if
    max_len - cache_len < L <= max_len; -1 beyond; all times ``penalty_factor``
    (verl ``overlong_buffer.penalty_factor``, default 1.0)."""
    if not 0 < cache_len <= max_len:
        raise ValueError("need 0 < cache_len <= max_len")
    lengths = torch.as_tensor(lengths)
    if not lengths.is_floating_point():
        lengths = lengths.to(torch.get_default_dtype())
    expected = max_len - cache_len
    pen = ((expected - lengths) / cache_len).clamp(-1.0, 0.0)
    return pen * penalty_factor
