"""Critics: the value loss with PPO value clipping, and how a batch is shared among M critics."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rlkit.algos._pg_common import frac
from rlkit.algos.aggregation import aggregate
from rlkit.algos.masked_ops import _bool, masked_mean


def value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    mask: Tensor,
    clip_eps: float | None = 0.2,
    agg: str = "token-mean",
    **agg_kw: Any,
) -> tuple[Tensor, dict[str, float]]:
    """0.5 * agg(max((V - R)^2, (V_clip - R)^2)), V_clip = V_old + clip(V - V_old, -eps, eps)
    (PPO2 / verl ``compute_value_loss``); ``clip_eps=None`` gives the plain 0.5 (V - R)^2.
    ``agg_kw`` (num_tokens, num_seqs, max_len) go to :func:`aggregate`. Returns (loss, metrics).
    """
    m = _bool(mask)
    zero = torch.zeros_like(values)
    returns = torch.where(m, returns, zero)
    loss1 = (torch.where(m, values, zero) - returns) ** 2
    if clip_eps is None:
        per_tok, clip_frac = loss1, 0.0
    else:
        clipped = old_values + (values - old_values).clamp(-clip_eps, clip_eps)
        loss2 = (torch.where(m, clipped, zero) - returns) ** 2
        per_tok, clip_frac = torch.maximum(loss1, loss2), frac(loss2 > loss1, m)
    loss = 0.5 * aggregate(per_tok, m, agg, **agg_kw)
    metrics = {
        "vf/loss": float(loss.detach()),
        "vf/clip_frac": clip_frac,
        "vf/values_mean": float(masked_mean(values.detach(), m)),
    }
    return loss, metrics


def disjoint_shares(group_sizes: list[int], num_critics: int) -> list[list[int]]:
    """Indices (into the flat batch) each critic trains on: sample j of a group -> j mod M.

    The shares are disjoint and cover the batch; each critic gets an even share of every group
    (AsyPPO, arXiv 2510.01656: each mini-critic sees every prompt, never a response another
    critic sees).  The critic split of every estimator that declares none (`critic_split`)."""
    shares: list[list[int]] = [[] for _ in range(num_critics)]
    start = 0
    for size in group_sizes:
        for j in range(size):
            shares[j % num_critics].append(start + j)
        start += size
    return shares
