"""Shared pieces of the policy-gradient losses: ratios, PPO clipping, IS weights, metrics."""

from __future__ import annotations

import torch
from torch import Tensor

from rlkit.algos.masked_ops import masked_mean, masked_sum
from rlkit.algos.registry import check_choice

LOG_RATIO_CLAMP = 20.0  # as verl: exp() of a clamped log-ratio never overflows


def safe_log_ratio(num: Tensor, den: Tensor, mask: Tensor) -> Tensor:
    """log(num/den) from log-probs, 0 at masked positions, clamped to [-20, 20]."""
    diff = torch.where(mask, num - den, torch.zeros_like(num))
    return diff.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)


def seq_level(log_ratio: Tensor, mask: Tensor, level: str) -> Tensor:
    """Per-token, sequence-geometric (mean over tokens) or sequence (sum) log-ratio, as [B, T]."""
    check_choice("is_level", level, ("token", "geometric", "sequence"))
    if level == "token":
        return log_ratio
    total = masked_sum(log_ratio, mask, dim=-1)
    if level == "geometric":
        total = total / mask.sum(dim=-1).clamp(min=1).to(log_ratio.dtype)
    return total.unsqueeze(-1).expand_as(log_ratio)


def stats(prefix: str, x: Tensor, mask: Tensor) -> dict[str, float]:
    """``{prefix}_mean/_max/_min`` of ``x`` over valid tokens (0.0 when none are valid)."""
    x = x.detach()
    if not bool(mask.any()):
        return {f"{prefix}_mean": 0.0, f"{prefix}_max": 0.0, f"{prefix}_min": 0.0}
    sel = x[mask]
    return {
        f"{prefix}_mean": float(sel.mean()),
        f"{prefix}_max": float(sel.max()),
        f"{prefix}_min": float(sel.min()),
    }


def frac(cond: Tensor, mask: Tensor) -> float:
    """Fraction of valid tokens where ``cond`` holds."""
    return float(masked_mean(cond.to(torch.float32), mask))


def ppo_clip(
    ratio: Tensor,
    adv: Tensor,
    mask: Tensor,
    eps_low: float,
    eps_high: float,
    dual_clip_c: float | None,
) -> tuple[Tensor, dict[str, float]]:
    """Per-token PPO-clip loss -min(r A, clip(r, 1-eps_low, 1+eps_high) A) (Schulman et al. 2017;
    clip-higher eps_high > eps_low from DAPO), with the dual clip of Ye et al. 2020 for A < 0:
    loss = min(-c A, ppo_loss), c > 1 (verl ``clip_ratio_c``)."""
    loss1 = -adv * ratio
    loss2 = -adv * ratio.clamp(1.0 - eps_low, 1.0 + eps_high)
    loss = torch.maximum(loss1, loss2)
    metrics = {"pg/clip_frac": frac(loss2 > loss1, mask)}
    if dual_clip_c is not None:
        if dual_clip_c <= 1.0:
            raise ValueError(f"dual_clip_c must be > 1, got {dual_clip_c}")
        loss3 = -adv * dual_clip_c
        neg = adv < 0
        metrics["pg/clip_frac_lower"] = frac((loss > loss3) & neg, mask)
        loss = torch.where(neg, torch.minimum(loss, loss3), loss)
    return loss, metrics


def behavior_weight(
    old_logprobs: Tensor,
    behavior_logprobs: Tensor | None,
    mask: Tensor,
    behavior_correction: str,
    tis_cap: float,
) -> tuple[Tensor | None, dict[str, float]]:
    """Detached truncated IS weight w = min(pi_old / mu, tis_cap) for train/rollout mismatch
    (TIS; Yao et al. 2025 "Your efficient RL framework secretly brings you off-policy RL"), or
    ``None`` when no behaviour log-probs are given or ``behavior_correction == "none"``."""
    check_choice("behavior_correction", behavior_correction, ("tis", "none"))
    if behavior_logprobs is None or behavior_correction == "none":
        return None, {}
    log_w = safe_log_ratio(old_logprobs, behavior_logprobs, mask).detach()
    raw = torch.exp(log_w)
    w = raw.clamp(max=tis_cap)
    return w, {
        "pg/is_weight_mean": float(masked_mean(w, mask)),
        "pg/is_clip_frac": frac(raw > tis_cap, mask),
    }


def with_behavior_weight(
    loss: Tensor,
    metrics: dict[str, float],
    ratio: Tensor,
    old_logprobs: Tensor,
    behavior_logprobs: Tensor | None,
    mask: Tensor,
    behavior_correction: str,
    tis_cap: float,
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """The common end of a policy loss: multiply the per-token ``loss`` by the TIS weight of
    :func:`behavior_weight` (when there is one), add its metrics (they win over the loss's own)
    and the ``pg/ratio`` statistics; returns ``(loss, mask, metrics)`` as a loss returns."""
    w, w_metrics = behavior_weight(
        old_logprobs, behavior_logprobs, mask, behavior_correction, tis_cap
    )
    if w is not None:
        loss = loss * w
    metrics.update(w_metrics)
    metrics.update(stats("pg/ratio", ratio, mask))
    return loss, mask, metrics
