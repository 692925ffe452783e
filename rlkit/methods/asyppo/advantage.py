"""AsyPPO (arXiv 2510.01656, "Asymmetric PPO: mini-critics boost LLM reasoning"): pure parts.

M small critics, each trained on a disjoint share of every group's responses (the estimator's
declared `critic_split`: rlkit.algos.critic.disjoint_shares), give per-token values V_m(s_t).
Their mean V̄ feeds GAE (γ = 1, λ = 0.95); their disagreement σ_t = std_m V_m(s_t) steers the update
(docs/algorithms.md §5):

    loss = −(1/|o|) Σ_t [ I^A_t · min(r_t Â_t, clip(r_t) Â_t) + β · I^H_t · H(π_θ(·|s_t)) ]
    I^A_t = 0 where σ_t is in the lowest `adv_low_frac` of the valid tokens (critics agree),
    I^H_t = 0 where σ_t is in the highest `ent_high_frac` (critics diverge wildly).

The masks reach the loss as the per-token streams `adv_mask` and `entropy_mask`
(rlkit.algos.loss_terms); the credit stage `asyppo_masks` (rlkit.methods.asyppo.stage) sets them.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor

from rlkit.algos.critic import disjoint_shares
from rlkit.algos.gae import gae_advantage
from rlkit.algos.masked_ops import _bool
from rlkit.algos.registry import register_advantage


def asyppo_masks(
    values: Tensor,
    mask: Tensor,
    *,
    adv_low_frac: float = 0.2,
    ent_high_frac: float = 0.2,
) -> tuple[Tensor, Tensor, Tensor]:
    """(sigma [B, T], adv_mask [B, T], ent_mask [B, T]) from critic values [M, B, T].

    sigma = ``values.std(0)``, torch's default *unbiased* std (Bessel's correction, divisor
    M − 1; the paper writes "standard deviation" without saying which, and no public code was
    found).  For a fixed M the correction only rescales σ by √(M/(M−1)), so the masks — which
    compare σ with its own quantiles — are the same either way; only the logged σ differs.

    With q_lo = torch.quantile(sigma[mask], adv_low_frac) and
    q_hi = torch.quantile(sigma[mask], 1 − ent_high_frac) (linear interpolation):
        adv_mask = mask & (sigma > q_lo)   (drop the lowest-σ tokens: critics agree)
        ent_mask = mask & (sigma < q_hi)   (drop the highest-σ tokens: critics diverge)
    Positions with mask = 0 are 0 (False) in both; the masks are bool, as the formula.
    Comparisons are strict, so ties at a quantile are dropped together (e.g. every σ equal ->
    both masks all False, as when all critics still output the same value).
    """
    if values.dim() != 3:
        raise ValueError(f"values must be [M, B, T], got shape {tuple(values.shape)}")
    if values.shape[0] < 2:
        raise ValueError("asyppo_masks needs at least 2 critics (σ over one critic is undefined)")
    for name, frac in (("adv_low_frac", adv_low_frac), ("ent_high_frac", ent_high_frac)):
        if not 0.0 <= frac <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {frac}")
    m = _bool(mask)
    sigma = values.float().std(0)
    sigma = torch.where(m, sigma, torch.zeros_like(sigma))
    if not m.any():
        return sigma, torch.zeros_like(m), torch.zeros_like(m)
    valid = sigma[m]
    q_lo = torch.quantile(valid, adv_low_frac)
    q_hi = torch.quantile(valid, 1.0 - ent_high_frac)
    return sigma, m & (sigma > q_lo), m & (sigma < q_hi)


def asyppo_metrics(
    values: Tensor, sigma: Tensor, adv_mask: Tensor, ent_mask: Tensor, mask: Tensor
) -> dict[str, float]:
    """What the paper's method should be watched by: the fractions of valid tokens each mask
    drops, σ percentiles (p10/p50/p90) and the mean value's mean/std, all over valid tokens."""
    m = _bool(mask)
    n = max(int(m.sum()), 1)
    out = {
        "asyppo/adv_masked_frac": 1.0 - float(adv_mask[m].float().sum()) / n,
        "asyppo/ent_masked_frac": 1.0 - float(ent_mask[m].float().sum()) / n,
    }
    if m.any():
        valid = sigma[m].float()
        qs = torch.quantile(valid, torch.tensor([0.1, 0.5, 0.9]))
        out.update({f"asyppo/sigma_p{p}": float(q) for p, q in zip((10, 50, 90), qs)})
        v = values.float().mean(0)[m]
        out["asyppo/value_mean"] = float(v.mean())
        out["asyppo/value_std"] = float(v.std()) if v.numel() > 1 else 0.0
    return out


@register_advantage("asyppo")
def asyppo_advantage(**kw: Any) -> Tensor:
    """AsyPPO's advantage: GAE on the mean critic value V̄ (the advantage stage passes V̄ and
    the critic section's γ, λ), the same function as ``gae``; the uncertainty masks come from
    its credit stage ``asyppo_masks``."""
    return gae_advantage(**kw)


# What AsyPPO declares (read by the credit pipeline, check_plugins and the critic group; the
# runtime never names the method): its mask stage, M >= 2 critics (2 when `critic.num_critics`
# is 0), each trained on its own share of every group.
asyppo_advantage.__signature__ = inspect.signature(gae_advantage)  # its inputs and knobs
asyppo_advantage.credit_stages = ("asyppo_masks",)
asyppo_advantage.needs_critic = True
asyppo_advantage.min_critics = 2
asyppo_advantage.default_critics = 2
asyppo_advantage.critic_split = disjoint_shares
