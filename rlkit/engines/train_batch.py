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


def forward_logprobs(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    entropy: str = "none",
    chunk: int = LOGPROB_CHUNK,
):
    """One forward: `(logp, logits, ent)`, logp/ent by `chunked_logprobs` (ent None unless
    `entropy` is "no_grad" or "grad"); the logits are the model's output, target-aligned."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
    logp, ent = chunked_logprobs(logits, input_ids[:, 1:], entropy=entropy, chunk=chunk)
    return logp, logits, ent


def chunked_logprobs(
    logits: torch.Tensor, targets: torch.Tensor, *, entropy: str = "none", chunk: int = 64
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log p(target) = z_target − logsumexp(z), chunk by chunk over the sequence.

    Never forms the [B, L, V] log-softmax: each chunk's float copy of the logits and its
    softmax are [B, chunk, V] temporaries, and autograd keeps only the logsumexp's [B, chunk]
    result (its backward re-reads the logits).  `entropy`: "none"; "no_grad" (the metric,
    detached); "grad" (a loss term differentiates it).  H = lse − Σ_v p_v z_v, p = exp(z − lse)
    (the form of verl's `entropy_from_logits`, finite for any logits)."""
    lps, ents = [], []
    for s in range(0, logits.shape[1], chunk):
        z = logits[:, s : s + chunk].float()
        lse = torch.logsumexp(z, dim=-1)
        lps.append(z.gather(-1, targets[:, s : s + chunk].unsqueeze(-1)).squeeze(-1) - lse)
        if entropy != "none":
            with torch.set_grad_enabled(entropy == "grad" and torch.is_grad_enabled()):
                zz = z if entropy == "grad" else z.detach()
                ll = lse if entropy == "grad" else lse.detach()
                p = torch.exp(zz - ll.unsqueeze(-1))
                ents.append(ll - (p * zz).sum(-1))
    if not lps:  # no target position at all
        return logits.new_zeros(logits.shape[:2], dtype=torch.float32), None
    return torch.cat(lps, dim=1), (torch.cat(ents, dim=1) if ents else None)


def split_even(items: list, parts: int) -> list[list]:
    """Contiguous split into `parts` equal chunks (caller guarantees divisibility)."""
    k = len(items) // parts
    return [items[i * k : (i + 1) * k] for i in range(parts)]


def chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]
