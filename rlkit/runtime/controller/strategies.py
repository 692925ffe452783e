"""Rollout strategies: how a prompt becomes a group job on a rollout worker, and how its rewards
are asked for.

A strategy turns a group into requests for the worker's request loop and turns each finished
request back into samples of the group.  `sample` (the default) is one seeded request per sample
with per-sample rewards started the moment each finishes (ROLL Flash queue scheduling).  A
strategy whose one request yields the whole group (a request of a method's own kind, e.g. a
search whose results are the group) or that needs the whole group to score it (a ranking
reward) sets `reward_scope = "group"`: rewards are then asked for once the group is complete, in
one call, so batch reward functions see all of it.
A multi-turn strategy is one more implementation: `on_finished` may return no samples and new
requests (the next turn) instead, while other groups keep the engine busy.

Strategies are registered with `register_rollout_strategy` or named by path in
`rollout.strategy`; `rollout.strategy_kw` are their knobs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol

from rlkit.algos.registry import Registry
from rlkit.engines.rollout_protocol import Completion, SamplingConfig
from rlkit.runtime.actors.request_kinds import SampleRequest

ROLLOUT_STRATEGIES: Registry = Registry("rollout strategy")


def register_rollout_strategy(name: str, *, override: bool = False):
    """Register a strategy class `cls(sampling: SamplingConfig, seed: int, **knobs)`."""
    return ROLLOUT_STRATEGIES.register(name, override=override)


@dataclass
class Outcome:
    """What one finished request gives back: samples (index, completion) of its group, and
    follow-up requests (multi-turn) if any.  `fields`: extra reward fields per sample index (a
    multi-turn trajectory's `env_reward`); `error`: the group cannot go on (it is dropped and
    counted as failed, like a request the engine refused)."""

    samples: list[tuple[int, Completion]] = field(default_factory=list)
    follow_up: list[SampleRequest] = field(default_factory=list)
    fields: dict[int, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class StrategyContext:
    """What a strategy that declares `needs_context = True` gets as `context=`: the recipe and
    the policy's model folder (its tokenizer).  Knob checks build strategies without one."""

    cfg: Any = None
    model_path: str | None = None


class RolloutStrategy(Protocol):
    reward_scope: str  # "sample" or "group"

    def requests(self, group: Any) -> list[SampleRequest]: ...

    def on_finished(self, group: Any, request_id: str, completion: Completion) -> Outcome: ...


def request_id(group_id: int, index: int) -> str:
    return f"{group_id}:{index}"


def parse_request_id(rid: str) -> tuple[int, int]:
    g, j = rid.split(":")[:2]
    return int(g), int(j)


def sample_seed(base_seed: int, group_id: int, index: int) -> int:
    """A per-request seed: the same sample gets the same randomness in every code path."""
    return (base_seed * 1_000_003 + group_id * 1_009 + index) % (2**31 - 1)


@register_rollout_strategy("sample")
class SampleStrategy:
    """G independent requests per prompt (ROLL Flash "prompt replication"), each seeded.

    A row with a `max_tokens` field generates exactly that many tokens (EOS ignored): the
    benchmark's long-tailed response lengths, or per-prompt budgets.  `rollout.strategy_kw`
    overrides any SamplingConfig field the rollout section has no key for (e.g. `top_k`)."""

    reward_scope = "sample"

    def __init__(self, sampling: SamplingConfig, seed: int, **overrides: Any):
        known = set(SamplingConfig.__dataclass_fields__)
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(
                f"rollout.strategy_kw: unknown sampling setting(s) {unknown}; known: "
                f"{', '.join(sorted(known))}"
            )
        self.sampling = dataclasses.replace(sampling, **overrides)
        self.seed = seed

    def requests(self, group: Any) -> list[SampleRequest]:
        reqs = []
        budget = group.prompt.fields.get("max_tokens")
        for j in range(group.size):
            sampling = SamplingConfig(**{**self.sampling.__dict__, "n": 1})
            if budget is not None:
                sampling.max_tokens, sampling.ignore_eos = int(budget), True
            sampling.seed = sample_seed(self.seed, group.group_id, j)
            reqs.append(
                SampleRequest(request_id(group.group_id, j), group.prompt.token_ids, sampling)
            )
        return reqs

    def on_finished(self, group: Any, request_id: str, completion: Completion) -> Outcome:
        return Outcome(samples=[(parse_request_id(request_id)[1], completion)])


def make_strategy(
    name: str,
    sampling: SamplingConfig,
    seed: int,
    kw: dict,
    context: StrategyContext | None = None,
) -> RolloutStrategy:
    """Build strategy `name`; one declaring `needs_context` also gets `context=`.

    Optional hooks the scheduler calls when a strategy has them: `poll() -> [(group_id,
    Outcome)]` (work finished off the controller thread, e.g. environment steps), `drop(group_id)`
    (the group ended early: aborted or failed) and `take_metrics() -> dict` (per step)."""
    cls = ROLLOUT_STRATEGIES[name]
    extra = {"context": context} if getattr(cls, "needs_context", False) else {}
    return cls(sampling, seed, **kw, **extra)
