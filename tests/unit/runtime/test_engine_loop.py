"""The rollout worker's continuous engine loop on a fake engine (pure scheduling logic; the real
vLLM worker is tested in tests/integration/test_continuous_worker.py)."""

from __future__ import annotations

import threading
import time

import pytest

from rlkit.engines.rollout_protocol import Completion, FinishedRequest, SamplingConfig
from rlkit.runtime.actors.engine_loop import EngineLoopFailed
from rlkit.runtime.actors.request_kinds import SampleRequest
from rlkit.runtime.actors.rollout_worker import RolloutWorker


class StepEngine:
    """Each request needs `max_tokens` steps of `step_s` seconds; records which thread steps and
    asserts no two threads ever touch it at once."""

    def __init__(self, step_s: float = 0.01):
        self.step_s, self.version, self.steps = step_s, 0, 0
        self.live: dict[str, list] = {}  # id -> [steps left, start version, prompt]
        self.inside = threading.Lock()
        self.fail = False

    def _enter(self):
        assert self.inside.acquire(blocking=False), "two threads in the engine at once"

    def add(self, rid, prompt, sampling):
        self._enter()
        steps = sampling.prompt_logprobs_from or sampling.max_tokens  # scoring: from = steps
        self.live[rid] = [steps, self.version, prompt]
        self.inside.release()

    def step(self):
        self._enter()
        try:
            if self.fail:
                raise ValueError("engine broke")
            time.sleep(self.step_s)
            self.steps += 1
            done = []
            for rid, st in list(self.live.items()):
                st[0] -= 1
                if st[0] == 0:
                    del self.live[rid]
                    done.append(FinishedRequest(rid, Completion([1], [-0.1]), st[1]))
            return done
        finally:
            self.inside.release()

    def abort(self, ids):
        for r in ids:
            self.live.pop(r, None)

    def num_unfinished(self):
        return len(self.live)

    def pending_ids(self):
        return list(self.live)

    def load_weights(self, blob, version):
        self._enter()
        self.version = version
        self.inside.release()


def req(rid: str, steps: int) -> SampleRequest:
    return SampleRequest(rid, [1, 2], SamplingConfig(max_tokens=steps))


def test_engine_steps_between_run_calls():
    engine = StepEngine()
    worker = RolloutWorker.around(engine)
    assert worker.run([req("a", 5), req("b", 8)], [], 0.0) == []  # returns at once
    time.sleep(0.5)  # the controller is elsewhere; the loop keeps stepping
    steps = engine.steps
    t0 = time.perf_counter()
    done = worker.run([], [], 5.0)
    assert time.perf_counter() - t0 < 0.05 and engine.steps == steps  # nothing left to step
    assert sorted(f.request_id for f in done) == ["a", "b"] and steps == 8
    busy, wall = worker.busy()
    assert 8 * 0.01 <= busy < 0.5 * wall  # 8 steps of 10 ms in at least 0.5 s


def test_run_returns_on_first_finish_and_holds_the_rest():
    engine = StepEngine()
    worker = RolloutWorker.around(engine)
    first = worker.run([req("short", 2), req("long", 30)], [], 5.0)
    assert [f.request_id for f in first] == ["short"]
    assert [f.request_id for f in worker.run([], [], 5.0)] == ["long"]
    assert worker.run([], [], 5.0) == []  # nothing in flight: no wait


def test_weights_load_between_steps_and_versions_stay_exact():
    engine = StepEngine()
    worker = RolloutWorker.around(engine)
    worker.run([req("old", 20)], [], 0.0)
    time.sleep(0.05)
    assert 0 < engine.num_unfinished()  # mid-generation
    worker.load_weights(b"", 1)
    worker.run([req("new", 3)], [], 0.0)
    done = {}
    while len(done) < 2:
        done.update({f.request_id: f for f in worker.run([], [], 5.0)})
    assert done["old"].start_version == 0 and done["new"].start_version == 1


def test_abort_mid_generation_drops_the_request_and_its_held_output():
    engine = StepEngine()
    worker = RolloutWorker.around(engine)
    worker.run([req("gone", 50), req("kept", 10), req("early", 1)], [], 0.0)
    time.sleep(0.05)  # "early" finished into the outbox, the others are mid-generation
    done = worker.run([], ["gone", "early"], 5.0)
    assert [f.request_id for f in done] == ["kept"] and engine.num_unfinished() == 0
    worker.run([req("x", 40)], [], 0.0)
    assert worker.abort_all() == 1 and worker.run([], [], 0.5) == []


def test_scoring_jobs_hold_other_outputs_for_run():
    engine = StepEngine()
    worker = RolloutWorker.around(engine)
    worker.run([req("s", 3)], [], 0.0)
    (lps,) = worker.score([[1, 2, 3]], [20])  # 20 steps: "s" finishes meanwhile
    assert lps == [-0.1]
    assert [f.request_id for f in worker.run([], [], 0.0)] == ["s"]


def test_a_method_waits_at_most_one_step():
    engine = StepEngine(step_s=0.05)
    worker = RolloutWorker.around(engine)
    worker.run([req("long", 100)], [], 0.0)
    time.sleep(0.1)
    waits = []
    for _ in range(5):
        t0 = time.perf_counter()
        worker.version()
        waits.append(time.perf_counter() - t0)
    assert max(waits) < 0.05 + 0.03
    worker.abort_all()


def test_an_engine_error_reaches_the_next_call():
    engine = StepEngine()
    worker = RolloutWorker.around(engine)
    engine.fail = True
    worker.run([req("a", 3)], [], 0.0)
    with pytest.raises(EngineLoopFailed, match="engine broke"):
        worker.run([], [], 1.0)


def test_finished_requests_carry_when_they_were_added_and_finished():
    engine = StepEngine(step_s=0.02)
    worker = RolloutWorker.around(engine)
    t0 = time.time()
    worker.run([req("short", 2)], [], 0.0)
    time.sleep(0.1)
    done = {f.request_id: f for f in worker.run([req("late", 3)], [], 0.0)}  # "short" is back
    for _ in range(100):
        if len(done) == 2:
            break
        done.update({f.request_id: f for f in worker.run([], [], 5.0)})
    short, late = done["short"], done["late"]
    assert t0 <= short.started_s < late.started_s  # stamped when each was added
    assert short.ended_s - short.started_s >= 2 * 0.02  # two engine steps
    assert late.started_s - short.started_s >= 0.1 and late.ended_s >= late.started_s + 0.06
    worker.run([req("gone", 50)], [], 0.0)
    worker.run([], ["gone"], 0.0)
    assert not worker.loop._added  # an aborted request leaves no stamp behind
