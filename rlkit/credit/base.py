"""The objects every credit stage shares: the batch it edits and the services it may call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from rlkit.algos.registry import Registry
from rlkit.engines.train_batch import TrainSample

CREDIT_STAGES: Registry = Registry("credit stage")


def register_credit_stage(name: str, *, override: bool = False):
    """Register a credit stage class: `cls(cfg: RecipeConfig, **knobs)` with
    `run(batch: CreditBatch, services: Services) -> None`."""
    return CREDIT_STAGES.register(name, override=override)


@dataclass
class CreditBatch:
    """One training step's groups being turned into samples.

    `samples` are in group-id order (group 0's samples first); `rewards`, `group_ids` are [B];
    `mask` is [B, T] over response tokens (T = longest response): True on the tokens that are
    trained, False on environment tokens (a completion's `loss_mask` 0) and past the end.
    Stages fill `values` ([M, B, T] critic values), `token_penalties` (β·KL per token, KL in
    the reward), `estimator_kw` (extra inputs of the advantage estimator, e.g. VPS beliefs), the
    samples' streams, `stats` (logged) and `extra_refs` (Ray refs the step must wait for, e.g.
    the critic update)."""

    groups: list
    samples: list[TrainSample]
    rewards: torch.Tensor
    group_ids: torch.Tensor
    mask: torch.Tensor
    stats: dict[str, float] = field(default_factory=dict)
    values: torch.Tensor | None = None
    token_penalties: torch.Tensor | None = None
    estimator_kw: dict[str, Any] = field(default_factory=dict)
    extra_refs: list = field(default_factory=list)

    @property
    def lengths(self) -> list[int]:
        return [len(s.response_ids) for s in self.samples]

    @property
    def flat(self) -> list[tuple[Any, Any]]:
        """(group, rollout sample) pairs in batch order."""
        return [(g, g.samples[j]) for g in self.groups for j in range(g.size)]

    def padded(self, rows: list[list[float]]) -> torch.Tensor:
        """Per-response lists -> [B, T] (zeros past each response's end)."""
        out = torch.zeros(self.mask.shape, dtype=torch.float32)
        for i, row in enumerate(rows):
            n = min(len(row), out.shape[1])
            out[i, :n] = torch.tensor(row[:n], dtype=torch.float32)
        return out

    def set_stream(self, name: str, values: torch.Tensor) -> None:
        """Give every sample its row of `values` as stream `name`: [B, T] per token, or [B] one
        value broadcast over the sample's tokens."""
        per_token = values.dim() == 2
        for i, (s, n) in enumerate(zip(self.samples, self.lengths)):
            s.streams[name] = values[i, :n].tolist() if per_token else float(values[i])


@dataclass
class Services:
    """What stages may call: the reference model, the critic group and the rollout workers'
    prefill-only probe jobs.  Every call is blocking from the stage's point of view; the
    pipeline itself runs off the rollout loop's thread."""

    reference: Any = None
    critic: Any = None
    probe: Any = None  # callable(sequences, starts) -> per-sequence logprob lists
    model_path: str | None = None  # the run's initial HF folder (tokenizer, HF copies)
