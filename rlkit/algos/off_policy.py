"""Off-policy policy-gradient variants for asynchronous training (ROLL ``pg_variant``).

Samples come from mu (the rollout engine, possibly stale); the trainer learns pi_theta and has the
recomputed proximal/old policy pi_old. Every variant returns (per-token loss, loss mask, metrics).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from rlkit.algos._pg_common import (
    frac,
    ppo_clip,
    safe_log_ratio,
    seq_level,
    stats,
    with_behavior_weight,
)
from rlkit.algos.masked_ops import masked_mean
from rlkit.algos.registry import register_policy_loss

LossOut = tuple[Tensor, Tensor, dict[str, float]]


@register_policy_loss("tis")
def tis_loss(
    *,
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    behavior_logprobs: Tensor | None = None,
    tis_cap: float = 2.0,
) -> LossOut:
    """Truncated IS REINFORCE: -sg(min(pi_theta/mu, C)) * A * log pi_theta, C = 2.0.

    mu = behavior_logprobs, falling back to old_logprobs (ROLL ``tis``; ROLL's own default upper
    bound is 1.0, ours is C = 2.0 as in the TIS fix of Yao et al. 2025).
    """
    mu = old_logprobs if behavior_logprobs is None else behavior_logprobs
    raw = torch.exp(safe_log_ratio(logprobs.detach(), mu, mask))
    w = raw.clamp(max=tis_cap)
    loss = -w * advantages * logprobs
    metrics = {
        "pg/clip_frac": frac(raw > tis_cap, mask),
        "pg/is_weight_mean": float(masked_mean(w, mask)),
    }
    metrics.update(stats("pg/ratio", raw, mask))
    return loss, mask, metrics


@register_policy_loss("topr")
def topr_loss(
    *,
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    behavior_logprobs: Tensor | None = None,
    rewards: Tensor | None = None,
    positive_weight: float = 1.0,
    negative_weight: float = 1.0,
    behavior_correction: str = "tis",
    tis_cap: float = 2.0,
) -> LossOut:
    """TOPR (Le Roux et al. 2025, "Tapered off-policy REINFORCE"), as ROLL ``topr``:
    positive samples (outcome reward R_i > 0): -A log pi_theta (SFT-like, no IS);
    others: -sg(clip(r, 0, 1)) A log pi_theta with r = pi_theta/pi_old.

    ``rewards`` [B] defines the positive set; without it the sign of the advantage is used.
    """
    ratio = torch.exp(safe_log_ratio(logprobs.detach(), old_logprobs, mask))
    if rewards is not None:
        positive = (rewards > 0).unsqueeze(-1).expand_as(logprobs)
    else:
        positive = advantages > 0
    w = torch.where(positive, torch.ones_like(ratio), ratio.clamp(0.0, 1.0))
    scale = torch.where(
        positive, torch.full_like(ratio, positive_weight), torch.full_like(ratio, negative_weight)
    )
    loss = -scale * w * advantages * logprobs
    metrics = {
        "pg/clip_frac": frac(~positive & (ratio > 1.0), mask),
        "pg/positive_frac": frac(positive, mask),
    }
    return with_behavior_weight(
        loss, metrics, ratio, old_logprobs, behavior_logprobs, mask, behavior_correction, tis_cap
    )


@register_policy_loss("cispo")
def cispo_loss(
    *,
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    behavior_logprobs: Tensor | None = None,
    clip_eps_low: float = 0.1,
    clip_eps_high: float = 0.1,
    behavior_correction: str = "tis",
    tis_cap: float = 2.0,
) -> LossOut:
    """CISPO (MiniMax-M1, 2025): -sg(clip(r, 1-eps_low, 1+eps_high)) A log pi_theta,
    r = pi_theta/pi_old; defaults 0.1 / 0.1 (ROLL ``cispo_epsilon_low/high``). The IS weight is
    clipped, not the update: every token keeps a gradient."""
    ratio = torch.exp(safe_log_ratio(logprobs.detach(), old_logprobs, mask))
    w = ratio.clamp(1.0 - clip_eps_low, 1.0 + clip_eps_high)
    loss = -w * advantages * logprobs
    metrics = {
        "pg/clip_frac": frac((ratio < 1.0 - clip_eps_low) | (ratio > 1.0 + clip_eps_high), mask),
        "pg/is_weight_mean": float(masked_mean(w, mask)),
        "pg/cispo_weight_mean": float(masked_mean(w, mask)),
    }
    return with_behavior_weight(
        loss, metrics, ratio, old_logprobs, behavior_logprobs, mask, behavior_correction, tis_cap
    )


@register_policy_loss("decoupled_ppo")
def decoupled_ppo_loss(
    *,
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    behavior_logprobs: Tensor | None = None,
    clip_eps_low: float = 0.2,
    clip_eps_high: float = 0.2,
    dual_clip_c: float | None = None,
    is_cap: float = 1.2,
    is_level: str = "token",
    ratio_mask: tuple[float, float] | None = None,
) -> LossOut:
    """Decoupled PPO (Hilton et al. 2022; AReaL; ROLL Flash): PPO-clip against the proximal
    policy pi_prox = old_logprobs, times the detached w = min(pi_prox/mu, U), U = ``is_cap`` 1.2.

    ``is_level``: "token" (per token), "geometric" (exp of the mean token log-ratio of the
    sequence) or "sequence" (exp of the sum). ``ratio_mask=(0.8, 1.2)`` drops tokens whose
    pi_prox/mu (at that level) is outside the range from the loss mask (so the local token count
    shrinks; with global normalisers the dropped tokens still count in the denominator).
    Without behavior_logprobs, w = 1 (plain PPO).
    """
    log_r = safe_log_ratio(logprobs, old_logprobs, mask)
    ratio = torch.exp(log_r)
    loss, metrics = ppo_clip(ratio, advantages, mask, clip_eps_low, clip_eps_high, dual_clip_c)
    loss_mask = mask
    if behavior_logprobs is not None:
        log_w = seq_level(safe_log_ratio(old_logprobs, behavior_logprobs, mask), mask, is_level)
        log_w = log_w.detach()
        w = torch.exp(log_w.clamp(max=math.log(is_cap)))
        loss = loss * w
        if ratio_mask is not None:
            lo, hi = ratio_mask
            raw = torch.exp(log_w)
            loss_mask = mask & (raw >= lo) & (raw <= hi)
        metrics["pg/is_weight_mean"] = float(masked_mean(w, mask))
        metrics["pg/is_clip_frac"] = frac(log_w > math.log(is_cap), mask)
    else:
        metrics["pg/is_weight_mean"] = 1.0
    metrics["pg/masked_frac"] = frac(mask & ~loss_mask, mask)
    metrics.update(stats("pg/ratio", ratio, mask))
    return loss, loss_mask, metrics
