"""A worked example of docs/extending.md: an advantage estimator and a policy loss in a user file,
named by path from a recipe (`algo.advantage: docs/examples/custom_algo.py:rank_advantage`).

Both have the signatures of the registered ones, so the trainer and the credit stage call them
exactly like `grpo` and `ppo`.  Neither takes `**kw`: an estimator gets only the inputs it names,
and a knob in `algo.advantage_kw` / `algo.loss_kw` that they do not take is a recipe error before
the run starts, not silently dropped.
"""

from __future__ import annotations

import torch


def rank_advantage(*, rewards, group_ids):
    """Centred ranks within each group, scaled to [-1, 1]: robust to reward scale and outliers.

    A_i = (rank_i − (G−1)/2) / ((G−1)/2), ranks 0..G−1 by reward (ties share their mean rank).
    """
    out = torch.zeros_like(rewards)
    gids = torch.as_tensor(group_ids)
    for g in gids.unique():
        idx = (gids == g).nonzero().flatten()
        r = rewards[idx]
        ranks = (r[:, None] > r[None, :]).sum(1) + 0.5 * ((r[:, None] == r[None, :]).sum(1) - 1)
        half = (len(idx) - 1) / 2
        out[idx] = (ranks - half) / half if half > 0 else 0.0
    return out


def clipped_reinforce(*, logprobs, old_logprobs, advantages, mask, behavior_logprobs=None, cap=1.5):
    """REINFORCE with a truncated importance weight: −sg(min(π_θ/π_old, cap))·A·log π_θ."""
    ratio = torch.exp((logprobs - old_logprobs).detach()).clamp(max=cap)
    loss = -ratio * advantages * logprobs
    return loss, mask, {"reinforce/ratio_mean": float(ratio[mask].mean())}
