"""Off-policy policy-gradient variants for asynchronous training (ROLL ``pg_variant``).

Samples come from mu (the rollout engine, possibly stale); the trainer learns pi_theta and has the
recomputed proximal/old policy pi_old. Every variant returns (per-token loss, loss mask, metrics);
each is written as a core on PGTensors: ``topr`` and ``cispo`` get the TIS tail from
``behavior_corrected``, ``tis`` and ``decoupled_ppo`` weigh mu themselves (``keyword_loss``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from rlkit.algos._pg_common import (
    CoreOut,
    LossOut,
    PGTensors,
    behavior_corrected,
    frac,
    keyword_loss,
    ppo_clip,
    safe_log_ratio,
    seq_level,
    stats,
)
from rlkit.algos.masked_ops import masked_mean
from rlkit.algos.registry import register_policy_loss


@register_policy_loss("tis")
@keyword_loss
def tis_loss(t: PGTensors, behavior_logprobs: Tensor | None, *, tis_cap: float = 2.0) -> LossOut:
    """Truncated IS REINFORCE: -sg(min(pi_theta/mu, C)) * A * log pi_theta, C = 2.0.

    mu = behavior_logprobs, falling back to old_logprobs (ROLL ``tis``; ROLL's own default upper
    bound is 1.0, ours is C = 2.0 as in the TIS fix of Yao et al. 2025).
    """
    lp, mask = t.logprobs, t.mask
    mu = t.old_logprobs if behavior_logprobs is None else behavior_logprobs
    raw = torch.exp(safe_log_ratio(lp.detach(), mu, mask))
    w = raw.clamp(max=tis_cap)
    loss = -w * t.advantages * lp
    metrics = {
        "pg/clip_frac": frac(raw > tis_cap, mask),
        "pg/is_weight_mean": float(masked_mean(w, mask)),
    }
    metrics.update(stats("pg/ratio", raw, mask))
    return loss, mask, metrics


@register_policy_loss("topr")
@behavior_corrected
def topr_loss(
    t: PGTensors,
    *,
    rewards: Tensor | None = None,
    positive_weight: float = 1.0,
    negative_weight: float = 1.0,
) -> CoreOut:
    """TOPR (Le Roux et al. 2025, "Tapered off-policy REINFORCE"), as ROLL ``topr``:
    positive samples (outcome reward R_i > 0): -A log pi_theta (SFT-like, no IS);
    others: -sg(clip(r, 0, 1)) A log pi_theta with r = pi_theta/pi_old.

    ``rewards`` [B] defines the positive set; without it the sign of the advantage is used.
    """
    lp, adv = t.logprobs, t.advantages
    ratio = torch.exp(safe_log_ratio(lp.detach(), t.old_logprobs, t.mask))
    positive = adv > 0 if rewards is None else (rewards > 0).unsqueeze(-1).expand_as(lp)
    w = torch.where(positive, torch.ones_like(ratio), ratio.clamp(0.0, 1.0))
    scale = torch.where(
        positive, torch.full_like(ratio, positive_weight), torch.full_like(ratio, negative_weight)
    )
    metrics = {
        "pg/clip_frac": frac(~positive & (ratio > 1.0), t.mask),
        "pg/positive_frac": frac(positive, t.mask),
    }
    return -scale * w * adv * lp, metrics, ratio


@register_policy_loss("cispo")
@behavior_corrected
def cispo_loss(t: PGTensors, *, clip_eps_low: float = 0.1, clip_eps_high: float = 0.1) -> CoreOut:
    """CISPO (MiniMax-M1, 2025): -sg(clip(r, 1-eps_low, 1+eps_high)) A log pi_theta,
    r = pi_theta/pi_old; defaults 0.1 / 0.1 (ROLL ``cispo_epsilon_low/high``). The IS weight is
    clipped, not the update: every token keeps a gradient."""
    mask = t.mask
    ratio = torch.exp(safe_log_ratio(t.logprobs.detach(), t.old_logprobs, mask))
    w = ratio.clamp(1.0 - clip_eps_low, 1.0 + clip_eps_high)
    metrics = {
        "pg/clip_frac": frac((ratio < 1.0 - clip_eps_low) | (ratio > 1.0 + clip_eps_high), mask),
        "pg/is_weight_mean": float(masked_mean(w, mask)),
        "pg/cispo_weight_mean": float(masked_mean(w, mask)),
    }
    return -w * t.advantages * t.logprobs, metrics, ratio


@register_policy_loss("decoupled_ppo")
@keyword_loss
def decoupled_ppo_loss(
    t: PGTensors,
    behavior_logprobs: Tensor | None,
    *,
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
    old, mask = t.old_logprobs, t.mask
    ratio = torch.exp(safe_log_ratio(t.logprobs, old, mask))
    loss, metrics = ppo_clip(ratio, t.advantages, mask, clip_eps_low, clip_eps_high, dual_clip_c)
    loss_mask = mask
    if behavior_logprobs is not None:
        log_w = seq_level(safe_log_ratio(old, behavior_logprobs, mask), mask, is_level)
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
