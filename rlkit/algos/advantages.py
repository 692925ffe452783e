"""Outcome advantage estimators of the GRPO family, and the ``compute_advantages`` entry point.

Each estimator takes outcome rewards R [B] and group labels (same label = same prompt) and returns
advantages [B]; token-level estimators (``gae``, ``token_level``) return [B, T]. Formulas and
sources are in each docstring and in docs/algorithms.md.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from rlkit.algos.masked_ops import _bool, masked_whiten
from rlkit.algos.registry import ADVANTAGES, check_choice, register_advantage

GroupIds = Tensor | Sequence[Any]


def group_index(group_ids: GroupIds, n: int, device: torch.device | None = None) -> Tensor:
    """Map arbitrary group labels (tensor or list of hashables) to dense ids 0..G-1 ([B] long)."""
    if isinstance(group_ids, Tensor):
        ids = group_ids.to(device) if device is not None else group_ids
        _, inv = torch.unique(ids.reshape(-1), return_inverse=True)
    else:
        table: dict[Any, int] = {}
        inv = torch.tensor([table.setdefault(g, len(table)) for g in group_ids], device=device)
    if inv.numel() != n:
        raise ValueError(f"group_ids has {inv.numel()} entries, rewards has {n}")
    return inv.long()


def group_stats(rewards: Tensor, group_ids: GroupIds) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample group size, group mean and Bessel group std (std 0 for groups of size 1)."""
    idx = group_index(group_ids, rewards.shape[0], rewards.device)
    g = int(idx.max()) + 1 if idx.numel() else 0
    zeros = torch.zeros(g, dtype=rewards.dtype, device=rewards.device)
    count = zeros.index_add(0, idx, torch.ones_like(rewards))
    mean = zeros.index_add(0, idx, rewards) / count
    sq = zeros.index_add(0, idx, (rewards - mean[idx]) ** 2)
    std = torch.sqrt(sq / (count - 1).clamp(min=1))
    return count[idx], mean[idx], std[idx]


def _check_rewards(rewards: Tensor | None, group_ids: GroupIds | None) -> Tensor:
    if rewards is None or group_ids is None:
        raise ValueError("this estimator needs rewards [B] and group_ids")
    if rewards.dim() != 1:
        raise ValueError(f"outcome rewards must be [B], got shape {tuple(rewards.shape)}")
    return rewards


@register_advantage("grpo")
def grpo_advantage(
    *,
    rewards: Tensor,
    group_ids: GroupIds,
    epsilon: float = 1e-6,
    std_scale: str = "group",
) -> Tensor:
    """GRPO: A_i = (R_i - mean_G R) / (std R + epsilon); groups of size 1 get 0.

    ``std_scale``: "group" (Bessel std within the group; verl, DeepSeekMath), "batch" (Bessel std
    over the whole batch; TRL ``scale_rewards="batch"``), "none" (no division; = Dr.GRPO).
    epsilon: 1e-6 (verl default); TRL uses 1e-4.
    """
    rewards = _check_rewards(rewards, group_ids)
    check_choice("std_scale", std_scale, ("group", "batch", "none"))
    count, mean, std = group_stats(rewards, group_ids)
    centred = torch.where(count > 1, rewards - mean, torch.zeros_like(rewards))
    if std_scale == "group":
        return centred / (std + epsilon)
    if std_scale == "batch":
        batch_std = rewards.std() if rewards.numel() > 1 else rewards.new_zeros(())
        return centred / (batch_std + epsilon)
    return centred


@register_advantage("dr_grpo")
def dr_grpo_advantage(*, rewards: Tensor, group_ids: GroupIds) -> Tensor:
    """Dr.GRPO (Liu et al. 2025): A_i = R_i - mean_G R (no std division). Use it with the
    ``seq-mean-token-sum-norm`` aggregation (sum over tokens / constant max_len)."""
    rewards = _check_rewards(rewards, group_ids)
    _, mean, _ = group_stats(rewards, group_ids)
    return rewards - mean


@register_advantage("rloo")
def rloo_advantage(*, rewards: Tensor, group_ids: GroupIds) -> Tensor:
    """RLOO (Ahmadian et al. 2024): A_i = R_i - mean_{j != i} R_j = n/(n-1) (R_i - mean_G R).

    A group of size 1 has no leave-one-out baseline and gets 0.
    """
    rewards = _check_rewards(rewards, group_ids)
    count, mean, _ = group_stats(rewards, group_ids)
    scaled = (rewards - mean) * count / (count - 1).clamp(min=1)
    return torch.where(count > 1, scaled, torch.zeros_like(rewards))


@register_advantage("reinforce_pp")
def reinforce_pp_advantage(
    *,
    rewards: Tensor,
    group_ids: GroupIds,
    mask: Tensor | None = None,
    whiten_level: str | None = None,
    eps: float = 1e-8,
) -> Tensor:
    """REINFORCE++ with group baseline (verl ``reinforce_plus_plus_baseline``):
    a_i = R_i - mean_G R, then batch whitening A = (a - mean_B a) / sqrt(var_B a + eps).

    ``whiten_level``: "token" (default when ``mask`` is given; each response weighted by its
    number of valid tokens, as verl whitens the broadcast [B, T] scores with a Bessel variance over
    all valid tokens) or "sequence" (plain whitening over the B responses; default without mask).
    """
    rewards = _check_rewards(rewards, group_ids)
    level = whiten_level or ("token" if mask is not None else "sequence")
    check_choice("whiten_level", level, ("token", "sequence"))
    _, mean, _ = group_stats(rewards, group_ids)
    centred = rewards - mean
    if level == "sequence":
        return masked_whiten(centred, torch.ones_like(centred, dtype=torch.bool), eps=eps)
    if mask is None:
        raise ValueError("whiten_level='token' needs mask [B, T]")
    m = _bool(mask)
    tok = centred.unsqueeze(-1).expand(m.shape)
    mean_t = (tok * m).sum() / m.sum()
    n = m.sum().to(rewards.dtype)
    var_t = (((tok - mean_t) ** 2) * m).sum() / n * n / (n - 1).clamp(min=1)
    return (centred - mean_t) * torch.rsqrt(var_t + eps)


@register_advantage("token_level")
def token_level_advantage(*, token_advantages: Tensor, mask: Tensor | None = None) -> Tensor:
    """Pass-through of given token-level advantages [B, T] (e.g. process rewards), zeroed at
    masked positions."""
    if mask is None:
        return token_advantages
    return torch.where(_bool(mask), token_advantages, torch.zeros_like(token_advantages))


# The advantage stage hands it the rewards' per-token process scores (rlkit.algos.declared).
token_level_advantage.token_inputs = {"token_advantages": "token_scores"}


def compute_advantages(
    estimator: str,
    *,
    rewards: Tensor | None = None,
    group_ids: GroupIds | None = None,
    mask: Tensor | None = None,
    values: Tensor | None = None,
    **kw: Any,
) -> Tensor:
    """Compute advantages with the registered ``estimator`` (see :data:`ADVANTAGES`).

    Outcome estimators (grpo, dr_grpo, rloo, reinforce_pp) return [B]; ``gae`` and
    ``token_level`` return [B, T]. The inputs reach the estimator only when it takes them (by
    name or through ``**kw``); ``kw`` holds its knobs, and an unknown knob is a TypeError (a typo
    in ``algo.advantage_kw`` is not swallowed; check_plugins reports it before a run starts).
    """
    fn = ADVANTAGES[estimator]
    inputs = {"rewards": rewards, "group_ids": group_ids, "mask": mask, "values": values}
    return fn(**accepted(fn, inputs), **kw)


def accepted(fn: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``kwargs`` that ``fn`` takes: by name, or all of them when it has ``**kw``."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return dict(kwargs)
    names = {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    return {k: v for k, v in kwargs.items() if k in names}
