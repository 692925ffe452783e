"""One multi-turn trajectory: the token stream after the prompt, its loss mask and its limits."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rlkit.engines.rollout_protocol import Completion


@dataclass(frozen=True)
class Limits:
    """Per trajectory: model turns, response tokens (model + environment) and wall time
    (0 = no limit); per turn: the rollout's `max_tokens`."""

    max_turns: int = 4
    max_total_tokens: int = 0
    wall_time_s: float = 0.0


@dataclass
class Trajectory:
    """Everything after the prompt, in order: model turns (mask 1, their sampled log-probs) and
    environment turns (mask 0, log-prob 0.0)."""

    group_id: int
    index: int
    env: Any
    prompt_ids: list[int]
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    loss_mask: list[int] = field(default_factory=list)
    turns: int = 0
    env_reward: float = 0.0
    pending: Any = None  # the model turn in flight (a SampleRequest), None between turns
    started: float = field(default_factory=time.perf_counter)

    def add_model_turn(self, completion: Completion) -> None:
        self.token_ids += completion.token_ids
        self.logprobs += list(completion.logprobs)
        self.loss_mask += [1] * len(completion.token_ids)
        self.turns += 1

    def add_env_turn(self, ids: list[int]) -> None:
        self.token_ids += ids
        self.logprobs += [0.0] * len(ids)
        self.loss_mask += [0] * len(ids)

    def room(self, limits: Limits, max_model_len: int) -> int:
        """Response tokens still allowed (the trajectory cap and the engine's context)."""
        cap = max_model_len - len(self.prompt_ids)
        if limits.max_total_tokens:
            cap = min(cap, limits.max_total_tokens)
        return cap - len(self.token_ids)

    def out_of_time(self, limits: Limits) -> bool:
        return bool(limits.wall_time_s) and time.perf_counter() - self.started > limits.wall_time_s

    def completion(self, text: str, finish_reason: str) -> Completion:
        return Completion(
            list(self.token_ids),
            list(self.logprobs),
            text=text,
            finish_reason=finish_reason,
            loss_mask=list(self.loss_mask),
            turns=self.turns,
        )

    @property
    def model_tokens(self) -> int:
        return sum(self.loss_mask)
