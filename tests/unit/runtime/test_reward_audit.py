"""The reward audit: trained rewards re-scored with the run's reward functions must match; a
reward credited to another sample is reported (audit/reward_mismatch), a correct batch reports 0.
Real RewardPools (thread mode) score with the functions of this file, as a recipe names them."""

from __future__ import annotations

import time

import pytest

from rlkit.engines.rollout_protocol import Completion, SamplingConfig
from rlkit.engines.vllm_engine import FinishedRequest
from rlkit.rewards.pool import RewardPool
from rlkit.rewards.registry import reward
from rlkit.runtime.controller.groups import Group, Prompt, Sample
from rlkit.runtime.controller.reward_audit import RewardAudit
from rlkit.runtime.controller.rollout_scheduler import RolloutScheduler
from rlkit.runtime.controller.strategies import SampleStrategy


def length_bonus(prompt: str, completion: str, bonus: float = 0.0) -> dict:
    """Length of the completion plus a field: wrong text or wrong fields change the score."""
    return {"score": len(completion) + bonus, "len": float(len(completion))}


@reward(batch=True)
def rank_reward(prompts: list[str], completions: list[str], rank: list[int]) -> list[float]:
    """A group-scope reward: 1 for the best rank, 0 for the others, seen all at once."""
    best = min(rank)
    return [float(r == best) for r in rank]


def _pool(fn: str) -> RewardPool:
    return RewardPool([{"fn": f"{__file__}:{fn}"}], mode="thread", num_workers=1)


def _scored_groups(pool: RewardPool, n_groups: int = 2, size: int = 3) -> list[Group]:
    """Groups scored through the real RolloutScheduler (which keeps each sample's fields)."""
    prompts = iter(Prompt(i, f"p{i}", [1], {"bonus": 0.5 * i}) for i in range(100))
    sched = RolloutScheduler(
        SampleStrategy(SamplingConfig(), seed=0), prompts, pool,
        num_workers=1, alpha=0, groups_per_step=n_groups, samples_per_prompt=size,
    )  # fmt: skip
    finished = []
    for _ in range(n_groups):
        _, reqs = sched.new_group()
        for k, r in enumerate(reqs):
            text = "x" * (2 + 3 * k + len(finished))  # every sample a different length
            finished.append(FinishedRequest(r.request_id, Completion([1], [0.0], text), 0))
    sched.on_finished(finished)
    deadline = time.time() + 10
    while sched.poll_rewards(wait_s=0.1) < n_groups and time.time() < deadline:
        pass
    groups = sched.take_batch(0)
    assert groups is not None
    return groups


def _take_all(audit: RewardAudit) -> dict:
    deadline = time.time() + 10
    while any(not f.done() for *_, f in audit.pending) and time.time() < deadline:
        time.sleep(0.01)
    return audit.take()


@pytest.fixture
def pools():
    made: list[RewardPool] = []

    def make(fn: str) -> RewardPool:
        made.append(_pool(fn))
        return made[-1]

    yield make
    for p in made:
        p.close()


def test_correct_rewards_audit_clean(pools):
    groups = _scored_groups(pools("length_bonus"))
    audit = RewardAudit(pools("length_bonus"), seed=0)
    audit.submit(groups)
    out = _take_all(audit)
    assert out == {"audit/rows": 4.0, "audit/reward_mismatch": 0.0}


def test_reward_credited_to_another_sample_is_reported(pools):
    groups = _scored_groups(pools("length_bonus"))
    # the bug the audit exists for: scores written back to the wrong samples (a rotation)
    samples = [s for g in groups for s in g.samples.values()]
    scores = [(s.reward, s.components) for s in samples]
    for s, (r, c) in zip(samples, scores[1:] + scores[:1]):
        s.reward, s.components = r, c
    audit = RewardAudit(pools("length_bonus"), seed=0, rows_per_step=len(samples))
    audit.submit(groups)
    out = _take_all(audit)
    assert out == {"audit/rows": 6.0, "audit/reward_mismatch": 6.0}
    for s, (r, c) in zip(samples, scores):  # a later step with one sample wrong: that one
        s.reward, s.components = r, c
    samples[0].reward += 1.0
    audit.submit(groups)
    assert _take_all(audit) == {"audit/rows": 6.0, "audit/reward_mismatch": 1.0}


def test_fields_matter_and_failed_rewards_are_skipped(pools):
    groups = _scored_groups(pools("length_bonus"))
    s = groups[1].samples[0]
    assert s.reward_fields["bonus"] == 0.5  # the prompt's field, kept for the audit
    s.reward_fields = {}  # re-scored without its field: a different score
    failed = groups[0].samples[0]
    failed.reward_failed, failed.reward = True, -99.0  # a fallback is not a mis-assignment
    audit = RewardAudit(pools("length_bonus"), seed=0, rows_per_step=6)
    audit.submit(groups)
    assert _take_all(audit) == {"audit/rows": 5.0, "audit/reward_mismatch": 1.0}


def _group(gid: int, ranks_rewards: list[float]) -> Group:
    g = Group(gid, Prompt(gid, "p", [1], {}), len(ranks_rewards), 0, 0)
    for j, r in enumerate(ranks_rewards):
        s = Sample(j, Completion([1], [0.0], f"item{j}"), 0, reward=r)
        s.components = {"rank_reward": r}  # what the pool names an unweighted score
        s.reward_fields = {"rank": j}
        g.samples[j] = s
    return g


def test_group_scope_rescored_as_a_whole_group(pools):
    audit = RewardAudit(pools("rank_reward"), seed=0, group_scope=True)
    audit.submit([_group(0, [1.0, 0.0, 0.0])])
    assert _take_all(audit) == {"audit/rows": 3.0, "audit/reward_mismatch": 0.0}
    audit.submit([_group(1, [0.0, 1.0, 0.0])])  # the top rank's reward on the second sample
    assert _take_all(audit) == {"audit/rows": 3.0, "audit/reward_mismatch": 2.0}


def test_for_pool_needs_a_reward_pool(pools):
    assert RewardAudit.for_pool(object(), seed=0, group_scope=False) is None
    audit = RewardAudit.for_pool(pools("length_bonus"), seed=0, group_scope=False)
    assert audit is not None and audit.pool.mode == "thread"
    audit.close()
