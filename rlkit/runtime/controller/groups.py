"""Groups of samples (one prompt, G responses): the scheduling and staleness unit.

Requests are made by the rollout strategy (rlkit.runtime.controller.strategies) and training
samples by the credit pipeline (rlkit.credit); both order by group id, so the synchronous loop
and the asynchronous controller build the very same requests and batches (alpha = 0 reproducible).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlkit.engines.rollout_protocol import Completion


@dataclass
class Prompt:
    """A dataset row ready for generation: token ids, text, and the fields rewards receive."""

    index: int
    text: str
    token_ids: list[int]
    fields: dict[str, Any]


@dataclass
class Sample:
    """A finished sample with its reward (filled in when the reward arrives)."""

    index: int
    completion: Completion
    start_version: int
    reward: float | None = None
    components: dict[str, float] = field(default_factory=dict)
    reward_failed: bool = False
    token_scores: list[float] | None = None  # process rewards, when a reward gave them
    # the fields its reward call got (prompt fields, num_tokens, strategy extras, rank): what
    # the reward audit re-scores it with (rlkit.runtime.controller.reward_audit)
    reward_fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class Group:
    """G samples of one prompt; `requests` are the ids of its requests still in flight."""

    group_id: int
    prompt: Prompt
    size: int
    start_version: int
    worker: int
    samples: dict[int, Sample] = field(default_factory=dict)
    requests: set[str] = field(default_factory=set)

    @property
    def generated(self) -> bool:
        return len(self.samples) == self.size

    @property
    def done(self) -> bool:
        return self.generated and all(s.reward is not None for s in self.samples.values())
