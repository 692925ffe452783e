"""Attention-based credit (arXiv 2510.13554, "preplan-and-anchor"): token weights γ.

From WAAD and FAI (rlkit.methods.attention_credit.signals) to per-token advantage multipliers
γ_t, used as Ã_t = γ_t·A_t inside both terms of the PPO min (γ detached, advantages of both
signs). Per response (docs/algorithms.md §4), with e = amp − 1 (0.5 in the paper):

- Δ_t = |WAAD_t − WAAD_{t+1}| over consecutive response tokens; the last response token has Δ = 0.
- preplan: the top n_top response tokens by Δ get γ = amp.
- anchor: the top n_top response tokens by FAI get γ = amp.
- coupled: an anchor t is locally dominated (t ∈ D) if WAAD_t <= τ_waad and
  max_{u ∈ [t−k, t−1]} Δ_u >= τ_Δ (u over response tokens only; an empty window is not in D);
  intro(t) = argmax_{u ∈ [t−k, t−1]} Δ_u (the earliest on ties).
  γ_t = 1 + e·1[t ∈ anchors∖D] + (1−α)·e·1[t ∈ D] + α·e·1[t = intro(d) for some d ∈ D].

n_top = max(1, ⌊top_frac·n⌋) for a response of n tokens; ties in the ranking go to the earlier
token. Defaults: τ_waad = median WAAD of the response (mean of the two middle values for even n),
τ_Δ = the preplan threshold (smallest Δ among the response's preplan tokens). Non-response γ = 1.

Multi-turn responses: "response tokens" are the model's (the response mask is 0 on environment
tokens): only they are ranked, counted in n and get γ; environment tokens keep γ = 1 (they are
masked out of the loss anyway).  Δ is taken between consecutive tokens of one model turn: the
last token of every model turn has Δ = 0, as the last response token does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

STRATEGIES = ("preplan", "anchor", "coupled")


@dataclass(frozen=True)
class GammaKnobs:
    """The knobs of γ and their defaults (the paper's; the one list: the token hook's knobs are
    these and rlkit.methods.attention_credit.signals.SignalKnobs).  ``amp``: γ of a chosen token
    (e = amp − 1); ``top_frac``: share of a response's tokens chosen; ``tau_waad`` /
    ``tau_delta``: the coupled thresholds (None = per-response defaults); ``alpha``: the share of
    a dominated anchor's bonus moved to its introducer; ``k``: the look-back window (>= 1)."""

    amp: float = 1.5
    top_frac: float = 0.4
    tau_waad: float | None = None
    tau_delta: float | None = None
    alpha: float = 0.5
    k: int = 3


def _top_count(n: int, top_frac: float) -> int:
    """n_top = max(1, ⌊top_frac·n⌋), capped at n (0 for an empty response or top_frac <= 0)."""
    if n == 0 or top_frac <= 0:
        return 0
    return min(n, max(1, math.floor(top_frac * n + 1e-9)))


def _top_positions(score: Tensor, top_frac: float) -> Tensor:
    """Bool [n]: the n_top largest entries of ``score`` (stable: earlier index wins ties)."""
    chosen = torch.zeros_like(score, dtype=torch.bool)
    order = torch.sort(score, descending=True, stable=True).indices
    chosen[order[: _top_count(score.numel(), top_frac)]] = True
    return chosen


def _row_delta(waad_row: Tensor, pos: Tensor | None = None) -> Tensor:
    """Δ over one response's WAAD values in position order; the last token's Δ is 0, and so is
    that of a token whose successor is not next to it (``pos``: the tokens' positions; a gap is
    an environment turn between two model turns)."""
    delta = torch.zeros_like(waad_row)
    delta[:-1] = (waad_row[:-1] - waad_row[1:]).abs()
    if pos is not None and pos.numel() > 1:
        gap = torch.zeros_like(delta, dtype=torch.bool)
        gap[:-1] = pos[1:] != pos[:-1] + 1
        delta = torch.where(gap, torch.zeros_like(delta), delta)
    return delta


def _coupled_row(
    w: Tensor,
    delta: Tensor,
    anchors: Tensor,
    tau_waad: float,
    tau_delta: float,
    alpha: float,
    k: int,
    e: float,
) -> Tensor:
    """γ over one response (compact [n] vectors) for the coupled strategy."""
    n = w.numel()
    padded = torch.cat([delta.new_full((k,), -math.inf), delta])
    windows = padded.unfold(0, k, 1)[:n]  # windows[j] = Δ_{j−k} .. Δ_{j−1}
    win_max, win_arg = windows.max(dim=-1)  # max returns the first maximal index: earliest u
    dominated = anchors & (w <= tau_waad) & (win_max >= tau_delta) & torch.isfinite(win_max)
    intro = torch.zeros_like(anchors)
    intro[(torch.arange(n, device=w.device) - k + win_arg)[dominated]] = True
    gamma = torch.ones_like(w)
    gamma += e * (anchors & ~dominated).to(w.dtype)
    gamma += (1 - alpha) * e * dominated.to(w.dtype)
    gamma += alpha * e * intro.to(w.dtype)
    return gamma


def _row_gamma(w: Tensor, f: Tensor, strategy: str, g: GammaKnobs, pos: Tensor) -> Tensor:
    """γ over one response's tokens (compact vectors w = WAAD, f = FAI at positions ``pos``)."""
    e = g.amp - 1.0
    if strategy == "anchor":
        return 1.0 + e * _top_positions(f, g.top_frac).to(w.dtype)
    delta = _row_delta(w, pos)
    preplan = _top_positions(delta, g.top_frac)
    if strategy == "preplan":
        return 1.0 + e * preplan.to(w.dtype)
    t_w = float(torch.quantile(w.double(), 0.5)) if g.tau_waad is None else g.tau_waad
    t_d = float(delta[preplan].min()) if g.tau_delta is None else g.tau_delta
    anchors = _top_positions(f, g.top_frac)
    return _coupled_row(w, delta, anchors, t_w, t_d, g.alpha, g.k, e)


def attention_gammas(
    waad: Tensor,
    fai: Tensor,
    response_mask: Tensor,
    strategy: str,
    **knobs: Any,
) -> Tensor:
    """Per-token advantage multipliers γ [B, N] (detached; 1 outside the response) for strategy
    "preplan" | "anchor" | "coupled" (arXiv 2510.13554; formulas in the module docstring).
    ``knobs``: the fields of :class:`GammaKnobs` (an unknown one is a TypeError); ``tau_waad`` /
    ``tau_delta`` given as numbers apply to every row; None = per-response defaults.
    """
    g = GammaKnobs(**knobs)
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    if g.k < 1:
        raise ValueError("k must be >= 1")
    waad, fai = waad.detach().float(), fai.detach().float()
    gammas = torch.ones_like(waad)
    mask = response_mask.to(torch.bool)
    for b in range(waad.shape[0]):
        pos = mask[b].nonzero().squeeze(1)
        if pos.numel():
            gammas[b, pos] = _row_gamma(waad[b, pos], fai[b, pos], strategy, g, pos)
    return gammas


def token_sets(
    waad: Tensor, fai: Tensor, response_mask: Tensor, top_frac: float = GammaKnobs.top_frac
) -> tuple[Tensor, Tensor]:
    """(preplan, anchor) bool [B, N]: each response's top-n_top tokens by Δ and by FAI."""
    mask = response_mask.to(torch.bool)
    pre, anc = torch.zeros_like(mask), torch.zeros_like(mask)
    for b in range(waad.shape[0]):
        pos = mask[b].nonzero().squeeze(1)
        if pos.numel():
            pre[b, pos] = _top_positions(_row_delta(waad[b, pos].float(), pos), top_frac)
            anc[b, pos] = _top_positions(fai[b, pos].float(), top_frac)
    return pre, anc


def gamma_metrics(
    gammas: Tensor,
    response_mask: Tensor,
    *,
    waad: Tensor | None = None,
    fai: Tensor | None = None,
    top_frac: float = GammaKnobs.top_frac,
) -> dict[str, float]:
    """Logging metrics over response tokens: ``attn_credit/frac_amplified`` (γ > 1),
    ``attn_credit/mean_gamma``, ``attn_credit/max_gamma``; with waad and fai also the overlap of
    the preplan (P) and anchor (A) sets: ``attn_credit/preplan_anchor_jaccard`` = |P∩A|/|P∪A|
    and ``attn_credit/anchor_in_preplan`` = |P∩A|/|A| (pooled over the batch)."""
    mask = response_mask.to(torch.bool)
    g = gammas.detach().float()[mask]
    n = max(1, g.numel())
    out = {
        "attn_credit/frac_amplified": float((g > 1).sum()) / n,
        "attn_credit/mean_gamma": float(g.sum()) / n,
        "attn_credit/max_gamma": float(g.max()) if g.numel() else 1.0,
    }
    if waad is not None and fai is not None:
        pre, anc = token_sets(waad, fai, mask, top_frac)
        both = float((pre & anc).sum())
        out["attn_credit/preplan_anchor_jaccard"] = both / max(1.0, float((pre | anc).sum()))
        out["attn_credit/anchor_in_preplan"] = both / max(1.0, float(anc.sum()))
    return out
