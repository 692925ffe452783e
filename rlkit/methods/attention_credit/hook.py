"""The ``attention_credit`` trainer token hook (arXiv 2510.13554, "preplan-and-anchor").

Reads the policy's own attention during the training forward (no second forward): the trainer
runs ``with hook.capture(model): logp, logits = token_logprobs(...)``, which records the detached
post-RoPE queries and keys of a few middle layers (rlkit.methods.attention_credit.signals);
``hook.streams(batch)`` then computes WAAD / FAI (``signals_from_qk``) and the per-token weights
γ (``attention_gammas``) and returns them as the ``adv_weight`` stream, which the ``policy`` loss
term multiplies into the advantages inside both terms of the PPO min:

    Ã_t = γ_t · A_t,   γ detached, advantages of both signs (docs/algorithms.md §4).

Frames. The signals and γ live in the *input* frame (position u = token u of prompt ⊕ response);
the trainer's streams are *target-aligned* [b, L-1] (position t predicts input token t+1;
``response_mask[i, t] = 1`` for t in [len(prompt)-1, len(prompt)+len(response)-1)). Hence the
response start of row i is (first t with response_mask 1) + 1 and ``adv_weight[:, t] =
γ[:, t+1]``. Outside the response ``adv_weight`` is **1.0** (neutral; the advantages are 0 there
and the loss mask excludes those positions anyway).  Environment tokens of a multi-turn response
have ``response_mask`` 0: they are context for the attention signals but get no γ of their own
(1.0) and take no part in the ranking (rlkit.methods.attention_credit.gammas).

Several forwards per step (``mini_batches`` / ``ppo_epochs`` > 1): γ is recomputed on every
training forward from that forward's attention, i.e. the first epoch sees the policy that sampled
(π_old), later epochs the partly updated policy. Metrics are therefore means over forwards.
The captured tensors are dropped at the end of ``streams`` (before backward).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, fields
from typing import Any

import torch
from torch import Tensor

from rlkit.algos.registry import register_token_hook
from rlkit.methods.attention_credit.gammas import (
    STRATEGIES,
    GammaKnobs,
    attention_gammas,
    gamma_metrics,
)
from rlkit.methods.attention_credit.signals import (
    QKCapture,
    SignalKnobs,
    capture_qk,
    signals_from_qk,
)


def input_frame(batch: dict[str, Tensor]) -> tuple[Tensor, list[int]]:
    """(response mask in the input frame, bool [b, L]; response start per row) from a collated
    batch. Input token u is a response token iff target position u-1 is; a row without response
    tokens gets start = L (empty response)."""
    target = batch["response_mask"].to(torch.bool)
    b, n = batch["input_ids"].shape
    resp = torch.zeros((b, n), dtype=torch.bool, device=target.device)
    resp[:, 1:] = target
    has = resp.any(dim=1)
    first = torch.where(
        has, resp.to(torch.int8).argmax(dim=1), torch.full_like(has, n, dtype=torch.long)
    )
    return resp, [int(x) for x in first.tolist()]


def to_target_frame(values: Tensor) -> Tensor:
    """[b, L] input-frame values -> [b, L-1] target-aligned (position t = input token t+1)."""
    return values[:, 1:]


def _sync(t: Tensor | None) -> None:
    """Wait for queued GPU work so wall-clock timings mean something."""
    if t is not None and t.is_cuda:
        torch.cuda.synchronize(t.device)


class AttentionCreditHook:
    """TokenHook: γ from the training forward's attention -> the ``adv_weight`` stream.

    Knobs: ``layers`` (None = ``default_layers``), ``signals`` (:class:`SignalKnobs`: WAAD/FAI)
    and ``gammas`` (:class:`GammaKnobs`: γ); defaults are the paper's (docs/attention_credit.md)."""

    def __init__(
        self,
        strategy: str = "coupled",
        *,
        layers: list[int] | None = None,
        signals: SignalKnobs | None = None,
        gammas: GammaKnobs | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown attention_credit strategy {strategy!r}; one of {STRATEGIES}")
        self.strategy, self.layers = strategy, None if layers is None else list(layers)
        self.signals, self.gammas = signals or SignalKnobs(), gammas or GammaKnobs()
        self._cap: QKCapture | None = None
        self._forward_s = 0.0
        self._metrics: dict[str, float] = {}

    @contextmanager
    def _capturing(self, model: Any) -> Iterator[QKCapture]:
        self.clear()
        t0 = time.perf_counter()
        with capture_qk(model, self.layers) as cap:
            self._cap = cap
            yield cap
        if cap.qs:
            _sync(next(iter(cap.qs.values())))
        self._forward_s = time.perf_counter() - t0

    def capture(self, model: Any) -> AbstractContextManager:
        """Record q/k of the chosen layers during the forward run inside the context."""
        return self._capturing(model)

    def streams(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """{"adv_weight": γ shifted to the target frame [b, L-1], 1.0 outside the response}."""
        if self._cap is None:
            raise RuntimeError("attention_credit: streams() called without a captured forward")
        t0 = time.perf_counter()
        try:
            qs, ks, scalings = self._cap.ordered()
            resp, starts = input_frame(batch)
            with torch.no_grad():
                sig = signals_from_qk(
                    qs, ks, starts, scalings=scalings,
                    attention_mask=batch.get("attention_mask"), **asdict(self.signals),
                )  # fmt: skip
                resp = resp.to(sig["waad"].device)
                gammas = attention_gammas(
                    sig["waad"], sig["fai"], resp, self.strategy, **asdict(self.gammas)
                )
        finally:
            self.clear()
        self._metrics = self._summarise(gammas, resp, sig)
        _sync(gammas)
        signal_s = time.perf_counter() - t0
        self._metrics["attn_credit/signal_s"] = signal_s
        self._metrics["attn_credit/signal_over_forward"] = signal_s / max(self._forward_s, 1e-9)
        weight = to_target_frame(gammas).to(batch["response_mask"].device)
        return {"adv_weight": weight.to(batch["response_mask"].dtype)}

    def _summarise(self, gammas: Tensor, resp: Tensor, sig: dict[str, Tensor]) -> dict[str, float]:
        top = self.gammas.top_frac
        out = gamma_metrics(gammas, resp, waad=sig["waad"], fai=sig["fai"], top_frac=top)
        n = resp.sum().clamp(min=1)
        out["attn_credit/waad_mean"] = float((sig["waad"] * resp).sum() / n)
        out["attn_credit/fai_mean"] = float((sig["fai"] * resp).sum() / n)
        return out

    def metrics(self) -> dict[str, float]:
        """The last forward's metrics (γ statistics, set overlap, signal time)."""
        return dict(self._metrics)

    def clear(self) -> None:
        """Drop captured q/k (they pin activation memory until released)."""
        if self._cap is not None:
            self._cap.clear()
        self._cap = None


@register_token_hook("attention_credit")
def attention_credit(
    strategy: str = "coupled", layers: list[int] | None = None, **knobs: Any
) -> AttentionCreditHook:
    """The recipe's ``algo.token_hook: attention_credit`` with ``algo.token_hook_kw`` as knobs:
    strategy "preplan" | "anchor" | "coupled" (arXiv 2510.13554; docs/attention_credit.md),
    ``layers``, and the fields of :class:`SignalKnobs` and :class:`GammaKnobs` (its signature
    lists them all); an unknown knob is a TypeError naming the accepted ones."""
    unknown = sorted(set(knobs) - set(KNOBS))
    if unknown:
        raise TypeError(
            f"attention_credit got unknown knobs {unknown}; accepted: "
            f"strategy, layers, {', '.join(KNOBS)}"
        )
    signals = SignalKnobs(**{k: v for k, v in knobs.items() if KNOBS[k] is SignalKnobs})
    gammas = GammaKnobs(**{k: v for k, v in knobs.items() if KNOBS[k] is GammaKnobs})
    return AttentionCreditHook(strategy, layers=layers, signals=signals, gammas=gammas)


# knob name -> the dataclass that defines it (the one list of names and defaults)
KNOBS = {f.name: cls for cls in (SignalKnobs, GammaKnobs) for f in fields(cls)}


def _signature() -> inspect.Signature:
    """attention_credit's signature with every knob spelled out (help() and the recipe's
    token_hook_kw check read it; the knobs stay defined once, in the dataclasses)."""
    head = list(inspect.signature(attention_credit).parameters.values())[:2]
    knobs = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default)
        for cls in (SignalKnobs, GammaKnobs)
        for f in fields(cls)
    ]
    return inspect.Signature([*head, *knobs], return_annotation=AttentionCreditHook)


attention_credit.__signature__ = _signature()  # type: ignore[attr-defined]


__all__ = ["AttentionCreditHook", "attention_credit", "input_frame", "to_target_frame"]
