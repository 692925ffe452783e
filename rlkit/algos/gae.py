"""Generalised Advantage Estimation over response tokens (PPO / AsyPPO critics).

Schulman et al. 2016: delta_t = r_t + gamma V_{t+1} - V_t,  A_t = delta_t + gamma lam A_{t+1},
returns R_t = A_t + V_t. Masked (non-response) tokens are skipped: the recursion runs over valid
tokens only, so V_{t+1} is the value of the next *valid* token and 0 after the last one (as the
masked loop in verl ``compute_gae_advantage_return``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlkit.algos.masked_ops import _bool, masked_whiten, place_at_last_token
from rlkit.algos.registry import register_advantage


def gae_returns(
    rewards: Tensor,
    values: Tensor,
    mask: Tensor | None = None,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[Tensor, Tensor]:
    """Return (advantages [B, T], returns [B, T]), both 0 at masked positions.

    ``rewards`` is token rewards [B, T] or outcome rewards [B] (placed at the last valid token).
    """
    m = torch.ones_like(values, dtype=torch.bool) if mask is None else _bool(mask)
    if rewards.dim() == 1:
        rewards = place_at_last_token(rewards.to(values.dtype), m)
    mf = m.to(values.dtype)
    next_value = torch.zeros_like(values[:, 0])
    last_adv = torch.zeros_like(values[:, 0])
    advs = []
    for t in reversed(range(values.shape[-1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv_t = delta + gamma * lam * last_adv
        next_value = mf[:, t] * values[:, t] + (1 - mf[:, t]) * next_value
        last_adv = mf[:, t] * adv_t + (1 - mf[:, t]) * last_adv
        advs.append(last_adv)
    adv = torch.stack(advs[::-1], dim=-1)
    zero = torch.zeros_like(adv)
    return torch.where(m, adv, zero), torch.where(m, adv + values, zero)


@register_advantage("gae")
def gae_advantage(
    *,
    rewards: Tensor,
    values: Tensor,
    mask: Tensor | None = None,
    gamma: float = 1.0,
    lam: float = 0.95,
    whiten: bool = True,
) -> Tensor:
    """GAE advantages [B, T]; ``whiten=True`` (default, as verl) whitens them over valid tokens.

    Use :func:`gae_returns` for the value targets.
    """
    if values is None:
        raise ValueError("gae needs values [B, T]")
    adv, _ = gae_returns(rewards, values, mask, gamma=gamma, lam=lam)
    if whiten:
        m = torch.ones_like(adv, dtype=torch.bool) if mask is None else _bool(mask)
        adv = masked_whiten(adv, m)
    return adv


gae_advantage.needs_critic = True  # reads critic values (rlkit.algos.declared)
