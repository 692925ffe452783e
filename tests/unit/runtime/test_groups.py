"""Pure bookkeeping of groups: per-sample seeds/ids, batch ordering, critic subsets."""

from __future__ import annotations

from rlkit.engines.rollout_protocol import Completion, SamplingConfig
from rlkit.runtime.critic_group import critic_subsets
from rlkit.runtime.groups import Group, Prompt, Sample, build_batch, group_requests


def _group(gid: int, rewards: list[float], fields=None) -> Group:
    g = Group(gid, Prompt(gid, "1+1=", [5, 6], fields or {}), len(rewards), 0, 0)
    for j, r in enumerate(rewards):
        g.samples[j] = Sample(j, Completion([7] * (j + 1), [-1.0] * (j + 1)), 0, reward=r)
    return g


def test_requests_have_distinct_reproducible_seeds_and_budgets():
    base = SamplingConfig(max_tokens=9)
    a = group_requests(_group(3, [0, 1]), base, 0)
    b = group_requests(_group(3, [0, 1]), base, 0)
    assert [r.sampling.seed for r in a] == [r.sampling.seed for r in b]
    assert len({r.sampling.seed for r in a}) == 2 and [r.request_id for r in a] == ["3:0", "3:1"]
    assert base.seed is None  # the shared config is not mutated
    budget = group_requests(_group(4, [0], {"max_tokens": 3}), base, 0)[0].sampling
    assert budget.max_tokens == 3 and budget.ignore_eos


def test_batch_is_ordered_by_group_and_grpo_advantages():
    samples, stats = build_batch([_group(2, [1.0, 0.0]), _group(1, [0.0, 0.0])], "grpo", {})
    assert [s.advantage for s in samples[:2]] == [0.0, 0.0]  # group 1 first, no signal
    assert samples[2].advantage > 0 > samples[3].advantage
    assert stats["reward/mean"] == 0.25 and stats["response_length/mean"] == 1.5


def test_critic_subsets_split_every_group_disjointly():
    subsets = critic_subsets([4, 4], 2)
    assert subsets == [[0, 2, 4, 6], [1, 3, 5, 7]]
    assert critic_subsets([3], 1) == [[0, 1, 2]]
