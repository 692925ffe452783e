"""The controller's part of a resume (rlkit.runtime.resume): each component's `state_dict` /
`load_state_dict` (the prompt stream's position, the in-flight prompts issued again, counters
restored so the accounting still adds up; the queue itself: test_queue_state.py), composed by
the Spine, and the metrics files trimmed to the checkpoint's step."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from rlkit.config import ConfigError
from rlkit.config.loader import config_from_dict
from rlkit.runtime.controller.groups import Prompt
from rlkit.runtime.controller.prompts import PromptStream
from rlkit.runtime.resume import resume_point, trim_records


def stream(n: int = 100):
    return (Prompt(i, f"p{i}", [i], {}) for i in range(n))


def resumed(drawn: int, in_flight: list[int]) -> PromptStream:
    old = PromptStream(stream())
    for _ in range(drawn):
        next(old)
    new = PromptStream(stream())
    new.load_state_dict(json.loads(json.dumps(old.state_dict(in_flight))))
    return new


def test_the_stream_resumes_with_the_in_flight_prompts_then_where_it_stopped():
    got = resumed(10, [7, 9, 8])
    assert [next(got).index for _ in range(5)] == [7, 8, 9, 10, 11]
    again = resumed(4, [])
    assert [next(again).index for _ in range(2)] == [4, 5]


def test_a_second_resume_keeps_prompts_not_yet_issued_again():
    """Resumed at 10 with 7, 8 in flight, one of them issued again, then saved: the other is
    still owed, and the stream's position is 10, not the number of groups admitted."""
    first = resumed(10, [7, 8])
    assert next(first).index == 7
    second = PromptStream(stream())
    second.load_state_dict(json.loads(json.dumps(first.state_dict([7]))))
    assert [next(second).index for _ in range(3)] == [7, 8, 10]


def test_records_after_the_checkpoint_are_dropped_once(tmp_path):
    lines = [{"step": s, "loss": s / 10} for s in (1, 2, 3, 4)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (tmp_path / "eval.jsonl").write_text(json.dumps({"step": 4, "eval/x": 1}) + "\n")
    trim_records(tmp_path, 2)
    kept = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert kept == [1, 2]
    assert (tmp_path / "eval.jsonl").read_text() == ""


def test_resume_point_explicit_auto_and_missing(tmp_path):
    cfg = config_from_dict(
        {"name": "r", "model": {"kind": "tiny"}, "logging": {"runs_dir": str(tmp_path)}}
    )
    auto = config_from_dict(
        {
            "name": "r",
            "model": {"kind": "tiny"},
            "resume": "auto",
            "logging": {"runs_dir": str(tmp_path)},
        }
    )
    assert resume_point(auto, None) is None  # nothing yet: a fresh start
    with pytest.raises(ConfigError, match="no resumable checkpoint under"):
        resume_point(cfg, str(tmp_path / "r"))
    for step, state in ((2, True), (4, True), (6, False)):  # step_6: weights only
        ck = tmp_path / "r" / "checkpoints" / f"step_{step}"
        ck.mkdir(parents=True)
        if state:
            (ck / "run_state.json").write_text("{}")
    assert resume_point(cfg, str(tmp_path / "r")).name == "step_4"
    assert resume_point(auto, None).name == "step_4"
    assert resume_point(cfg, None) is None


def test_run_state_round_trip_keeps_the_accounting():
    from rlkit.engines.rollout_protocol import SamplingConfig
    from rlkit.runtime.controller.rollout_scheduler import RolloutScheduler
    from rlkit.runtime.controller.spine import Spine
    from rlkit.runtime.controller.step_recorder import StepRecorder
    from rlkit.runtime.controller.strategies import make_strategy
    from rlkit.runtime.controller.worker_restarts import WorkerRestarts

    def scheduler():
        strategy = make_strategy("sample", SamplingConfig(max_tokens=4), 0, {})
        return RolloutScheduler(
            strategy, stream(), None, num_workers=1, alpha=1, groups_per_step=2,
            samples_per_prompt=2,
        )  # fmt: skip

    old = scheduler()
    for _ in range(5):
        old.new_group()
    # two trained, two running, one finished and buffered
    old.running = {k: v for k, v in old.running.items() if k >= 2}
    old.buffer.put(old.running.pop(4))
    st = old.staleness
    st.consumed, st.running, st.buffered = 2, 2, 1
    old.worker_version = 1
    cfg = config_from_dict({"model": {"kind": "tiny"}})

    def spine(ro, count):  # the Spine's own composition, on a stand-in holding the components
        restarts = WorkerRestarts([], None, lambda: None, 3)
        restarts.count = count
        recorder = StepRecorder(cfg, None, None, None)
        recorder.window.extend([(100, 2.0)] * count)
        return SimpleNamespace(
            rollout=ro, step=1 if count else 0, restarts=restarts, recorder=recorder
        )

    state = Spine.state_dict(spine(old, 1))
    assert [g["group_id"] for g in state["queue"]["buffer"]] == [4]
    assert [g["group_id"] for g in state["queue"]["running"]] == [2, 3]
    assert state["rollout"]["prompts"] == {"drawn": 5, "again": []}
    assert state["rollout"]["staleness"]["aborted"] == 0
    new = spine(scheduler(), 0)
    note = Spine.load_state_dict(new, json.loads(json.dumps(state)))
    assert note["resume/groups_lost"] == 0
    assert new.step == 1 and new.rollout.worker_version == 1 and new.restarts.count == 1
    assert list(new.recorder.window) == [(100, 2.0)]  # throughput over the same steps
    assert [g.group_id for g in new.rollout.buffer] == [4]
    assert sorted(new.rollout.running) == [2, 3] and new.rollout.staleness.buffered == 1
    assert new.rollout.counts() == old.counts() and new.rollout.accounting_ok()
    admitted = [new.rollout.new_group()[0] for _ in range(2)]
    assert [g.prompt.index for g in admitted] == [5, 6]  # the stream goes on where it was
    assert [g.group_id for g in admitted] == [5, 6]
