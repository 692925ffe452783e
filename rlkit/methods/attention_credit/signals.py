"""Attention-based credit assignment signals (arXiv 2510.13554, "preplan-and-anchor").

WAAD (windowed average attention distance, from "local" heads) and FAI (future attention
influence, from "global" heads), computed from the post-RoPE queries and keys of a forward on a
few middle layers. Exact definitions (docs/algorithms.md §4, docs/attention_credit.md):

- A_h[t, s]: causal softmax attention of head h (what eager ``output_attentions=True`` returns).
- d_h = mean_{t >= r, t valid} Σ_{s<=t} A_h[t,s]·(t−s)   (look-back distance, r = response start)
- local heads: the max(1, ⌊local_frac·H⌋) smallest d_h; global: the max(1, ⌊global_frac·H⌋)
  largest (H = heads over all chosen layers, ties by (layer, head) order); per batch row.
- WAAD_t = Σ_{s<=t} Ā_loc[t,s]·min(t−s, W)
- FAI_s = mean_{t ∈ [s+H_lo, min(N−1, s+H_hi)]} Ā_glob[t,s], 0 where that range is empty
  (N = the row's valid length).

Nothing of size N×N for all heads is ever built: per batch row and layer, rows are processed in
chunks and only three per-head [N] statistics are kept. The token weights built on these signals
(preplan / anchor / coupled) live in rlkit.methods.attention_credit.gammas.
"""

from __future__ import annotations

import functools
import inspect
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

DEFAULT_CHUNK = 128


@dataclass(frozen=True)
class SignalKnobs:
    """The knobs of WAAD and FAI and their defaults (the paper's; the one list: the token hook's
    knobs are these and rlkit.methods.attention_credit.gammas.GammaKnobs).  ``window``: W of
    WAAD; ``fai_lo`` / ``fai_hi``: FAI's band of future tokens; ``local_frac`` /
    ``global_frac``: the shares of heads classed local / global; ``chunk_size``: query rows per
    chunk (memory only, not the result)."""

    window: int = 10
    fai_lo: int = 10
    fai_hi: int = 100
    local_frac: float = 0.3
    global_frac: float = 0.3
    chunk_size: int = DEFAULT_CHUNK


class AttentionCaptureError(RuntimeError):
    """The model's attention could not be hooked (no HF attention modules, or a chosen layer did
    not go through transformers' attention interface during the forward)."""


def default_layers(num_layers: int, count: int = 5) -> list[int]:
    """``count`` evenly spaced layers in ⌊L/3⌋..⌊2L/3⌋ (rounded half up, deduplicated)."""
    lo, hi = num_layers // 3, (2 * num_layers) // 3
    if count <= 1:
        return [lo]
    return sorted({math.floor(lo + (hi - lo) * i / (count - 1) + 0.5) for i in range(count)})


def find_attention_modules(model: nn.Module) -> list[nn.Module]:
    """The decoder's self-attention modules in layer order: modules whose class name ends in
    "Attention" and that carry a ``layer_idx`` (HF convention; also found under peft/DeepSpeed
    wrappers, which keep the original modules as descendants)."""
    mods = [
        m
        for m in model.modules()
        if type(m).__name__.endswith("Attention") and isinstance(getattr(m, "layer_idx", None), int)
    ]
    return sorted(mods, key=lambda m: m.layer_idx)


@dataclass
class QKCapture:
    """Detached post-RoPE queries [B, Hq, N, d] and keys [B, Hkv, N, d] (kv heads NOT repeated)
    per chosen layer, and the score scaling each attention call used."""

    layers: list[int]
    qs: dict[int, Tensor] = field(default_factory=dict)
    ks: dict[int, Tensor] = field(default_factory=dict)
    scalings: dict[int, float] = field(default_factory=dict)

    def record(self, layer: int, query: Tensor, key: Tensor, scaling: float) -> None:
        """Keep the latest call (a gradient-checkpointing recompute rewrites equal values)."""
        self.qs[layer], self.ks[layer] = query.detach(), key.detach()
        self.scalings[layer] = float(scaling)

    def ordered(self) -> tuple[list[Tensor], list[Tensor], list[float]]:
        """(qs, ks, scalings) in ``layers`` order; AttentionCaptureError if one is missing."""
        missing = [i for i in self.layers if i not in self.qs]
        if missing:
            raise AttentionCaptureError(
                f"attention of layers {missing} was not captured: the model does not call "
                "transformers' AttentionInterface.get_interface (unsupported architecture or "
                "transformers version); attention-based credit needs it"
            )
        return (
            [self.qs[i] for i in self.layers],
            [self.ks[i] for i in self.layers],
            [self.scalings[i] for i in self.layers],
        )

    def clear(self) -> None:
        """Drop the references (the captured tensors can be large)."""
        self.qs.clear()
        self.ks.clear()
        self.scalings.clear()


_LOCK = threading.Lock()
_TARGETS: dict[int, tuple[QKCapture, int]] = {}  # id(attention module) -> (capture, layer)
_PATCH: dict[str, Any] = {"depth": 0, "orig": None}
_WRAPPED: dict[Callable, Callable] = {}


def _call_args(args: tuple, kwargs: dict) -> tuple[Any, Tensor | None, Tensor | None, Any]:
    """(module, query, key, scaling) of an attention-interface call
    ``fn(module, query, key, value, attention_mask, scaling=..., ...)``."""
    module = args[0] if args else kwargs.get("module")
    query = args[1] if len(args) > 1 else kwargs.get("query")
    key = args[2] if len(args) > 2 else kwargs.get("key")
    scaling = kwargs.get("scaling", args[5] if len(args) > 5 else None)
    return module, query, key, scaling


def _wrap(fn: Callable) -> Callable:
    """The attention function ``fn`` with q/k recording for the modules in _TARGETS."""
    if fn in _WRAPPED:
        return _WRAPPED[fn]

    @functools.wraps(fn)
    def recording(*args: Any, **kwargs: Any) -> Any:
        module, query, key, scaling = _call_args(args, kwargs)
        entry = _TARGETS.get(id(module))
        if entry is not None and query is not None and key is not None:
            if scaling is None:
                scaling = getattr(module, "scaling", query.shape[-1] ** -0.5)
            entry[0].record(entry[1], query, key, scaling)
        return fn(*args, **kwargs)

    _WRAPPED[fn] = recording
    return recording


def _install_patch() -> None:
    """Patch AttentionInterface.get_interface (class level, so local instances are covered too)."""
    from transformers.modeling_utils import AttentionInterface

    if _PATCH["depth"] == 0:
        orig = AttentionInterface.get_interface
        _PATCH["orig"] = orig

        def get_interface(self: Any, attn_implementation: str, default: Callable) -> Callable:
            return _wrap(orig(self, attn_implementation, default))

        AttentionInterface.get_interface = get_interface
    _PATCH["depth"] += 1


def _remove_patch() -> None:
    from transformers.modeling_utils import AttentionInterface

    _PATCH["depth"] -= 1
    if _PATCH["depth"] == 0:
        AttentionInterface.get_interface = _PATCH["orig"]
        _PATCH["orig"] = None


@contextmanager
def capture_qk(model: nn.Module, layers: Sequence[int] | None = None) -> Iterator[QKCapture]:
    """Record detached post-RoPE q and k of the chosen decoder layers during any forward run inside
    the context (no_grad or training). The capture happens inside the attention call, so LoRA
    deltas (peft) are included and ZeRO-3 parameters are gathered at that moment.

    Hook: transformers' ``AttentionInterface.get_interface`` is wrapped for the context's lifetime;
    the attention function it returns records (query, key, scaling) when called by one of the
    chosen modules and is otherwise a pass-through. Raises AttentionCaptureError when the model
    has no HF attention modules; ``QKCapture.ordered`` raises when a layer was not captured.
    """
    mods = find_attention_modules(model)
    if not mods:
        raise AttentionCaptureError(
            f"no attention modules (class name *Attention with layer_idx) in {type(model).__name__}"
        )
    chosen = list(default_layers(len(mods)) if layers is None else layers)
    bad = [i for i in chosen if not 0 <= i < len(mods)]
    if bad:
        raise ValueError(f"layers {bad} out of range for a model with {len(mods)} layers")
    cap = QKCapture(layers=chosen)
    with _LOCK:
        _install_patch()
        for i in chosen:
            _TARGETS[id(mods[i])] = (cap, i)
    try:
        yield cap
    finally:
        with _LOCK:
            for i in chosen:
                if _TARGETS.get(id(mods[i]), (None,))[0] is cap:
                    del _TARGETS[id(mods[i])]
            _remove_patch()


def _layer_head_stats(
    q: Tensor,
    k: Tensor,
    scaling: float,
    n_valid: int,
    window: int,
    fai_lo: int,
    fai_hi: int,
    chunk: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-head statistics of one sequence's layer, rows processed ``chunk`` at a time.

    q [Hq, N, d], k [Hkv, N, d] (GQA: query head h uses kv head h // (Hq/Hkv), as HF repeat_kv).
    Returns float32 [Hq, n_valid] each: dist[t] = Σ_s A[t,s](t−s), wdist[t] = Σ_s A[t,s]
    min(t−s, W), band[s] = Σ_{t: fai_lo <= t−s <= fai_hi, t < n_valid} A[t,s]. The largest
    temporaries are a few [Hq, chunk, n_valid] float32 tensors.
    """
    hq, hkv, dim = q.shape[0], k.shape[0], q.shape[-1]
    if hq % hkv:
        raise ValueError(f"{hq} query heads are not a multiple of {hkv} key heads")
    rep = hq // hkv
    kf = k[:, :n_valid].float().unsqueeze(1)  # [Hkv, 1, n, d]
    dist = q.new_zeros((hq, n_valid), dtype=torch.float32)
    wdist, band = torch.zeros_like(dist), torch.zeros_like(dist)
    pos = torch.arange(n_valid, device=q.device, dtype=torch.float32)
    for t0 in range(0, n_valid, chunk):
        t1 = min(n_valid, t0 + chunk)
        qc = q[:, t0:t1].float().reshape(hkv, rep, t1 - t0, dim)
        scores = torch.matmul(qc, kf[:, :, :t1].transpose(-1, -2)).reshape(hq, t1 - t0, t1)
        lag = pos[t0:t1, None] - pos[None, :t1]  # t − s, [c, t1]
        probs = torch.softmax((scores * scaling).masked_fill(lag < 0, -math.inf), dim=-1)
        dist[:, t0:t1] = (probs * lag.clamp(min=0)).sum(-1)
        wdist[:, t0:t1] = (probs * lag.clamp(0, window)).sum(-1)
        in_band = ((lag >= fai_lo) & (lag <= fai_hi)).to(probs.dtype)
        band[:, :t1] += (probs * in_band).sum(1)
    return dist, wdist, band


def _select_heads(d: Tensor, local_frac: float, global_frac: float) -> tuple[Tensor, Tensor]:
    """Indices of the local (smallest d) and global (largest d) heads; ties keep (layer, head)
    order because the sorts are stable."""
    h = d.numel()
    n_loc, n_glob = max(1, math.floor(local_frac * h)), max(1, math.floor(global_frac * h))
    loc = torch.sort(d, stable=True).indices[:n_loc]
    glob = torch.sort(d, descending=True, stable=True).indices[:n_glob]
    return loc, glob


def _band_counts(n_valid: int, fai_lo: int, fai_hi: int, device: torch.device) -> Tensor:
    """|[s+fai_lo, min(n_valid−1, s+fai_hi)]| for s < n_valid (0 when empty)."""
    s = torch.arange(n_valid, device=device)
    hi = torch.clamp(s + fai_hi, max=n_valid - 1)
    return (hi - (s + fai_lo) + 1).clamp(min=0).to(torch.float32)


def _valid_lengths(attention_mask: Tensor | None, batch: int, n: int) -> list[int]:
    """Per-row valid length; the mask must be right-padded (ones then zeros)."""
    if attention_mask is None:
        return [n] * batch
    m = attention_mask.to(torch.bool)
    lengths = m.sum(-1)
    prefix = torch.arange(n, device=m.device)[None, :] < lengths[:, None]
    if not torch.equal(m, prefix):
        raise ValueError("attention_mask must be right-padded (ones, then zeros) for each row")
    return [int(x) for x in lengths.tolist()]


def signals_from_qk(
    qs: Sequence[Tensor],
    ks: Sequence[Tensor],
    response_start: Sequence[int],
    *,
    scalings: Sequence[float] | float | None = None,
    attention_mask: Tensor | None = None,
    **knobs: Any,
) -> dict[str, Tensor]:
    """WAAD and FAI [B, N] (float32, 0 at padding) from captured post-RoPE q [B, Hq, N, d] and
    k [B, Hkv, N, d] of the chosen layers (arXiv 2510.13554; definitions in the module docstring).

    ``knobs``: the fields of :class:`SignalKnobs` (an unknown one is a TypeError). Heads are
    classified per batch row on that row's d_h. ``scalings``: per layer (or one value)
    score scale; None = d**-0.5. Also returns "look_back" [B, H_total], the d_h of every head.
    A row whose response is empty (response_start >= valid length) gets d_h = 0 for all heads.
    """
    kn = SignalKnobs(**knobs)
    if len(qs) != len(ks) or not qs:
        raise ValueError("need one (q, k) pair per chosen layer")
    batch, n = qs[0].shape[0], qs[0].shape[2]
    if len(response_start) != batch:
        raise ValueError(f"{len(response_start)} response starts for a batch of {batch}")
    if scalings is None or isinstance(scalings, (int, float)):
        scalings = [scalings or qs[0].shape[-1] ** -0.5] * len(qs)
    lengths = _valid_lengths(attention_mask, batch, n)
    waad = torch.zeros((batch, n), dtype=torch.float32, device=qs[0].device)
    fai, look_back = torch.zeros_like(waad), []
    with torch.no_grad():
        for b, (nv, r) in enumerate(zip(lengths, map(int, response_start), strict=True)):
            band_kw = (kn.window, kn.fai_lo, kn.fai_hi, kn.chunk_size)
            stats = [
                _layer_head_stats(q[b], k[b], sc, nv, *band_kw)
                for q, k, sc in zip(qs, ks, scalings, strict=True)
            ]
            dist, wdist, band = (torch.cat(x, dim=0) for x in zip(*stats, strict=True))
            d = dist[:, r:nv].mean(-1) if r < nv else dist.new_zeros(dist.shape[0])
            loc, glob = _select_heads(d, kn.local_frac, kn.global_frac)
            waad[b, :nv] = wdist[loc].mean(0)
            counts = _band_counts(nv, kn.fai_lo, kn.fai_hi, band.device)
            fai[b, :nv] = torch.where(counts > 0, band[glob].mean(0) / counts.clamp(min=1), 0.0)
            look_back.append(d)
    return {"waad": waad, "fai": fai, "look_back": torch.stack(look_back)}


def _forward_target(model: nn.Module) -> nn.Module:
    """The module to call: the peft base model when wrapped (its layers carry the LoRA deltas)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def attention_signals(
    model: nn.Module,
    input_ids: Tensor,
    response_start: list[int],
    *,
    layers: list[int] | None = None,
    attention_mask: Tensor | None = None,
    **knobs: Any,
) -> dict:
    """One no-grad forward over prompt ⊕ response inside ``capture_qk``, then ``signals_from_qk``
    with ``knobs`` (the fields of :class:`SignalKnobs`).

    input_ids [B, N] (right padding allowed, with ``attention_mask``); response_start[b] = index of
    row b's first response token. Default layers: ``default_layers(L)``. Returns {"waad", "fai"}
    [B, N] float32 (plus "look_back" [B, H_total]). Raises AttentionCaptureError when the model's
    attention cannot be hooked (no silent zero signals). arXiv 2510.13554.
    """
    target = _forward_target(model)
    kwargs: dict[str, Any] = {"input_ids": input_ids, "use_cache": False}
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask
    if "logits_to_keep" in inspect.signature(target.forward).parameters:
        kwargs["logits_to_keep"] = 1  # the logits are not needed: skip the [B, N, V] tensor
    with torch.no_grad(), capture_qk(model, layers) as cap:
        target(**kwargs)
        qs, ks, scalings = cap.ordered()
        out = signals_from_qk(
            qs, ks, response_start, scalings=scalings, attention_mask=attention_mask, **knobs
        )
        cap.clear()
    return out
