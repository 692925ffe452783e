"""Masked tensor statistics and small helpers shared by the algorithms.

All reductions treat ``mask`` as 0/1 (bool or float) and ignore whatever sits at masked positions
(padding may hold garbage such as -inf logprobs), by selecting with ``torch.where`` rather than
multiplying.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _bool(mask: Tensor) -> Tensor:
    return mask if mask.dtype == torch.bool else mask != 0


def masked_sum(values: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Sum of ``values`` over positions where ``mask`` is set (all dims, or along ``dim``)."""
    v = torch.where(_bool(mask), values, torch.zeros((), dtype=values.dtype, device=values.device))
    return v.sum() if dim is None else v.sum(dim=dim)


def masked_mean(values: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean over masked positions; 0 where nothing is valid (instead of NaN)."""
    m = _bool(mask)
    total = masked_sum(values, m, dim)
    count = m.sum() if dim is None else m.sum(dim=dim)
    count = count.to(values.dtype)
    return torch.where(count > 0, total / count.clamp(min=1), torch.zeros_like(total))


def masked_var(values: Tensor, mask: Tensor, unbiased: bool = True) -> Tensor:
    """Variance over all masked positions; Bessel-corrected (n/(n-1)) as verl's ``masked_var``.

    With fewer than two valid positions the Bessel factor is skipped (no division by zero).
    """
    m = _bool(mask)
    mean = masked_mean(values, m)
    var = masked_mean((values - mean) ** 2, m)
    if unbiased:
        n = m.sum().to(values.dtype)
        var = torch.where(n > 1, var * n / (n - 1).clamp(min=1), var)
    return var


def masked_whiten(
    values: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> Tensor:
    """(x - mean) / sqrt(var + eps) over masked positions (verl ``masked_whiten``, Bessel var).

    ``shift_mean=False`` adds the mean back (scale only). Masked positions are returned as 0.
    """
    m = _bool(mask)
    mean = masked_mean(values, m)
    out = (values - mean) * torch.rsqrt(masked_var(values, m) + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(m, out, torch.zeros_like(out))


def last_valid_index(mask: Tensor) -> Tensor:
    """Index of the last valid token of each row of a [B, T] mask (0 for an empty row)."""
    m = _bool(mask).long()
    pos = torch.arange(m.shape[-1], device=m.device).expand_as(m)
    return torch.where(m > 0, pos, torch.zeros_like(pos)).amax(dim=-1)


def place_at_last_token(rewards: Tensor, mask: Tensor) -> Tensor:
    """Outcome rewards [B] -> token rewards [B, T]: R_i at the last valid token, 0 elsewhere."""
    out = torch.zeros(mask.shape, dtype=rewards.dtype, device=rewards.device)
    idx = last_valid_index(mask).unsqueeze(-1)
    has_any = _bool(mask).any(dim=-1, keepdim=True)
    src = torch.where(has_any, rewards.unsqueeze(-1), torch.zeros_like(rewards.unsqueeze(-1)))
    return out.scatter(-1, idx, src)


def broadcast_to_tokens(x: Tensor, like: Tensor) -> Tensor:
    """[B] -> [B, T] (repeat over tokens); a [B, T] input is returned as is."""
    if x.dim() == like.dim():
        return x
    if x.dim() == like.dim() - 1:
        return x.unsqueeze(-1).expand_as(like)
    raise ValueError(f"cannot broadcast shape {tuple(x.shape)} to {tuple(like.shape)}")
