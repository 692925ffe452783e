"""KL-to-reference estimators, and the KL in the reward built on them.

Per-token estimators of KL(pi || pi_ref) from samples of pi (Schulman 2020, "Approximating KL
divergence"), with d = log pi - log pi_ref:
  k1 = d (unbiased, high variance); k2 = d^2 / 2 (biased, low variance);
  k3 = exp(-d) - (-d) - 1 = e^{ref - log pi} - (ref - log pi) - 1 (unbiased, >= 0);
names and clamps as verl ``kl_penalty``: ``low_var_kl`` is k3 with -d clamped to [-20, 20] and
the result clamped to [-10, 10]; ``abs`` = |d|; aliases ``kl`` = k1, ``mse`` = k2.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlkit.algos.registry import check_choice

KL_KINDS: tuple[str, ...] = ("k1", "kl", "k2", "mse", "k3", "low_var_kl", "abs")


def kl_penalty(kind: str, logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """Per-token KL estimate [B, T] of kind ``kind`` (see module docstring)."""
    check_choice("kl kind", kind, KL_KINDS)
    d = logprobs - ref_logprobs
    if kind in ("k1", "kl"):
        return d
    if kind in ("k2", "mse"):
        return 0.5 * d * d
    if kind == "abs":
        return d.abs()
    neg = (-d).clamp(-20.0, 20.0)
    return (torch.exp(neg) - neg - 1.0).clamp(-10.0, 10.0)


def kl_token_penalties(samples: list, kind: str, beta: float) -> list[list[float]]:
    """KL to the reference *in the reward* (the alternative to the `kl` loss term): β·k_t for
    every response token of every sample (each needs `behavior_logprobs` and `ref_logprobs`).

    Token rewards become r_t = R·1[t = last] − β·k(log μ_t, log π_ref,t), with μ the rollout
    engine's log-probs of the sampled tokens (the policy that produced them; verl uses the
    trainer's recomputed old log-probs, equal on-policy up to numerics).  Outcome estimators
    (GRPO family) see the sequence reward R − β·Σ_t k_t, as verl's `apply_kl_penalty` followed by
    a token sum; GAE sees the token rewards (rlkit.credit.stages: `kl_in_reward`, `advantage`).
    Environment tokens (a sample's `loss_mask` 0) have no behaviour log-prob and are not the
    policy's: their penalty is 0.
    """
    out = []
    for s in samples:
        lp = torch.tensor([s.behavior_logprobs], dtype=torch.float64)
        ref = torch.tensor([s.ref_logprobs], dtype=torch.float64)
        pen = beta * kl_penalty(kind, lp, ref)[0]
        if s.loss_mask is not None:
            pen = pen * torch.tensor(s.loss_mask, dtype=torch.float64)
        out.append(pen.tolist())
    return out
