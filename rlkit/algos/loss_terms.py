"""The training loss as a list of configured terms, each a pure function of one forward pass.

The trainer is algorithm-blind: it collates the samples' named per-token streams, runs the
forward, lets an optional token hook add detached streams read from that same forward
(attention credit's gammas), and sums ``weight * term(ctx)`` over the configured terms (the
design of prime-rl's ``trainer/rl/loss.py``).  Every term aggregates with the recipe's mode and
the step's global normalisers, so the loss stays invariant to micro-batch and rank splits.

Shipped terms (``rlkit.algos.register_loss_term`` adds more; a recipe may also name
``path/to/file.py:function``):
    ``policy``   the registered policy loss on ``advantages`` times every present stream of
                 ``adv_streams`` (default ``adv_weight`` and ``adv_mask``): Ã_t = w_t·A_t inside
                 both terms of the PPO min (attention credit's γ, AsyPPO's advantage mask).
    ``kl``       k(log π_θ, ref_logprobs) aggregated (KL as a loss term; weight β).
    ``entropy``  −H(π_θ(·|s_t)) aggregated over the tokens where ``entropy_mask`` is set (all
                 when the stream is absent); weight = the entropy coefficient (a bonus).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from rlkit.algos.aggregation import aggregate
from rlkit.algos.entropy import entropy_from_logits
from rlkit.algos.kl import kl_penalty
from rlkit.algos.policy_losses import policy_loss
from rlkit.algos.registry import LOSS_TERMS, POLICY_LOSSES, TOKEN_HOOKS, register_loss_term


@dataclass
class LossContext:
    """What every term sees: the collated batch (all streams), this forward's log-probs and
    logits, the response mask, the aggregation mode and the step's global normalisers."""

    batch: dict[str, Tensor]
    logprobs: Tensor
    logits: Tensor
    agg: str
    norms: dict[str, float]
    _entropy: Tensor | None = field(default=None, repr=False)

    @property
    def mask(self) -> Tensor:
        return self.batch["response_mask"]

    def entropy(self, with_grad: bool) -> Tensor:
        """H per token, computed once per forward and only when a term or metric asks.

        The trainer usually passes it in (`_entropy`, from the chunked log-prob pass); else it
        is computed here chunk by chunk over the sequence, never as a [B, L, V] softmax, which
        needs logits of every target position (the trainer's forward keeps only the
        responses', rlkit.engines.logprobs.forward_logprobs)."""
        if self._entropy is None or (
            with_grad and torch.is_grad_enabled() and not self._entropy.requires_grad
        ):
            if self.logits.shape[:2] != self.mask.shape:
                raise ValueError(
                    f"LossContext.entropy: logits {tuple(self.logits.shape[:2])} do not cover the "
                    f"response mask {tuple(self.mask.shape)}; pass the entropy in (_entropy)"
                )
            with torch.set_grad_enabled(with_grad and torch.is_grad_enabled()):
                self._entropy = torch.cat(
                    [
                        entropy_from_logits(self.logits[:, s : s + 64].float())
                        for s in range(0, self.logits.shape[1], 64)
                    ],
                    dim=1,
                )
        return self._entropy

    def aggregate(self, per_token: Tensor, mask: Tensor | None = None) -> Tensor:
        return aggregate(per_token, self.mask if mask is None else mask, self.agg, **self.norms)


TermFn = Callable[..., tuple[Tensor, dict[str, float]]]


@dataclass(frozen=True)
class LossTerm:
    """One configured term: the function (by name or path), its weight and its knobs."""

    name: str
    weight: float = 1.0
    kwargs: dict[str, Any] = field(default_factory=dict)


def total_loss(terms: list[LossTerm], ctx: LossContext) -> tuple[Tensor, dict[str, float]]:
    """Σ weight·term(ctx); metrics of every term, plus `term/<name>/share` (unweighted)."""
    total = torch.zeros((), dtype=ctx.logprobs.dtype)
    metrics: dict[str, float] = {}
    for term in terms:
        value, m = LOSS_TERMS[term.name](ctx, **term.kwargs)
        total = total + term.weight * value
        metrics.update(m)
        # "/share" metrics are this micro-batch's share of a step total: summed, not averaged
        metrics[f"term/{term.name.rsplit(':', 1)[-1]}/share"] = float(value.detach())
    if "entropy/mean" not in metrics:  # logged for every run; no grad when no term uses it
        ent = ctx.entropy(with_grad=False).detach()
        metrics["entropy/mean"] = float((ent * ctx.mask).sum() / ctx.mask.sum().clamp(min=1))
    return total, metrics


@register_loss_term("policy")
def policy_term(
    ctx: LossContext,
    *,
    loss: str = "ppo",
    adv_streams: tuple[str, ...] = ("adv_weight", "adv_mask"),
    **loss_kw: Any,
) -> tuple[Tensor, dict[str, float]]:
    """The policy-gradient term: registered loss `loss` on advantages × the present weights."""
    b = ctx.batch
    adv = b["advantages"]
    for name in adv_streams:
        if name in b:
            adv = adv * b[name]
    return policy_loss(
        loss,
        logprobs=ctx.logprobs,
        old_logprobs=b.get("old_logprobs", ctx.logprobs.detach()),
        advantages=adv,
        mask=ctx.mask,
        behavior_logprobs=b["behavior_logprobs"],
        agg=ctx.agg,
        **ctx.norms,
        **loss_kw,
    )


# Its **loss_kw knobs go to the policy loss it names (check_plugins checks them against it).
policy_term.forwards_kw_to = lambda kw: POLICY_LOSSES[kw.get("loss", "ppo")]


@register_loss_term("kl")
def kl_term(ctx: LossContext, *, kind: str = "k3") -> tuple[Tensor, dict[str, float]]:
    """KL(π_θ ‖ π_ref) per token with estimator `kind`, aggregated (weight = β)."""
    value = ctx.aggregate(kl_penalty(kind, ctx.logprobs, ctx.batch["ref_logprobs"]))
    return value, {"kl/mean/share": float(value.detach())}


@register_loss_term("entropy")
def entropy_term(
    ctx: LossContext, *, mask_stream: str = "entropy_mask"
) -> tuple[Tensor, dict[str, float]]:
    """−H aggregated over the tokens of `mask_stream` (all response tokens when absent), so a
    positive weight is a bonus: loss −= coef·aggregate(H)."""
    ent = ctx.entropy(with_grad=True)
    mask = ctx.mask * ctx.batch[mask_stream] if mask_stream in ctx.batch else ctx.mask
    value = ctx.aggregate(ent, mask)
    full = ent.detach()
    metrics = {"entropy/mean": float((full * ctx.mask).sum() / ctx.mask.sum().clamp(min=1))}
    return -value, metrics


class TokenHook(Protocol):
    """A trainer-side hook reading the training forward itself (no second forward).

    `capture(model)` wraps the forward (e.g. to record a few layers' queries and keys);
    `streams(batch)` then returns detached per-token streams [b, L-1] (e.g. ``adv_weight``)
    merged into the batch before the loss terms run, and `metrics()` what it wants logged."""

    def capture(self, model: Any) -> AbstractContextManager: ...

    def streams(self, batch: dict[str, Tensor]) -> dict[str, Tensor]: ...

    def metrics(self) -> dict[str, float]: ...


class NoHook:
    """The default: captures nothing, adds nothing."""

    def capture(self, model: Any) -> AbstractContextManager:
        return nullcontext()

    def streams(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {}

    def metrics(self) -> dict[str, float]:
        return {}


def make_token_hook(spec: str | None, kwargs: dict[str, Any] | None = None) -> TokenHook:
    """The hook a recipe names (`algo.token_hook`, a registered name or a path), or NoHook."""
    if not spec:
        return NoHook()
    return TOKEN_HOOKS[spec](**(kwargs or {}))


def terms_for(algo: Any) -> list[LossTerm]:
    """The loss terms of a recipe's `algo` section.

    `algo.loss_terms` (entries `{term, weight, kwargs}`) replaces the default list, which is:
    policy (`algo.policy_loss` with `algo.loss_kw`), KL with weight `kl_beta` unless the KL is
    in the reward, entropy with weight `entropy_coef` when it is not 0."""
    if algo.loss_terms:
        return list(_iter_terms(algo.loss_terms))
    terms = [LossTerm("policy", 1.0, {"loss": algo.policy_loss, **algo.loss_kw})]
    if algo.kl_beta > 0 and not algo.kl_in_reward:
        terms.append(LossTerm("kl", algo.kl_beta, {"kind": algo.kl_kind}))
    if algo.entropy_coef:
        terms.append(LossTerm("entropy", algo.entropy_coef))
    return terms


def _iter_terms(spec: list[dict[str, Any]]) -> Iterator[LossTerm]:
    for entry in spec:
        kw = dict(entry.get("kwargs", {}))
        yield LossTerm(entry["term"], float(entry.get("weight", 1.0)), kw)
