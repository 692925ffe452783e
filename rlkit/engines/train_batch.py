"""Collating rollout samples into padded training tensors, and per-token logprobs.

Layout: each row is prompt ⊕ response, right-padded to the longest row.  Per-token tensors are
aligned with the *targets* (positions 1..L-1 of the row), so `response_mask[i, t]` marks the
positions whose target token belongs to the response; the rollout engine's logprobs and the
advantages are scattered to the same positions.
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field
from typing import Any

import torch

# Streams every sample carries under these names (the credit stage fills `advantages`; the
# reference and the trainer fill the logprob streams when a loss term needs them).
ADVANTAGES = "advantages"


@dataclass
class TrainSample:
    """One generated sample as the trainer needs it.

    `streams` are named per-token values over the response (a float broadcasts to every token):
    `advantages` always; `ref_logprobs`, `old_logprobs`, loss weights (`adv_weight`) and masks
    (`adv_mask`, `entropy_mask`) when a credit stage or trainer hook produces them.  The trainer
    collates them by name without knowing which algorithm made them.
    """

    prompt_ids: list[int]
    response_ids: list[int]
    behavior_logprobs: list[float]
    advantage: InitVar[float | list[float]] = 0.0
    streams: dict[str, float | list[float]] = field(default_factory=dict)

    def __post_init__(self, advantage: float | list[float]) -> None:
        self.streams.setdefault(ADVANTAGES, advantage)

    @property
    def ref_logprobs(self) -> list[float] | None:
        return self.streams.get("ref_logprobs")  # type: ignore[return-value]

    @property
    def old_logprobs(self) -> list[float] | None:
        return self.streams.get("old_logprobs")  # type: ignore[return-value]


def collate(samples: list[TrainSample], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad samples into input_ids/attention_mask [b, L] and target-aligned [b, L-1] tensors.

    Every stream becomes a [b, L-1] tensor of the same name, zero outside the response; all
    samples of one batch must carry the same stream names."""
    b = len(samples)
    L = max(len(s.prompt_ids) + len(s.response_ids) for s in samples)
    names = sorted(samples[0].streams)
    for s in samples:
        if sorted(s.streams) != names:
            raise ValueError(
                f"samples of one batch carry different streams: {names} vs {sorted(s.streams)}"
            )
    input_ids = torch.full((b, L), pad_id, dtype=torch.long)
    attn = torch.zeros((b, L), dtype=torch.long)
    frame = {k: torch.zeros((b, L - 1)) for k in ("response_mask", "behavior_logprobs", *names)}
    for i, s in enumerate(samples):
        row = s.prompt_ids + s.response_ids
        input_ids[i, : len(row)] = torch.tensor(row)
        attn[i, : len(row)] = 1
        lo, hi = len(s.prompt_ids) - 1, len(row) - 1  # target positions of the response
        frame["response_mask"][i, lo:hi] = 1.0
        frame["behavior_logprobs"][i, lo:hi] = torch.tensor(
            s.behavior_logprobs[: hi - lo], dtype=torch.float32
        )
        for k in names:
            frame[k][i, lo:hi] = torch.as_tensor(s.streams[k], dtype=torch.float32)
    return {"input_ids": input_ids, "attention_mask": attn, **frame}


def response_values(values: torch.Tensor, samples: list[TrainSample]) -> list[list[float]]:
    """The inverse of `collate` for one [b, L-1] tensor: each sample's response positions."""
    out = []
    for i, s in enumerate(samples):
        lo = len(s.prompt_ids) - 1
        out.append(values[i, lo : lo + len(s.response_ids)].tolist())
    return out


# Sequence positions per chunk of the log-prob pass: [B, chunk, V] float temporaries at most.
LOGPROB_CHUNK = 64


def token_logprobs(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """log π(x_{t+1} | x_≤t) for every target position, and the logits (for entropy)."""
    logp, logits, _ = forward_logprobs(model, input_ids, attention_mask)
    return logp, logits


def response_targets(samples: list[TrainSample]) -> torch.Tensor:
    """Target positions (of the `collate` layout) from the first one any response occupies to
    the last column: the only logits a training forward reads."""
    width = max(len(s.prompt_ids) + len(s.response_ids) for s in samples) - 1
    return torch.arange(max(0, min(len(s.prompt_ids) for s in samples) - 1), width)


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
    `position_ids` only for packed rows (rlkit.engines.packing; then `attention_mask` None and no
    KV cache: transformers infers the sequence boundaries only without a cache)."""
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


def split_even(items: list, parts: int) -> list[list]:
    """Contiguous split into `parts` equal chunks (caller guarantees divisibility)."""
    k = len(items) // parts
    return [items[i * k : (i + 1) * k] for i in range(parts)]


def chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]
