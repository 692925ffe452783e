"""The sample the trainer receives, and its padded tensor layout.

A training step's samples go forward through three modules: this one (what a sample is,
`collate` into padded tensors), rlkit.engines.micro_batches (which samples form a micro-batch,
and its model inputs, padded or packed), rlkit.engines.logprobs (the forward: per-token
log-probs and entropy of a micro-batch).

Layout: each row is prompt ⊕ response, right-padded to the longest row.  Per-token tensors are
aligned with the *targets* (positions 1..L-1 of the row), so `response_mask[i, t]` marks the
positions whose target token is a *trained* response token; the rollout engine's logprobs and
the advantages are scattered to the same positions.

Loss mask.  A multi-turn response interleaves model turns and environment turns (tool output,
user messages: rlkit.engines.rollout_protocol.Completion.loss_mask).  Environment tokens stay in
the row (they are the context the later model tokens were generated in) but their
`response_mask` entry is 0, so every consumer of the mask (policy loss, KL, entropy, the
aggregation normalisers, value loss, token hooks) leaves them out, as verl's `response_mask`
(1 = model token, 0 = tool token) does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import InitVar, dataclass, field

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

    `loss_mask`: one 0/1 per response token, 0 for the tokens an environment wrote (never
    trained; their `behavior_logprobs` entries are placeholders); None = every token is the
    model's.
    """

    prompt_ids: list[int]
    response_ids: list[int]
    behavior_logprobs: list[float]
    advantage: InitVar[float | list[float]] = 0.0
    streams: dict[str, float | list[float]] = field(default_factory=dict)
    loss_mask: list[int] | None = None

    def __post_init__(self, advantage: float | list[float]) -> None:
        self.streams.setdefault(ADVANTAGES, advantage)
        if self.loss_mask is not None:
            if len(self.loss_mask) != len(self.response_ids):
                raise ValueError(
                    f"loss_mask has {len(self.loss_mask)} entries for "
                    f"{len(self.response_ids)} response tokens"
                )
            self.loss_mask = [int(bool(m)) for m in self.loss_mask]

    def trained_mask(self) -> list[int]:
        """1 per response token that is trained (the model's), 0 per environment token."""
        return [1] * len(self.response_ids) if self.loss_mask is None else list(self.loss_mask)

    @property
    def num_trained(self) -> int:
        """Response tokens that are trained: the token count the loss normalisers use."""
        return len(self.response_ids) if self.loss_mask is None else sum(self.loss_mask)

    @property
    def ref_logprobs(self) -> list[float] | None:
        return self.streams.get("ref_logprobs")  # type: ignore[return-value]

    @property
    def old_logprobs(self) -> list[float] | None:
        return self.streams.get("old_logprobs")  # type: ignore[return-value]


def collate(samples: list[TrainSample], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad samples into input_ids/attention_mask [b, L] and target-aligned [b, L-1] tensors.

    Every stream becomes a [b, L-1] tensor of the same name, zero outside the response; all
    samples of one batch must carry the same stream names.  `response_mask` is each sample's
    `trained_mask()`: 0 on prompt, padding and environment tokens."""
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
        frame["response_mask"][i, lo:hi] = torch.tensor(s.trained_mask(), dtype=torch.float32)
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


def split_even(items: list, parts: int) -> list[list]:
    """Contiguous split into `parts` equal chunks (caller guarantees divisibility)."""
    k = len(items) // parts
    return [items[i * k : (i + 1) * k] for i in range(parts)]


def longest_first(lengths: Sequence[int]) -> list[int]:
    """Indices of `lengths`, longest first (ties in index order)."""
    return sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))


def deal_by_length(items: list, parts: int, lengths: list[int]) -> list[list]:
    """`items` dealt round-robin into `parts` equal lists, longest first (`lengths[i]`):
    every part gets rows of every length, so ranks that synchronise in every backward pass
    (ZeRO reduces gradients there) wait little for each other.  As verl balances sequence
    lengths across data-parallel ranks (`_balance_batch`).  Caller guarantees divisibility."""
    order = longest_first(lengths)
    return [[items[i] for i in order[r::parts]] for r in range(parts)]


def chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]
