"""The forward of a micro-batch: per-token log-probs (and entropy) of its targets.

`micro_batch_forward` runs a micro-batch built by rlkit.engines.micro_batches (padded or
packed) through the model and returns its values in the padded, target-aligned layout the loss
terms read.  The log-softmax is chunked (`chunked_logprobs`): never a [B, L, V] float tensor.

Imports torch and rlkit.engines.micro_batches only (no deepspeed / ray / vllm).
"""

from __future__ import annotations

from typing import Any

import torch

from rlkit.engines.micro_batches import MicroBatch


def micro_batch_forward(
    model: Any, mb: MicroBatch, *, entropy: str = "none"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(logp, logits, ent) of one micro-batch: logp / ent [b, L-1] in `mb.batch`'s padded
    layout (zero on prompt positions), logits [b | 1, kept positions, V] (only the response
    positions' logits are computed: `forward_logprobs`' `keep`).  The inputs go to the model's
    device; `mb.batch` stays where `collate` made it."""
    dev = _device_of(model)
    attn = None if mb.attention_mask is None else mb.attention_mask.to(dev)
    pos = None if mb.position_ids is None else mb.position_ids.to(dev)
    logp, logits, ent = forward_logprobs(
        model, mb.input_ids.to(dev), attn, position_ids=pos, entropy=entropy, keep=mb.keep
    )
    return mb.to_padded(logp), logits, None if ent is None else mb.to_padded(ent)


# Sequence positions per chunk of the log-prob pass: [B, chunk, V] float temporaries at most.
LOGPROB_CHUNK = 64


def token_logprobs(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """log π(x_{t+1} | x_≤t) for every target position, and the logits (for entropy)."""
    logp, logits, _ = forward_logprobs(model, input_ids, attention_mask)
    return logp, logits


def forward_logprobs(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    entropy: str = "none",
    chunk: int = LOGPROB_CHUNK,
    position_ids: torch.Tensor | None = None,
    keep: torch.Tensor | None = None,
):
    """One forward: `(logp, logits, ent)`, logp/ent [B, L-1] target-aligned by
    `chunked_logprobs` (ent None unless `entropy` is "no_grad" or "grad").

    `keep` (ascending target positions): the LM head and the log-softmax run only there
    (transformers' `logits_to_keep`, as TRL keeps only the completion's logits), so prompt
    positions cost no [V]-wide work; logp/ent are zero elsewhere and the returned logits are
    [B, len(keep), V].  None: every position, logits [B, L-1, V].  For SmolLM2 GRPO (prompts
    of ~47 tokens, responses <= 64) that skips ~40 % of the positions.
    `position_ids` only for packed rows (rlkit.engines.micro_batches; then `attention_mask` None
    and no KV cache: transformers infers the sequence boundaries only without a cache)."""
    kw: dict[str, Any] = {}
    if position_ids is not None:
        kw.update(position_ids=position_ids, use_cache=False)
    if keep is None:
        logits = model(input_ids=input_ids, attention_mask=attention_mask, **kw).logits[:, :-1]
        return _with_logits(logits, input_ids[:, 1:], entropy, chunk)
    keep = keep.to(input_ids.device)
    out = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep, **kw)
    logp, logits, ent = _with_logits(out.logits, input_ids[:, keep + 1], entropy, chunk)
    width = input_ids.shape[1] - 1
    return _spread(logp, keep, width), logits, None if ent is None else _spread(ent, keep, width)


def _with_logits(logits: torch.Tensor, targets: torch.Tensor, entropy: str, chunk: int):
    logp, ent = chunked_logprobs(logits, targets, entropy=entropy, chunk=chunk)
    return logp, logits, ent


def _spread(values: torch.Tensor, at: torch.Tensor, width: int) -> torch.Tensor:
    """[B, K] values of positions `at` -> [B, width], zero elsewhere (differentiable)."""
    index = at[None].expand(values.shape[0], -1)
    return values.new_zeros(values.shape[0], width).scatter(1, index, values)


def chunked_logprobs(
    logits: torch.Tensor, targets: torch.Tensor, *, entropy: str = "none", chunk: int = 64
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log p(target) = z_target − logsumexp(z), chunk by chunk over the sequence.

    Never forms the [B, L, V] log-softmax: each chunk's float copy of the logits and its
    softmax are [B, chunk, V] temporaries; the backward (∂log p_t/∂z = onehot_t − softmax(z))
    writes the logits' gradient chunk by chunk from the saved [B, L] logsumexp.  `entropy`:
    "none"; "no_grad" (the metric, detached, from the same pass); "grad" (a loss term
    differentiates it: a second, autograd pass).  H = lse − Σ_v p_v z_v with p = exp(z − lse)
    (the form of verl's `entropy_from_logits`, finite for any logits)."""
    if logits.shape[1] == 0:  # no target position at all
        return logits.new_zeros(logits.shape[:2], dtype=torch.float32), None
    logp, ent = _ChunkedLogProbs.apply(logits, targets, chunk, entropy == "no_grad")
    if entropy == "grad":
        ent = torch.cat([_entropy(z.float()) for z in logits.split(chunk, dim=1)], dim=1)
    return logp, (ent if entropy != "none" else None)


def _entropy(z: torch.Tensor) -> torch.Tensor:
    lse = torch.logsumexp(z, dim=-1)
    return lse - (torch.exp(z - lse.unsqueeze(-1)) * z).sum(-1)


class _ChunkedLogProbs(torch.autograd.Function):
    """(logits [B, L, V], targets [B, L]) -> (log p(target) [B, L], detached H or empty)."""

    @staticmethod
    def forward(ctx, logits, targets, chunk: int, with_entropy: bool):  # type: ignore[override]
        b, n = targets.shape
        f32 = {"dtype": torch.float32, "device": logits.device}
        logp, lse_all = torch.empty(b, n, **f32), torch.empty(b, n, **f32)
        ent = torch.empty(b, n if with_entropy else 0, **f32)
        for s in range(0, n, chunk):
            z = logits[:, s : s + chunk].float()
            if with_entropy:  # one exp pass for both: lse = m + log Σe, H = lse − Σ e·z / Σe
                m = z.amax(-1, keepdim=True)
                e = (z - m).exp_()
                total = e.sum(-1)
                lse = m[..., 0] + total.log()
                ent[:, s : s + chunk] = lse - (e.mul_(z)).sum(-1) / total
            else:
                lse = torch.logsumexp(z, dim=-1)
            lse_all[:, s : s + chunk] = lse
            logp[:, s : s + chunk] = z.gather(-1, targets[:, s : s + chunk, None])[..., 0] - lse
        ctx.save_for_backward(logits, targets, lse_all)
        ctx.chunk = chunk
        ctx.mark_non_differentiable(ent)
        return logp, ent

    @staticmethod
    def backward(ctx, g_logp, _g_ent):  # type: ignore[override]
        logits, targets, lse_all = ctx.saved_tensors
        grad = torch.empty_like(logits)
        c = ctx.chunk
        for s in range(0, targets.shape[1], c):
            g = g_logp[:, s : s + c].float()
            z = logits[:, s : s + c].float()
            gz = (z - lse_all[:, s : s + c].unsqueeze(-1)).exp_().mul_(-g.unsqueeze(-1))
            gz.scatter_add_(-1, targets[:, s : s + c, None], g.unsqueeze(-1))
            grad[:, s : s + c] = gz
        return grad, None, None, None


def _device_of(model: Any) -> torch.device:
    """Where the model's parameters live (a plain module or the DeepSpeed engine)."""
    params = getattr(model, "parameters", None)
    p = next(params(), None) if params is not None else None
    return p.device if p is not None else torch.device("cpu")
