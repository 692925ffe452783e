"""Pure bookkeeping of groups: per-sample seeds/ids, batch ordering."""

from __future__ import annotations

from rlkit.config.loader import config_from_dict
from rlkit.credit import Services, build_pipeline
from rlkit.engines.rollout_protocol import Completion, SamplingConfig
from rlkit.runtime.controller.groups import Group, Prompt, Sample
from rlkit.runtime.controller.strategies import SampleStrategy


def _group(gid: int, rewards: list[float], fields=None) -> Group:
    g = Group(gid, Prompt(gid, "1+1=", [5, 6], fields or {}), len(rewards), 0, 0)
    for j, r in enumerate(rewards):
        g.samples[j] = Sample(j, Completion([7] * (j + 1), [-1.0] * (j + 1)), 0, reward=r)
    return g


def test_requests_have_distinct_reproducible_seeds_and_budgets():
    base = SamplingConfig(max_tokens=9)
    strategy = SampleStrategy(base, 0)
    a = strategy.requests(_group(3, [0, 1]))
    b = strategy.requests(_group(3, [0, 1]))
    assert [r.sampling.seed for r in a] == [r.sampling.seed for r in b]
    assert len({r.sampling.seed for r in a}) == 2 and [r.request_id for r in a] == ["3:0", "3:1"]
    assert base.seed is None  # the shared config is not mutated
    budget = strategy.requests(_group(4, [0], {"max_tokens": 3}))[0].sampling
    assert budget.max_tokens == 3 and budget.ignore_eos


def test_batch_is_ordered_by_group_and_grpo_advantages():
    cfg = config_from_dict({"model": {"kind": "tiny"}})
    batch = build_pipeline(cfg, Services())([_group(2, [1.0, 0.0]), _group(1, [0.0, 0.0])])
    adv = [s.streams["advantages"] for s in batch.samples]
    assert adv[:2] == [0.0, 0.0]  # group 1 first, no signal; outcome advantages broadcast
    assert adv[2] > 0 > adv[3]
    assert batch.stats["reward/mean"] == 0.25 and batch.stats["response_length/mean"] == 1.5
