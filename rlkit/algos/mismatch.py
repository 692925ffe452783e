"""Rollout–trainer mismatch, measured: how far the rollout engine's log-probs (mu, the behaviour
policy) are from the trainer's (pi_old, the same weights) on the tokens that are trained.

The engine and the trainer differ in kernels, precision and batch shape, and asynchrony adds
stale weights on top; every correction of the policy loss (``behavior_correction``,
:mod:`rlkit.algos._pg_common`) reads the same per-token log-ratio log rho_t = log pi_old(y_t) -
log mu(y_t). :func:`mismatch_metrics` logs it every step (docs/algorithms.md, "Rollout–trainer
mismatch"); :func:`rlkit.algos.policy_loss` adds them whenever behaviour log-probs are given.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlkit.algos._pg_common import safe_log_ratio
from rlkit.algos.masked_ops import _bool, masked_mean, masked_sum

# The band outside which a token counts as "far" in mismatch/ratio_out_frac (docs §8).
OUT_LOW, OUT_HIGH = 0.5, 2.0


def mismatch_metrics(
    old_logprobs: Tensor, behavior_logprobs: Tensor, mask: Tensor
) -> dict[str, float]:
    """``mismatch/*`` over the tokens of ``mask`` (model tokens only), from log rho_t =
    log pi_old - log mu (clamped to [-20, 20] as every ratio of the losses):

    - ``kl_k3``: mean of rho - 1 - log rho, the k3 estimator (Schulman 2020, "Approximating KL
      divergence") of KL(mu ‖ pi_old): the tokens are samples of mu and E_mu[rho] = 1, so its
      expectation is E_mu[-log rho] = KL(mu ‖ pi_old); unlike k1 it is never negative;
    - ``log_ratio_abs_mean`` / ``_max``: |log mu - log pi_old|;
    - ``ratio_mean`` / ``_max`` / ``_min``: the token ratio rho = pi_old/mu;
    - ``ratio_out_frac``: fraction of tokens with rho outside [0.5, 2];
    - ``seq_ratio_mean`` / ``_max`` / ``_min``: the geometric-mean ratio of each sequence,
      exp(mean_t log rho_t) (what sequence-level MIS tests), over sequences with a valid token;
    - ``seq_log_ratio_mean`` / ``_max`` / ``_min``: sum_t log rho_t, the log of the sequence
      ratio that sequence-level TIS truncates (as a log: the ratio itself overflows).

    Maxima and minima are over this call's tokens; the trainer averages every non-share metric
    over micro-batches and ranks, so a step's ``_max`` is the mean of the micro-batch maxima.
    """
    m = _bool(mask)
    log_r = safe_log_ratio(old_logprobs.detach(), behavior_logprobs.detach(), m)
    ratio = torch.exp(log_r)
    rows = m.any(dim=-1)
    seq_log = masked_sum(log_r, m, dim=-1)
    geo = torch.exp(seq_log / m.sum(dim=-1).clamp(min=1).to(seq_log.dtype))
    values = {
        "kl_k3": masked_mean(ratio - 1.0 - log_r, m),
        "log_ratio_abs_mean": masked_mean(log_r.abs(), m),
        "log_ratio_abs_max": _masked_max(log_r.abs(), m),
        "ratio_out_frac": masked_mean(((ratio < OUT_LOW) | (ratio > OUT_HIGH)).to(ratio.dtype), m),
        **_mean_max_min("ratio", ratio, m),
        **_mean_max_min("seq_ratio", geo, rows),
        **_mean_max_min("seq_log_ratio", seq_log, rows),
    }
    # one device-to-host copy for all of them (a GPU sync per metric would stall the step)
    numbers = torch.stack([v.to(torch.float64) for v in values.values()]).tolist()
    return {f"mismatch/{k}": x for k, x in zip(values, numbers)}


def _masked_max(x: Tensor, mask: Tensor) -> Tensor:
    """Max of ``x`` where ``mask`` is set, 0 when nothing is."""
    top = torch.where(mask, x, torch.full_like(x, -torch.inf)).amax()
    return torch.where(mask.any(), top, torch.zeros_like(top))


def _mean_max_min(name: str, x: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """``{name}_mean/_max/_min`` of ``x`` over ``mask`` as 0-d tensors (0 when nothing is set)."""
    return {
        f"{name}_mean": masked_mean(x, mask),
        f"{name}_max": _masked_max(x, mask),
        f"{name}_min": -_masked_max(-x, mask),
    }
