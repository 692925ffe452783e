"""GRPO-VPS: GRPO refined by answer-probability process rewards (docs/algorithms.md §3).

Details and knobs: docs/vps.md.

The response is cut into segments (:mod:`rlkit.methods.vps.segments`); after each segment the gold
answer is appended and the policy's belief p_k in it is read (:mod:`rlkit.methods.vps.beliefs`).
This module turns beliefs into token advantages:

    Δ_{i,k} = p_{i,k} − p_{i,k−1}                                  (progress of segment k)
    Δ̂_{i,k} = (Δ_{i,k} − mean_G Δ) / (std_G Δ + ε_Δ)               (all segments of the group)
    A_{i,t} = A_i^GRPO + λ · clip(Δ̂_{i,k}, −c, c)                  (t in segment k, mode "segment")
    A_{i,t} = A_i^GRPO + λ · clip(Σ_{j≥k} Δ̂_{i,j}, −c, c)          (mode "future")

std is Bessel's; a group with fewer than 2 segments in all has Δ̂ = 0. λ = 0.5, c = 1, ε_Δ = 1e-6
(defaults; the paper's exact rules are not public). Responses without beliefs (no gold answer)
get plain GRPO and stay out of the group's Δ statistics.

Multi-turn responses: a segment without a model token (an environment turn, all `mask` 0) is
not the policy's progress: its Δ stays out of the group's statistics, its Δ̂ is 0 (so "future"
sums only model segments) and its tokens, being masked, get no advantage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from rlkit.algos.advantages import GroupIds, group_index, grpo_advantage
from rlkit.algos.masked_ops import _bool
from rlkit.algos.registry import check_choice, register_advantage

VPS_MODES = ("segment", "future")
Beliefs = Sequence[Sequence[float] | None]


def _progress(beliefs: Beliefs, segment_ends: Sequence[Sequence[int]]) -> list[list[float]]:
    """Δ_{i,k} = p_{i,k} − p_{i,k−1} per response ([] for responses without beliefs)."""
    if len(beliefs) != len(segment_ends):
        raise ValueError(f"{len(beliefs)} belief rows but {len(segment_ends)} segment_ends rows")
    out = []
    for i, (p, ends) in enumerate(zip(beliefs, segment_ends)):
        if p is None or len(p) == 0:
            out.append([])
            continue
        p = [float(x) for x in p]
        if len(p) != len(ends) + 1:
            raise ValueError(f"row {i}: {len(p)} beliefs for {len(ends)} segments (need K+1)")
        if any(b <= a for a, b in zip([0, *ends], ends)):
            raise ValueError(f"row {i}: segment_ends {list(ends)} must increase from > 0")
        out.append([b - a for a, b in zip(p, p[1:])])
    return out


def normalized_progress(
    beliefs: Beliefs,
    segment_ends: Sequence[Sequence[int]],
    group_ids: GroupIds,
    *,
    delta_eps: float = 1e-6,
    keep: Sequence[Sequence[bool]] | None = None,
) -> list[list[float]]:
    """Δ̂_{i,k}: progress standardised over all segments of the responses of one group.

    Mean and Bessel std over every Δ of the group; a group with fewer than 2 segments in all
    gets Δ̂ = 0. Rows without beliefs give []. ``keep[i][k]`` False (an environment segment,
    :func:`rlkit.methods.vps.segments.model_segments`): Δ_{i,k} is left out of the statistics
    and Δ̂_{i,k} = 0.
    """
    deltas = _progress(beliefs, segment_ends)
    kept = _kept(deltas, keep)
    gidx = group_index(group_ids, len(deltas)).tolist()
    pooled: dict[int, list[float]] = {}
    for g, d, k in zip(gidx, deltas, kept):
        pooled.setdefault(g, []).extend(x for x, on in zip(d, k) if on)
    stats = {}
    for g, xs in pooled.items():
        t = torch.tensor(xs, dtype=torch.float64)
        stats[g] = (float(t.mean()), float(t.std())) if len(xs) >= 2 else None
    out = []
    for g, d, k in zip(gidx, deltas, kept):
        if stats[g] is None:
            out.append([0.0] * len(d))
        else:
            mu, sd = stats[g]
            out.append([(x - mu) / (sd + delta_eps) if on else 0.0 for x, on in zip(d, k)])
    return out


def _kept(deltas: list[list[float]], keep: Sequence[Sequence[bool]] | None) -> list[list[bool]]:
    """Per row and segment: does its Δ count (all of them when ``keep`` is None)."""
    if keep is None:
        return [[True] * len(d) for d in deltas]
    if len(keep) != len(deltas):
        raise ValueError(f"{len(keep)} keep rows for {len(deltas)} belief rows")
    out = []
    for i, (d, k) in enumerate(zip(deltas, keep)):
        if d and len(k) != len(d):
            raise ValueError(f"row {i}: {len(k)} keep flags for {len(d)} segments")
        out.append([bool(x) for x in k] if d else [])
    return out


def _segment_credit(dhat: list[float], mode: str) -> list[float]:
    """Per-segment raw credit before clipping: Δ̂_k ("segment") or Σ_{j≥k} Δ̂_j ("future")."""
    if mode == "segment":
        return list(dhat)
    out, acc = [], 0.0
    for x in reversed(dhat):
        acc += x
        out.append(acc)
    return out[::-1]


@register_advantage("grpo_vps")
def grpo_vps_advantage(
    *,
    rewards: Tensor,
    group_ids: GroupIds,
    mask: Tensor,
    beliefs: Beliefs,
    segment_ends: Sequence[Sequence[int]],
    lam: float = 0.5,
    clip: float = 1.0,
    mode: str = "segment",
    delta_eps: float = 1e-6,
    **grpo_kw: Any,
) -> Tensor:
    """GRPO-VPS token advantages [B, T] (formula: module docstring).

    ``mask`` [B, T]: column t is response token offset t (segment k covers offsets
    [b_{k−1}, b_k)); masked tokens get 0; valid tokens past b_K get plain GRPO; a segment with
    no valid token (an environment turn) gets no credit and stays out of the Δ statistics.
    ``grpo_kw`` (``epsilon``, ``std_scale``) go to the "grpo" estimator that gives A_i^GRPO.
    """
    check_choice("vps mode", mode, VPS_MODES)
    if mask is None or mask.dim() != 2 or mask.shape[0] != rewards.shape[0]:
        raise ValueError("grpo_vps needs mask [B, T] with B = len(rewards)")
    grpo_kw.pop("values", None)
    base = grpo_advantage(rewards=rewards, group_ids=group_ids, **grpo_kw)
    keep = [_valid_segments(mask[i], ends) for i, ends in enumerate(segment_ends)]
    dhat = normalized_progress(beliefs, segment_ends, group_ids, delta_eps=delta_eps, keep=keep)
    credit = torch.zeros(mask.shape, dtype=torch.float64)
    for i, (d, ends) in enumerate(zip(dhat, segment_ends)):
        if not d:
            continue
        if ends[-1] > mask.shape[1]:
            raise ValueError(f"row {i}: segment end {ends[-1]} past mask width {mask.shape[1]}")
        for a, b, c in zip([0, *ends], ends, _segment_credit(d, mode)):
            credit[i, a:b] = min(max(c, -clip), clip)
    adv = base.unsqueeze(-1) + lam * credit.to(base.dtype).to(base.device)
    return torch.where(_bool(mask), adv, torch.zeros_like(adv))


def _valid_segments(mask_row: Tensor, ends: Sequence[int]) -> list[bool]:
    """Per segment: does it hold a valid (trained) token of ``mask_row``."""
    m = _bool(mask_row)
    return [bool(m[a:b].any()) for a, b in zip([0, *ends], ends)]


# The credit stage that fills `beliefs` and `segment_ends` (rlkit.methods.vps.stage).
grpo_vps_advantage.credit_stages = ("vps_probes",)
# Its **grpo_kw knobs go to `grpo` (check_plugins checks algo.advantage_kw against both).
grpo_vps_advantage.forwards_kw_to = lambda kw: grpo_advantage


def _mean_std(xs: list[float]) -> tuple[float, float]:
    if not xs:
        return 0.0, 0.0
    t = torch.tensor(xs, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(xs) > 1 else 0.0


def vps_metrics(
    beliefs: Beliefs,
    segment_ends: Sequence[Sequence[int]],
    group_ids: GroupIds | None = None,
    *,
    delta_eps: float = 1e-6,
    keep: Sequence[Sequence[bool]] | None = None,
) -> dict[str, float]:
    """VPS diagnostics over the responses that have beliefs (a dict of floats).

    Keys: ``vps/belief_first`` (mean p_0), ``vps/belief_last`` (mean p_K), ``vps/belief_mean``
    (mean of all p), ``vps/progress_mean`` / ``vps/progress_std`` (over all Δ),
    ``vps/segments_per_response``, ``vps/credit_pos_frac`` / ``vps/credit_neg_frac`` (fraction of
    segments whose credit is > 0 / < 0: Δ̂ if ``group_ids`` is given, else Δ),
    ``vps/with_beliefs_frac`` (fraction of responses that have beliefs).  Segments and Δ are
    the model's only: ``keep`` (as for :func:`normalized_progress`) drops environment segments.
    """
    deltas = _progress(beliefs, segment_ends)
    kept = _kept(deltas, keep)
    rows = [[float(x) for x in p] for p in beliefs if p is not None and len(p) > 0]
    credit = (
        deltas
        if group_ids is None
        else normalized_progress(beliefs, segment_ends, group_ids, delta_eps=delta_eps, keep=keep)
    )
    flat_d = [x for d, k in zip(deltas, kept) for x, on in zip(d, k) if on]
    flat_c = [x for c, k in zip(credit, kept) for x, on in zip(c, k) if on]
    n_seg = max(len(flat_c), 1)
    prog_mean, prog_std = _mean_std(flat_d)
    return {
        "vps/belief_first": _mean_std([p[0] for p in rows])[0],
        "vps/belief_last": _mean_std([p[-1] for p in rows])[0],
        "vps/belief_mean": _mean_std([x for p in rows for x in p])[0],
        "vps/progress_mean": prog_mean,
        "vps/progress_std": prog_std,
        "vps/segments_per_response": len(flat_d) / max(len(rows), 1),
        "vps/credit_pos_frac": sum(x > 0 for x in flat_c) / n_seg,
        "vps/credit_neg_frac": sum(x < 0 for x in flat_c) / n_seg,
        "vps/with_beliefs_frac": len(rows) / max(len(beliefs), 1),
    }
