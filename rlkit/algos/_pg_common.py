"""Shared pieces of the policy-gradient losses: ratios, PPO clipping, IS weights, metrics, and
the one definition of the registered loss's keywords and of its behaviour-correction tail (TIS,
sequence TIS, MIS, IcePop: :class:`BehaviorKnobs`, :func:`behavior_weight`).

A built-in loss is written as a core on :class:`PGTensors`; :func:`behavior_corrected` (the
correction tail) or :func:`keyword_loss` (a loss that handles mu itself) turns it into the
keyword function ``fn(*, logprobs, old_logprobs, advantages, mask, behavior_logprobs=None,
**knobs) -> (per_token_loss, loss_mask, metrics)`` that :func:`rlkit.algos.policy_loss` calls
and a user's own loss is written as directly.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

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


BEHAVIOR_CORRECTIONS = ("tis", "seq_tis", "mis", "seq_mis", "icepop", "none")


@dataclass(frozen=True)
class BehaviorKnobs:
    """The knobs of the behaviour (rollout–trainer mismatch) correction, with their defaults:
    every :func:`behavior_corrected` loss takes them after its core's own (docs/algorithms.md,
    "Rollout–trainer mismatch"). ``tis_cap`` is C of both TIS levels; ``mis_low``/``mis_high``
    the band of both MIS levels; ``icepop_low``/``icepop_high`` IcePop's [alpha, beta]."""

    behavior_correction: str = "tis"
    tis_cap: float = 2.0
    mis_low: float = 0.5
    mis_high: float = 2.0
    icepop_low: float = 0.5
    icepop_high: float = 5.0


def behavior_weight(
    old_logprobs: Tensor, behavior_logprobs: Tensor | None, mask: Tensor, knobs: BehaviorKnobs
) -> tuple[Tensor | None, dict[str, float]]:
    """Detached per-token weight on the loss for the rollout–trainer mismatch, from the token
    ratio rho_t = pi_old(y_t)/mu(y_t) (mu = ``behavior_logprobs``, the rollout engine's); ``None``
    when there is no mu or ``behavior_correction == "none"``. Modes:

    - ``tis``: w_t = min(rho_t, C) (Yao et al. 2025, "Your efficient RL framework secretly
      brings you off-policy RL training");
    - ``seq_tis``: w = min(prod_t rho_t, C), one weight per sequence (Liu, Li et al. 2025, "When
      speed kills stability: demystifying RL collapse from the training-inference mismatch");
    - ``mis``/``seq_mis``: rejection (masked IS as the same authors and verl's rollout
      correction apply it): w = 1 where rho_t (``mis``) or the sequence's geometric-mean ratio
      exp(mean_t log rho_t) (``seq_mis``) lies in [mis_low, mis_high], else 0;
    - ``icepop``: w_t = rho_t if rho_t in [alpha, beta] else 0 (IcePop, Ling Team 2025, "Every
      step evolves: scaling RL for trillion-scale thinking model"; alpha 0.5, beta 5).

    A weight of 0 drops the token from the gradient; it still counts in the loss's normalisers
    (IcePop's 1/|y_i|), so the loss stays invariant to micro-batch and rank splits.
    """
    mode = knobs.behavior_correction
    check_choice("behavior_correction", mode, BEHAVIOR_CORRECTIONS)
    if behavior_logprobs is None or mode == "none":
        return None, {}
    log_r = safe_log_ratio(old_logprobs, behavior_logprobs, mask).detach()
    if mode in ("tis", "seq_tis"):
        raw = torch.exp(seq_level(log_r, mask, "token" if mode == "tis" else "sequence"))
        w = raw.clamp(max=knobs.tis_cap)
        return w, {
            "pg/is_weight_mean": float(masked_mean(w, mask)),
            "pg/is_clip_frac": frac(raw > knobs.tis_cap, mask),
        }
    if mode == "icepop":
        ratio, lo, hi = torch.exp(log_r), knobs.icepop_low, knobs.icepop_high
    else:
        level = "token" if mode == "mis" else "geometric"
        ratio, lo, hi = torch.exp(seq_level(log_r, mask, level)), knobs.mis_low, knobs.mis_high
    if not 0.0 <= lo < hi:
        raise ValueError(f"{mode}: the band must satisfy 0 <= low < high, got [{lo}, {hi}]")
    keep = (ratio >= lo) & (ratio <= hi)
    w = torch.where(keep, ratio if mode == "icepop" else torch.ones_like(ratio), 0.0)
    return w, {
        "pg/is_weight_mean": float(masked_mean(w, mask)),
        "pg/is_masked_frac": frac(~keep, mask),
    }


LossOut = tuple[Tensor, Tensor, dict[str, float]]  # (per-token loss, loss mask, metrics)
CoreOut = tuple[Tensor, dict[str, float], Tensor]  # (per-token loss, metrics, ratio)


@dataclass(frozen=True)
class PGTensors:
    """The tensors a policy loss reads, all [B, T] (``mask`` bool), as the cores of
    :func:`behavior_corrected` and :func:`keyword_loss` receive them."""

    logprobs: Tensor
    old_logprobs: Tensor
    advantages: Tensor
    mask: Tensor


_KW = inspect.Parameter.KEYWORD_ONLY
_VAR = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
# The keywords every built-in loss takes before its core's knobs (_HEAD) and a behaviour-corrected
# one after them (_TAIL): the signature check_plugins and help() read (string annotations, as the
# modules' own are under `from __future__ import annotations`).
_TENSORS = ("logprobs", "old_logprobs", "advantages", "mask")
_HEAD = (
    *(inspect.Parameter(n, _KW, annotation="Tensor") for n in _TENSORS),
    inspect.Parameter("behavior_logprobs", _KW, default=None, annotation="Tensor | None"),
)
_TAIL = tuple(
    inspect.Parameter(f.name, _KW, default=f.default, annotation=f.type)
    for f in fields(BehaviorKnobs)
)


def behavior_corrected(core: Callable[..., CoreOut]) -> Callable[..., LossOut]:
    """The policy loss ``fn(*, logprobs, old_logprobs, advantages, mask, behavior_logprobs=None,
    <core's knobs>, <BehaviorKnobs: behavior_correction="tis", tis_cap=2.0, ...>) ->
    (per_token_loss, loss_mask, metrics)`` made from ``core(t: PGTensors, *, knobs) ->
    (per_token_loss, metrics, ratio)``.

    The loss multiplies the core's per-token loss by the correction weight of
    :func:`behavior_weight` (when there is one), adds its metrics (they win over the core's own)
    and the ``pg/ratio`` statistics of ``ratio``; the loss mask is ``mask``.
    """
    tail = {p.name for p in _TAIL}

    def run(t: PGTensors, behavior_logprobs: Tensor | None, **kw: Any) -> LossOut:
        knobs = BehaviorKnobs(**{k: kw.pop(k) for k in tail})
        per_token, metrics, ratio = core(t, **kw)
        w, w_metrics = behavior_weight(t.old_logprobs, behavior_logprobs, t.mask, knobs)
        if w is not None:
            per_token = per_token * w
        metrics.update(w_metrics)
        metrics.update(stats("pg/ratio", ratio, t.mask))
        return per_token, t.mask, metrics

    return _keyword_form(run, core, _TAIL)


def keyword_loss(core: Callable[..., LossOut]) -> Callable[..., LossOut]:
    """The policy loss ``fn(*, logprobs, old_logprobs, advantages, mask, behavior_logprobs=None,
    <core's knobs>) -> (per_token_loss, loss_mask, metrics)`` made from ``core(t: PGTensors,
    behavior_logprobs, *, knobs)``, for a loss that handles the behaviour policy itself."""
    return _keyword_form(core, core, ())


def _keyword_form(
    run: Callable[..., LossOut], core: Callable[..., Any], tail: tuple[inspect.Parameter, ...]
) -> Callable[..., LossOut]:
    """The registered loss: its keywords are bound against one signature (the tensors, the
    core's keyword-only knobs, then ``tail``, each with its default) and handed to
    ``run(PGTensors, behavior_logprobs, **knobs)``. ``__signature__`` is that signature, so
    check_plugins checks a recipe's ``loss_kw`` against it; a typo is a ``TypeError`` naming the
    core, as a plain keyword function's would be."""
    params = inspect.signature(core).parameters.values()
    knobs = [p for p in params if p.kind is _KW]
    taken = {p.name for p in (*_HEAD, *tail)}
    bad = [p.name for p in params if p.kind in _VAR or (p.kind is _KW and p.name in taken)]
    if bad:
        raise TypeError(f"{core.__qualname__}: knobs must be named and new: {bad}")
    signature = inspect.Signature([*_HEAD, *knobs, *tail], return_annotation="LossOut")

    def loss(**kw: Any) -> LossOut:
        try:
            bound = signature.bind(**kw)
        except TypeError as exc:  # an unknown knob or a missing tensor: say whose
            raise TypeError(f"{core.__qualname__}(): {exc}") from None
        bound.apply_defaults()
        a = bound.arguments
        return run(PGTensors(*(a.pop(n) for n in _TENSORS)), a.pop("behavior_logprobs"), **a)

    for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(loss, attr, getattr(core, attr))
    loss.__signature__ = signature  # type: ignore[attr-defined]
    return loss
