"""The rollout queue in a checkpoint (rlkit.runtime.controller.queue_state): buffered and running
groups, pending rewards and trained ids go through the checkpoint files and come back with their
ids, versions, tokens and log-probs; running groups' requests are made again with their seeds;
too-stale ones are aborted and counted; the accounting adds up across the two schedulers."""

from __future__ import annotations

import json
from concurrent.futures import Future

from rlkit.rewards.types import RewardResult
from rlkit.runtime.checkpoints import QUEUE, RUN_STATE, _write_run_state, read_run_state
from tests.unit.runtime.test_rollout_scheduler import FakeRewards, FakeWorker, admit_all, make


class SlowRewards:
    """Rewards that never finish unless the test resolves them."""

    def __init__(self):
        self.futs: list[Future] = []

    def submit_many(self, prompts, completions, fields_list):
        futs = [Future() for _ in completions]
        self.futs += futs
        return futs


def busy_scheduler():
    """alpha 1, 2 groups per step, 2 samples: one step trained, then groups buffered, running
    with one sample finished and its reward pending, running with a reward finished but not
    collected, and running with nothing finished."""
    sched, worker = make(alpha=1), FakeWorker()
    groups = admit_all(sched, worker)  # 4 groups at version 0
    for g in groups[:3]:
        sched.on_finished([worker.finish(r, 0, text="abc") for r in sorted(g.requests)])
    sched.poll_rewards()
    batch = sched.take_batch(0)
    assert [g.group_id for g in batch] == [0, 1]
    sched.worker_version = 1
    more = admit_all(sched, worker)  # 2 more at version 1
    assert [g.group_id for g in more] == [4, 5]
    slow = SlowRewards()
    sched.rewards = slow
    g4 = more[0]
    sched.on_finished([worker.finish(sorted(g4.requests)[0], 1, text="xy")])  # reward pending
    g3 = groups[3]
    sched.on_finished([worker.finish(r, 0, text="q") for r in sorted(g3.requests)])
    slow.futs[-1].set_result(RewardResult(7.0, {"c": 1.0}, None, False, None))  # not collected
    slow.futs[-2].set_result(RewardResult(5.0, {}, None, False, None))
    return sched, worker


def through_files(tmp_path, sched) -> dict:
    state = {"rollout": sched.state_dict(), "queue": sched.queue_state()}
    _write_run_state(tmp_path, state)
    assert (tmp_path / QUEUE).is_file() and "queue" not in json.loads(
        (tmp_path / RUN_STATE).read_text()
    )
    return read_run_state(tmp_path)


def test_the_queue_round_trips_through_the_checkpoint_files(tmp_path):
    old, _ = busy_scheduler()
    before = old.counts()
    state = through_files(tmp_path, old)
    new = make(alpha=1)
    new.rewards = FakeRewards()
    note = new.load_state_dict(state["rollout"], state["queue"])
    after = new.counts()  # the accounting identity holds across the two schedulers
    live = ("running", "buffered")
    assert {k: v for k, v in after.items() if k not in live} == {
        k: v for k, v in before.items() if k not in live
    }
    assert after["running"] + after["buffered"] == before["running"] + before["buffered"]
    assert new.accounting_ok() and note["resume/groups_lost"] == 0
    assert new.trained_ids == {0, 1}
    b = list(new.buffer)[0]
    ob = list(old.buffer)[0]
    assert b.group_id == 2 and b.start_version == 0
    for j, s in b.samples.items():
        assert s.completion.token_ids == ob.samples[j].completion.token_ids
        assert s.completion.logprobs == ob.samples[j].completion.logprobs
        assert s.reward == ob.samples[j].reward and s.start_version == 0
    # g3: its uncollected rewards came back as results: complete, into the buffer
    assert note["resume/restored_running"] == 3 and sorted(new.running) == [4, 5]
    g3 = [g for g in new.buffer if g.group_id == 3][0]
    assert sorted(s.reward for s in g3.samples.values()) == [5.0, 7.0] and g3.start_version == 0
    assert new.running[4].start_version == 1
    # g4: its pending reward is asked again
    assert note["resume/rescored_samples"] == 1 and len(new.reward_futures) == 1
    new.poll_rewards()
    assert new.running[4].samples[0].reward == 2.0  # FakeRewards: len("xy")
    # running groups' outstanding requests, same ids and seeds as the strategy made them
    resumed = new.take_resumed()
    sent = sorted(r.request_id for reqs in resumed.values() for r in reqs)
    assert sent == ["4:1", "5:0", "5:1"] and note["resume/regenerated_requests"] == 3
    seeds = {r.request_id: r.sampling.seed for reqs in resumed.values() for r in reqs}
    again = {r.request_id: r.sampling.seed for r in old.strategy.requests(old.running[5])}
    assert seeds["5:0"] == again["5:0"] and seeds["5:1"] == again["5:1"]
    assert new.take_resumed() == {}  # once


def test_resumed_groups_finish_and_train_once_without_new_ids(tmp_path):
    old, _ = busy_scheduler()
    state = through_files(tmp_path, old)
    new = make(alpha=1)
    new.rewards = FakeRewards()
    new.load_state_dict(state["rollout"], state["queue"])
    worker = FakeWorker()
    for reqs in new.take_resumed().values():
        worker.add(reqs)
    new.on_finished([worker.finish(r, 1) for r in sorted(worker.pending)])
    new.poll_rewards()
    trained = [g.group_id for g in new.take_batch(1)] + [g.group_id for g in new.take_batch(2)]
    assert sorted(trained) == [2, 3, 4, 5] and not new.trained_twice
    assert new.accounting_ok() and new.next_group_id == 6
    g, _ = new.new_group()
    assert g.group_id == 6


def test_too_stale_groups_are_aborted_on_resume_and_counted(tmp_path):
    """Resumed at version 3 with alpha 1: groups admitted at versions 0 and 1 can never train."""
    old, _ = busy_scheduler()
    old.worker_version = 3
    state = through_files(tmp_path, old)
    new = make(alpha=1)
    new.rewards = FakeRewards()
    note = new.load_state_dict(state["rollout"], state["queue"])
    assert note["resume/aborted_groups"] == 3 and note["resume/groups_lost"] == 0
    assert new.take_resumed() == {} and not new.running
    assert new.counts()["aborted"] == 3 and new.accounting_ok()
    assert new.take_batch(3) is None and new.counts()["dropped"] == 1  # the buffered one
    assert new.accounting_ok()


def test_a_checkpoint_without_a_queue_reports_its_groups_lost():
    """Checkpoints written before the queue was saved: their live groups were counted as
    aborted and their prompts are issued again; the resume says how many."""
    sched = make(alpha=1)
    state = sched.state_dict()
    state["prompts"]["again"] = [3, 4]
    note = make(alpha=1).load_state_dict(state, None)
    assert note == {"resume/groups_lost": 2.0}


class PollingStrategy:
    """A multi-turn-like strategy: work off-thread (`poll`), per-group state it keeps itself."""

    reward_scope = "sample"

    def __init__(self):
        self.started: list[int] = []

    def requests(self, group):
        self.started.append(group.group_id)
        return []  # first turns come from poll

    def on_finished(self, group, request_id, completion):
        raise AssertionError("not called here")

    def poll(self):
        return []


def test_a_strategy_with_off_thread_state_restarts_its_running_groups(tmp_path):
    """Its environments are not in the checkpoint: unfinished running groups start again from
    scratch (finished samples dropped, same id and version); a group with every sample
    generated is kept and only waits for its rewards; buffered groups are kept as they are."""
    old, _ = busy_scheduler()
    state = through_files(tmp_path, old)
    new = make(alpha=1)
    new.rewards, new.strategy = FakeRewards(), PollingStrategy()
    note = new.load_state_dict(state["rollout"], state["queue"])
    assert note["resume/restarted_groups"] == 2 and note["resume/groups_lost"] == 0
    assert sorted(new.strategy.started) == [4, 5]
    assert all(not g.samples and not g.requests for g in new.running.values())
    assert new.running[4].start_version == 1 and not new.reward_futures
    assert [g.group_id for g in new.buffer] == [2, 3] and new.accounting_ok()
