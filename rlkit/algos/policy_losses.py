"""On-policy clipped losses (``ppo``, ``gspo``) and the ``policy_loss`` entry point.

Each registered loss returns a per-token loss, the token mask to aggregate over and metrics;
:func:`policy_loss` broadcasts advantages, aggregates with the chosen mode (forwarding the global
normalisers for micro-batch invariance) and adds ``pg/loss``. ``ppo`` and ``gspo`` are cores on
:class:`~rlkit.algos._pg_common.PGTensors` made into that keyword form, with the TIS tail, by
:func:`~rlkit.algos._pg_common.behavior_corrected`. The off-policy variants live in
:mod:`rlkit.algos.off_policy`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rlkit.algos._pg_common import (
    CoreOut,
    PGTensors,
    behavior_corrected,
    ppo_clip,
    safe_log_ratio,
    seq_level,
)
from rlkit.algos.aggregation import aggregate
from rlkit.algos.masked_ops import _bool, broadcast_to_tokens, masked_mean
from rlkit.algos.mismatch import mismatch_metrics
from rlkit.algos.registry import POLICY_LOSSES, register_policy_loss


@register_policy_loss("ppo")
@behavior_corrected
def ppo_loss(
    t: PGTensors,
    *,
    clip_eps_low: float = 0.2,
    clip_eps_high: float = 0.2,
    dual_clip_c: float | None = None,
) -> CoreOut:
    """PPO-clip against pi_old: -min(r A, clip(r, 1-eps_low, 1+eps_high) A), r = pi_theta/pi_old.

    Clip-higher (DAPO): clip_eps_high = 0.28. Dual clip: dual_clip_c = 3.0 bounds the loss of
    A < 0 tokens by -c A. When ``behavior_logprobs`` (mu, the rollout engine's log-probs) are
    given, the per-token loss is multiplied by the detached truncated IS weight
    min(pi_old/mu, tis_cap) (``behavior_correction="tis"``, the default off-policy correction).
    """
    log_r = safe_log_ratio(t.logprobs, t.old_logprobs, t.mask)
    ratio = torch.exp(log_r)
    loss, metrics = ppo_clip(ratio, t.advantages, t.mask, clip_eps_low, clip_eps_high, dual_clip_c)
    metrics["pg/approx_kl"] = float(masked_mean(-log_r.detach(), t.mask))
    return loss, metrics, ratio


@register_policy_loss("gspo")
@behavior_corrected
def gspo_loss(t: PGTensors, *, clip_eps_low: float = 3e-4, clip_eps_high: float = 4e-4) -> CoreOut:
    """GSPO (Zheng et al. 2025), in the paper's "GSPO-token" form.

    s_i = exp((1/|o_i|) sum_t log(pi_theta/pi_old)) is the sequence ratio; each token uses
    s_{i,t} = sg(s_i) * pi_theta(t) / sg(pi_theta(t)), equal to s_i in value, whose gradient is
    s_i * grad log pi_theta(t). Loss per token: -min(s_{i,t} A, clip(s_{i,t}, 1-3e-4, 1+4e-4) A),
    i.e. clipping is decided per sequence. With sequence-level advantages and the
    ``seq-mean-token-mean`` aggregation (the paper's and verl's choice; pass agg= explicitly)
    loss and gradient equal sequence-level GSPO exactly. log s_i is clamped at 10 as in verl.
    Behaviour correction as in ``ppo``.
    """
    lp, mask = t.logprobs, t.mask
    log_s = seq_level(safe_log_ratio(lp, t.old_logprobs, mask), mask, "geometric")
    log_s_tok = (log_s.detach() + lp - lp.detach()).clamp(max=10.0)
    log_s_tok = torch.where(mask, log_s_tok, torch.zeros_like(log_s_tok))
    ratio = torch.exp(log_s_tok)
    loss, metrics = ppo_clip(ratio, t.advantages, mask, clip_eps_low, clip_eps_high, None)
    return loss, metrics, ratio


AGG_KEYS = ("num_tokens", "num_seqs", "max_len")


def policy_loss(
    variant: str,
    *,
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    behavior_logprobs: Tensor | None = None,
    agg: str = "token-mean",
    **kw: Any,
) -> tuple[Tensor, dict[str, float]]:
    """Policy-gradient loss ``variant`` (see :data:`POLICY_LOSSES`) -> (scalar loss, metrics).

    logprobs (with grad), old_logprobs, behavior_logprobs, mask: [B, T]; advantages [B] (broadcast
    over tokens) or [B, T]. ``kw``: the variant's knobs plus ``num_tokens``/``num_seqs``/
    ``max_len``, forwarded to :func:`aggregate` (micro-batch share of the global loss). Metrics
    are python floats over this call's valid tokens; ``pg/loss`` is the returned value, and the
    ``mismatch/*`` of :func:`~rlkit.algos.mismatch.mismatch_metrics` (pi_old against mu) come
    with every call that has ``behavior_logprobs``, whatever the variant.
    """
    fn = POLICY_LOSSES[variant]
    agg_kw = {k: kw.pop(k) for k in AGG_KEYS if k in kw}
    m = _bool(mask)

    def clean(x: Tensor) -> Tensor:  # padding may hold -inf/NaN: never let it reach the maths
        return torch.where(m, x, torch.zeros_like(x))

    adv = clean(broadcast_to_tokens(advantages, logprobs).detach().to(logprobs.dtype))
    old = clean(old_logprobs.detach())
    beh = None if behavior_logprobs is None else clean(behavior_logprobs.detach())
    per_token, loss_mask, metrics = fn(
        logprobs=clean(logprobs),
        old_logprobs=old,
        advantages=adv,
        mask=m,
        behavior_logprobs=beh,
        **kw,
    )
    loss = aggregate(per_token, loss_mask, agg, **agg_kw)
    metrics["pg/loss"] = float(loss.detach())
    if beh is not None:
        metrics.update(mismatch_metrics(old, beh, m))
    return loss, metrics
