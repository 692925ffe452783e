"""Collating rollout samples into padded training tensors, and per-token logprobs.

Layout: each row is prompt ⊕ response, right-padded to the longest row.  Per-token tensors are
aligned with the *targets* (positions 1..L-1 of the row), so `response_mask[i, t]` marks the
positions whose target token belongs to the response; the rollout engine's logprobs and the
advantages are scattered to the same positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class TrainSample:
    """One generated sample as the trainer needs it."""

    prompt_ids: list[int]
    response_ids: list[int]
    behavior_logprobs: list[float]
    advantage: float | list[float]
    ref_logprobs: list[float] | None = None
    old_logprobs: list[float] | None = None  # π_old, filled by the trainer for PPO epochs


def collate(samples: list[TrainSample], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad samples into input_ids/attention_mask [b, L] and target-aligned [b, L-1] tensors."""
    b = len(samples)
    L = max(len(s.prompt_ids) + len(s.response_ids) for s in samples)
    input_ids = torch.full((b, L), pad_id, dtype=torch.long)
    attn = torch.zeros((b, L), dtype=torch.long)
    mask = torch.zeros((b, L - 1))
    behavior = torch.zeros((b, L - 1))
    adv = torch.zeros((b, L - 1))
    ref = torch.zeros((b, L - 1))
    old = torch.zeros((b, L - 1)) if samples[0].old_logprobs is not None else None
    for i, s in enumerate(samples):
        row = s.prompt_ids + s.response_ids
        input_ids[i, : len(row)] = torch.tensor(row)
        attn[i, : len(row)] = 1
        lo, hi = len(s.prompt_ids) - 1, len(row) - 1  # target positions of the response
        mask[i, lo:hi] = 1.0
        behavior[i, lo:hi] = torch.tensor(s.behavior_logprobs[: hi - lo], dtype=torch.float32)
        adv[i, lo:hi] = torch.as_tensor(s.advantage, dtype=torch.float32)
        if s.ref_logprobs is not None:
            ref[i, lo:hi] = torch.tensor(s.ref_logprobs, dtype=torch.float32)
        if old is not None:
            old[i, lo:hi] = torch.tensor(s.old_logprobs, dtype=torch.float32)
    batch = {
        "input_ids": input_ids,
        "attention_mask": attn,
        "response_mask": mask,
        "behavior_logprobs": behavior,
        "advantages": adv,
        "ref_logprobs": ref,
    }
    if old is not None:
        batch["old_logprobs"] = old
    return batch


def token_logprobs(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """log π(x_{t+1} | x_≤t) for every target position, and the logits (for entropy)."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    logp = torch.log_softmax(logits, dim=-1)
    return logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1), logits


def split_even(items: list, parts: int) -> list[list]:
    """Contiguous split into `parts` equal chunks (caller guarantees divisibility)."""
    k = len(items) // parts
    return [items[i * k : (i + 1) * k] for i in range(parts)]


def chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]
