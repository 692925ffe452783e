"""KL-to-reference estimators, KL coefficient controllers and KL-in-reward shaping.

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

from rlkit.algos.masked_ops import _bool
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


class FixedKLController:
    """Constant KL coefficient beta (verl/TRL ``FixedKLController``)."""

    def __init__(self, kl_coef: float) -> None:
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        """No-op: the coefficient is fixed."""


class AdaptiveKLController:
    """Adaptive beta of Ziegler et al. 2019 (as verl/TRL ``AdaptiveKLController``):
    e = clip(KL / target - 1, -0.2, 0.2); beta <- beta * (1 + e * n_steps / horizon)."""

    def __init__(self, init_kl_coef: float, target: float, horizon: float) -> None:
        if target <= 0 or horizon <= 0:
            raise ValueError("target and horizon must be > 0")
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        """Move beta toward keeping the measured KL at ``target``."""
        error = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon


def apply_kl_to_rewards(
    token_rewards: Tensor, kl: Tensor, beta: float, mask: Tensor | None = None
) -> Tensor:
    """KL in the reward (InstructGPT / verl ``apply_kl_penalty``): r_t - beta * kl_t per token,
    0 at masked positions when ``mask`` is given."""
    out = token_rewards - beta * kl
    if mask is not None:
        out = torch.where(_bool(mask), out, torch.zeros_like(out))
    return out
