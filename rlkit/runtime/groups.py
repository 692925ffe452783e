"""Groups of samples (one prompt, G responses): requests, bookkeeping, and the training batch.

Shared by the synchronous loop and the asynchronous controller so that both build the very same
requests (ids, seeds) and the very same batches: that is what makes alpha = 0 reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlkit.engines.rollout_protocol import Completion, SamplingConfig
from rlkit.engines.train_batch import TrainSample
from rlkit.runtime.rollout_worker import SampleRequest


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


@dataclass
class Group:
    """G samples of one prompt; the scheduling and staleness unit."""

    group_id: int
    prompt: Prompt
    size: int
    start_version: int
    worker: int
    samples: dict[int, Sample] = field(default_factory=dict)
    pending_rewards: int = 0

    @property
    def request_ids(self) -> list[str]:
        return [request_id(self.group_id, j) for j in range(self.size)]

    @property
    def done(self) -> bool:
        return len(self.samples) == self.size and all(
            s.reward is not None for s in self.samples.values()
        )


def request_id(group_id: int, index: int) -> str:
    return f"{group_id}:{index}"


def parse_request_id(rid: str) -> tuple[int, int]:
    g, j = rid.split(":")
    return int(g), int(j)


def sample_seed(base_seed: int, group_id: int, index: int) -> int:
    """A per-request seed: the same sample gets the same randomness in every code path."""
    return (base_seed * 1_000_003 + group_id * 1_009 + index) % (2**31 - 1)


def group_requests(group: Group, base: SamplingConfig, base_seed: int) -> list[SampleRequest]:
    """One request per sample (ROLL Flash "prompt replication"), each with its own seed.

    A row with a `max_tokens` field generates exactly that many tokens (EOS ignored): the
    benchmark's long-tailed response lengths, or per-prompt budgets."""
    reqs = []
    budget = group.prompt.fields.get("max_tokens")  # a row may carry its own length budget
    for j in range(group.size):
        sampling = SamplingConfig(**{**base.__dict__, "n": 1})
        if budget is not None:
            sampling.max_tokens, sampling.ignore_eos = int(budget), True
        sampling.seed = sample_seed(base_seed, group.group_id, j)
        reqs.append(SampleRequest(request_id(group.group_id, j), group.prompt.token_ids, sampling))
    return reqs


def build_batch(
    groups: list[Group], advantage: str, advantage_kw: dict
) -> tuple[list[TrainSample], dict[str, float]]:
    """Training samples of complete groups (ordered by group id), advantages filled in."""
    import torch

    from rlkit.algos import compute_advantages

    groups = sorted(groups, key=lambda g: g.group_id)
    flat = [(g, g.samples[j]) for g in groups for j in range(g.size)]
    rewards = torch.tensor([s.reward for _, s in flat], dtype=torch.float32)
    gids = torch.tensor([g.group_id for g, _ in flat])
    if advantage == "gae":  # token-level: the controller fills them in from the critic's values
        adv = torch.zeros_like(rewards)
    else:
        adv = compute_advantages(advantage, rewards=rewards, group_ids=gids, **advantage_kw)
    batch = [
        TrainSample(
            prompt_ids=g.prompt.token_ids,
            response_ids=s.completion.token_ids,
            behavior_logprobs=s.completion.logprobs,
            advantage=float(a),
        )
        for (g, s), a in zip(flat, adv.tolist())
    ]
    lengths = [len(s.completion.token_ids) for _, s in flat]
    stats = {
        "reward/mean": float(rewards.mean()),
        "reward/std": float(rewards.std()) if len(rewards) > 1 else 0.0,
        "advantage/mean": float(adv.mean()),
        "advantage/abs_mean": float(adv.abs().mean()),
        "response_length/mean": sum(lengths) / len(lengths),
        "response_length/max": float(max(lengths)),
        "response/truncated_frac": sum(s.completion.finish_reason == "length" for _, s in flat)
        / len(flat),
        "reward/failed_frac": sum(s.reward_failed for _, s in flat) / len(flat),
    }
    for key in {k for _, s in flat for k in s.components}:
        vals = [s.components[key] for _, s in flat if key in s.components]
        stats[f"reward/{key}"] = sum(vals) / len(vals)
    return batch, stats
