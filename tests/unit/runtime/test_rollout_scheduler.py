"""The rollout scheduler on fake workers and a fake reward pool (plain Python, no Ray):
admission under the staleness bound, aborts, drops, filtering, batch order and the accounting
that every admitted group ends exactly once."""

from __future__ import annotations

import itertools
import random
from concurrent.futures import Future

import pytest

from rlkit.engines.rollout_protocol import Completion, SamplingConfig
from rlkit.engines.vllm_engine import FinishedRequest
from rlkit.rewards.types import RewardResult
from rlkit.runtime.controller.groups import Prompt
from rlkit.runtime.controller.rollout_scheduler import RolloutScheduler
from rlkit.runtime.controller.strategies import SampleStrategy


class FakeRewards:
    """Resolves at once: reward = number of tokens of the completion text."""

    def submit_many(self, prompts, completions, fields_list):
        futs = []
        for text in completions:
            f: Future = Future()
            f.set_result(RewardResult(float(len(text)), {}, None, False, None))
            futs.append(f)
        return futs


class FakeWorker:
    """Finishes requests in the order the test asks, at a given policy version."""

    def __init__(self):
        self.pending: dict[str, list[int]] = {}

    def add(self, reqs):
        for r in reqs:
            self.pending[r.request_id] = r.prompt_ids

    def finish(self, rid: str, version: int, text: str = "ab", reason: str = "stop"):
        self.pending.pop(rid)
        return FinishedRequest(rid, Completion([1] * len(text), [-1.0], text, reason), version)


def prompts():
    for i in itertools.count():
        yield Prompt(i, f"p{i}", [1, 2], {})


def make(alpha=0, groups_per_step=2, size=2, accept=lambda g: True):
    strategy = SampleStrategy(SamplingConfig(), seed=0)
    return RolloutScheduler(
        strategy,
        prompts(),
        FakeRewards(),
        num_workers=2,
        alpha=alpha,
        groups_per_step=groups_per_step,
        samples_per_prompt=size,
        accept=accept,
    )


def admit_all(sched: RolloutScheduler, worker: FakeWorker) -> list:
    groups = []
    for _ in range(sched.staleness.capacity(sched.worker_version)):
        g, reqs = sched.new_group()
        worker.add(reqs)
        groups.append(g)
    return groups


def finish_group(sched, worker, g, version=0, text="ab"):
    sched.on_finished([worker.finish(r, version, text) for r in sorted(g.requests)])
    sched.poll_rewards()


def test_alpha0_admits_one_batch_per_version_spread_over_workers():
    sched, w = make(alpha=0), FakeWorker()
    groups = admit_all(sched, w)
    assert len(groups) == 2 and [g.worker for g in groups] == [0, 1]
    assert sched.staleness.capacity(0) == 0  # nothing more until the weights move on
    assert all(len(g.requests) == 2 for g in groups)


def test_batch_is_in_group_order_whatever_finishes_first():
    sched, w = make(alpha=0), FakeWorker()
    g0, g1 = admit_all(sched, w)
    finish_group(sched, w, g1)
    assert sched.take_batch(0) is None  # one of two groups ready
    finish_group(sched, w, g0)
    batch = sched.take_batch(0)
    assert [g.group_id for g in batch] == [0, 1]
    assert batch[0].samples[0].reward == 2.0
    assert sched.counts()["consumed"] == 2


def test_stale_running_groups_are_aborted_and_finished_ones_dropped():
    sched, w = make(alpha=1), FakeWorker()
    groups = admit_all(sched, w)  # (alpha + 0 + 1) * 2 = 4 groups at version 0
    assert len(groups) == 4
    finish_group(sched, w, groups[0])
    finish_group(sched, w, groups[1])
    sched.take_batch(0)
    finish_group(sched, w, groups[2])  # started at 0, finished, never taken
    aborts = sched.abort_stale(train_version=2)  # min usable version 1: group 3 is too stale
    assert sum(len(v) for v in aborts.values()) == 2 and 3 not in sched.running
    assert sched.take_batch(2) is None  # group 2 is dropped from the buffer
    c = sched.counts()
    assert (c["aborted"], c["dropped"], c["consumed"]) == (1, 1, 2)
    # a late output of an aborted request is ignored
    sched.on_finished([w.finish(sorted(groups[3].requests)[0], 0)])
    assert sched.counts()["running"] == 0


def test_filtered_and_failed_groups_are_counted_and_replaced():
    sched, w = make(alpha=0, accept=lambda g: g.group_id != 0), FakeWorker()
    g0, g1 = admit_all(sched, w)
    finish_group(sched, w, g0)
    rid = sorted(g1.requests)[0]
    sched.on_finished([w.finish(rid, 0, "engine says no", reason="error")])
    c = sched.counts()
    assert (c["filtered"], c["failed"], c["running"]) == (1, 1, 0)
    assert sched.staleness.capacity(0) == 2  # both slots can be refilled


def die(sched: RolloutScheduler, worker: FakeWorker, index: int) -> list:
    """Worker `index` dies: its requests are lost; the scheduler re-issues them."""
    for g in sched.running.values():
        if g.worker == index:
            for rid in g.requests:
                worker.pending.pop(rid, None)
    reqs = sched.reissue(index)
    worker.add(reqs)
    return reqs


def test_accounting_adds_up_over_random_schedules():
    """Random finishes, engine errors, aborts, drops, filters and worker deaths: every admitted
    group is running, buffered or ended exactly once, and none is trained twice."""
    rng = random.Random(0)
    deaths = reissued = 0
    for trial in range(30):
        alpha = rng.randint(0, 2)
        sched, w = make(alpha=alpha, accept=lambda g: g.group_id % 5 != 3), FakeWorker()
        version, trained = 0, []
        for _ in range(40):
            admit_all(sched, w)
            if rng.random() < 0.1:
                die(sched, w, rng.randint(0, 1))
                deaths += 1
            live = [rid for rid in w.pending]
            rng.shuffle(live)
            for rid in live[: rng.randint(0, len(live))]:
                reason = "error" if rng.random() < 0.05 else "stop"
                sched.on_finished([w.finish(rid, version, "x" * rng.randint(1, 3), reason)])
            sched.poll_rewards()
            batch = sched.take_batch(version)
            if batch is not None:
                trained += [g.group_id for g in batch]
                version += 1
                sched.worker_version = version
                for ids in sched.abort_stale(version).values():
                    for rid in ids:
                        w.pending.pop(rid, None)
            c = sched.counts()
            ended = c["consumed"] + c["aborted"] + c["dropped"] + c["filtered"] + c["failed"]
            assert ended + c["running"] + c["buffered"] == c["admitted"], (trial, c)
            assert sched.accounting_ok(), (trial, c)
        assert version > 0
        assert len(trained) == len(set(trained)) == sched.counts()["consumed"]
        for rid in list(w.pending):  # no request was lost: every running group can finish
            sched.on_finished([w.finish(rid, version)])
        sched.poll_rewards()
        assert sched.counts()["running"] == 0, trial
        reissued += sched.reissued_groups
    assert deaths > 10 and reissued > 10


def test_a_dead_workers_groups_are_reissued_with_their_seeds():
    sched, w = make(alpha=1), FakeWorker()
    groups = admit_all(sched, w)
    on_1 = [g for g in groups if g.worker == 1]
    seeds = {r.request_id: r.sampling.seed for r in sched.strategy.requests(on_1[0])}
    first = sorted(on_1[0].requests)[0]
    sched.on_finished([w.finish(first, 0)])  # one sample finished before the death
    reqs = die(sched, w, 1)
    # only the outstanding requests of worker 1's groups, same ids and seeds
    assert sorted(r.request_id for r in reqs) == sorted(rid for g in on_1 for rid in g.requests)
    assert first not in {r.request_id for r in reqs}
    assert all(seeds[r.request_id] == r.sampling.seed for r in reqs if r.request_id in seeds)
    assert sched.reissued_groups == len(on_1)
    for g in groups:  # the replacement (and worker 0) finish everything: all groups train
        finish_group(sched, w, g)
    assert [g.group_id for g in sched.take_batch(0)] == [0, 1]
    assert sched.accounting_ok() and sched.counts()["failed"] == 0


def test_a_group_trained_twice_breaks_the_accounting():
    sched, w = make(alpha=0), FakeWorker()
    g0, g1 = admit_all(sched, w)
    finish_group(sched, w, g0)
    finish_group(sched, w, g1)
    batch = sched.take_batch(0)
    assert sched.accounting_ok()
    sched.buffer.put(batch[0])  # a controller bug would hand it over again
    sched.staleness.buffered += 1
    sched.buffer.put(batch[1])
    sched.staleness.buffered += 1
    sched.take_batch(0)
    assert sched.trained_twice == 2 and not sched.accounting_ok()


@pytest.mark.parametrize("scope", ["sample", "group"])
def test_group_scope_rewards_wait_for_the_whole_group(scope):
    sched, w = make(alpha=0), FakeWorker()
    calls = []

    class Recording(FakeRewards):
        def submit_many(self, prompts, completions, fields_list):
            calls.append([f.get("rank") for f in fields_list])
            return super().submit_many(prompts, completions, fields_list)

    sched.rewards = Recording()
    sched.strategy.reward_scope = scope
    g0, _ = admit_all(sched, w)
    ids = sorted(g0.requests)
    sched.on_finished([w.finish(ids[0], 0)])
    sched.on_finished([w.finish(ids[1], 0)])
    assert calls == ([[None], [None]] if scope == "sample" else [[0, 1]])
