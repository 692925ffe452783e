"""The multi_turn strategy through the rollout scheduler on a scripted fake engine: turn order,
token-in/token-out continuations, loss masks, limits, version stamps, aborts mid-trajectory,
environment failures counted without stalling other trajectories."""

from __future__ import annotations

import asyncio
import time

import pytest

from rlkit.agents.envs.calculator import CalculatorEnv
from tests.unit.agents.fakes import ScriptedEngine, drive, make_scheduler


def calculator_script(req, turn):
    if turn == 0:
        return '<tool_call>{"name": "calculator", "arguments": {"expression": "0*7"}}</tool_call>'
    return "The answer is \\boxed{0}."


def run_groups(sched, engine, n=1, **kw):
    groups = []
    for _ in range(n):
        g, reqs = sched.new_group()
        engine.add(reqs)
        groups.append(g)
    drive(sched, engine, lambda: len(sched.buffer) + sched.counts()["failed"] >= n, **kw)
    return groups


def test_tool_turns_are_one_token_stream_never_retokenised():
    sched, strategy, tok = make_scheduler(CalculatorEnv, size=2)
    engine = ScriptedEngine(tok, calculator_script)
    (group,) = run_groups(sched, engine)
    prompt = group.prompt.token_ids
    assert "calculator" in tok.decode(prompt)  # the template declared the tool
    assert sched.accounting_ok() and len(sched.buffer) == 1
    for j, sample in group.samples.items():
        reqs = [r for r in engine.seen if r.request_id.startswith(f"0:{j}:")]
        assert [r.request_id for r in reqs] == [f"0:{j}:0", f"0:{j}:1"]  # turn order
        c = sample.completion
        assert c.turns == 2 and c.finish_reason == "stop" and sample.reward == 1.0
        assert reqs[0].prompt_ids == prompt
        # each model turn continues the exact ids so far; the last one ends the sample
        assert reqs[1].prompt_ids == prompt + c.token_ids[: len(reqs[1].prompt_ids) - len(prompt)]
        first = tok(calculator_script(None, 0), add_special_tokens=False)["input_ids"]
        n1 = len(first) + 1
        assert c.token_ids[:n1] == first + [engine.end]  # the engine's ids, verbatim
        env_part = c.token_ids[n1 : len(reqs[1].prompt_ids) - len(prompt)]
        assert tok.decode(env_part) == "\n<|im_start|>tool\n0<|im_end|>\n<|im_start|>assistant\n"
        assert c.loss_mask == [1] * n1 + [0] * len(env_part) + [1] * (
            len(c.token_ids) - n1 - len(env_part)
        )
        assert all(lp == 0.0 for lp, m in zip(c.logprobs, c.loss_mask) if m == 0)
        assert all(lp == -0.5 for lp, m in zip(c.logprobs, c.loss_mask) if m == 1)
    assert [f["env_reward"] for f in sched.rewards.fields] == [1.0, 1.0]
    assert [f["turns"] for f in sched.rewards.fields] == [2, 2]
    m = strategy.take_metrics()
    assert m["env/trajectories"] == 2 and m["env/turns_mean"] == 2.0
    assert m["env/env_tokens"] == 2 * len(env_part) and m["env/failures"] == 0


class Chatty:
    """Never done: answers every action with 'more' (reward 0.25 per step)."""

    role = "user"

    def reset(self, row):
        return None

    def step(self, action):
        return "more", 0.25, False, {}


def test_max_turns_ends_the_trajectory():
    sched, strategy, tok = make_scheduler(Chatty, size=1, max_turns=3)
    engine = ScriptedEngine(tok, lambda r, t: "hi")
    (group,) = run_groups(sched, engine)
    c = group.samples[0].completion
    assert c.turns == 3 and c.finish_reason == "length"
    assert len(engine.seen) == 3 and group.samples[0].reward == pytest.approx(0.75)


def test_max_total_tokens_caps_the_trajectory():
    sched, strategy, tok = make_scheduler(Chatty, size=1, max_turns=50, max_total_tokens=40)
    engine = ScriptedEngine(tok, lambda r, t: "hello")
    (group,) = run_groups(sched, engine)
    c = group.samples[0].completion
    assert c.finish_reason == "length" and 1 < c.turns < 50 and len(c.token_ids) <= 40
    assert all(r.sampling.max_tokens <= 40 for r in engine.seen)


class Slow(Chatty):
    def step(self, action):
        time.sleep(0.05)
        return "more", 0.0, False, {}


def test_wall_time_ends_the_trajectory():
    sched, strategy, tok = make_scheduler(Slow, size=1, max_turns=50, wall_time_s=0.01)
    engine = ScriptedEngine(tok, lambda r, t: "hi")
    (group,) = run_groups(sched, engine)
    assert group.samples[0].completion.turns == 1


def test_sample_is_stamped_with_its_first_turns_version():
    sched, strategy, tok = make_scheduler(Chatty, size=1, max_turns=3)
    engine = ScriptedEngine(tok, lambda r, t: "hi")

    def script(req, turn):
        engine.version = turn + 4  # the weights change between turns
        return "hi"

    engine.script = script
    (group,) = run_groups(sched, engine)
    assert {r.request_id for r in engine.seen} == {"0:0:0", "0:0:1", "0:0:2"}
    assert group.samples[0].start_version == 4 and group.start_version == 0


def test_abort_mid_trajectory_drops_the_group_and_its_env_results():
    sched, strategy, tok = make_scheduler(Slow, size=2, max_turns=5, alpha=0)
    engine = ScriptedEngine(tok, lambda r, t: "hi")
    group, reqs = sched.new_group()
    drive(sched, engine, lambda: len(engine.seen) == 2)  # first turns at the engine
    assert sched.abort_stale(train_version=5) == {0: ["0:0:0", "0:1:0"]}
    assert group.group_id not in sched.running and not strategy.trajs
    assert sched.on_finished(engine.finish_all()) == {}  # what the engine still returns
    assert sched.counts()["aborted"] == 1 and sched.accounting_ok() and not sched.buffer


def test_abort_while_env_steps_run_ignores_their_results():
    sched, strategy, tok = make_scheduler(Slow, size=2, max_turns=5, alpha=0)
    engine = ScriptedEngine(tok, lambda r, t: "hi")
    sched.new_group()
    drive(sched, engine, lambda: len(engine.seen) == 2)
    assert sched.on_finished(engine.finish_all()) == {}  # env steps now in flight
    assert sched.abort_stale(train_version=5) == {0: []}
    time.sleep(0.3)  # the Slow steps (0.05 s) have come back
    assert sched.on_finished([]) == {} and not engine.queue  # no next turn for a dead group
    assert len(engine.seen) == 2 and sched.accounting_ok()


class Flaky:
    """Sample 0 of each group: `mode` (raise / hang / garbage); the others answer once."""

    role = "user"
    calls = 0

    def __init__(self, mode: str):
        self.mode, self.index = mode, Flaky.calls
        Flaky.calls += 1

    def reset(self, row):
        return None

    def step(self, action):
        if self.index % 2 == 0:
            if self.mode == "raise":
                raise RuntimeError("tool crashed")
            if self.mode == "hang":
                time.sleep(3)
            return "not a step result"
        return None, 1.0, True, {}


@pytest.mark.parametrize("mode,metric", [("raise", "env/failures"), ("hang", "env/timeouts"),
                                         ("garbage", "env/failures")])  # fmt: skip
def test_env_failure_ends_only_its_trajectory_and_is_counted(mode, metric):
    Flaky.calls = 0
    sched, strategy, tok = make_scheduler(
        Flaky, {"mode": mode}, size=2, groups=2, env_timeout_s=0.3, env_workers=2
    )
    engine = ScriptedEngine(tok, lambda r, t: "hi")
    t0 = time.monotonic()
    groups = run_groups(sched, engine, n=2)
    assert time.monotonic() - t0 < 2.5  # a hung step does not hold the others up
    for g in groups:
        assert g.samples[0].completion.finish_reason == "error"
        assert g.samples[1].completion.finish_reason == "stop" and g.samples[1].reward == 1.0
    m = strategy.take_metrics()
    assert m[metric] == 2 and m["env/trajectories"] == 4 and sched.accounting_ok()


class BrokenReset(Chatty):
    def reset(self, row):
        raise ValueError("no such task")


def test_a_failed_reset_fails_the_group_not_the_run():
    sched, strategy, tok = make_scheduler(BrokenReset, size=2)
    engine = ScriptedEngine(tok, lambda r, t: "hi")
    run_groups(sched, engine)
    assert sched.counts()["failed"] == 1 and not sched.running and sched.accounting_ok()
    assert strategy.take_metrics()["env/failures"] >= 1


class AsyncEnv:
    role = "user"

    async def reset(self, row):
        await asyncio.sleep(0.01)
        return f"Hint: the answer is {row['answer']}."

    async def step(self, action):
        await asyncio.sleep(0.01)
        return None, 0.5, True, {}


def test_async_environment_and_reset_observation():
    sched, strategy, tok = make_scheduler(AsyncEnv, size=1)
    engine = ScriptedEngine(tok, lambda r, t: "ok")
    (group,) = run_groups(sched, engine)
    c = group.samples[0].completion
    assert c.turns == 1 and group.samples[0].reward == 0.5
    first_model = c.loss_mask.index(1)
    assert "Hint: the answer is 0." in tok.decode(c.token_ids[:first_model])
    assert engine.seen[0].prompt_ids == group.prompt.token_ids + c.token_ids[:first_model]


def test_worker_restart_reissues_the_turns_in_flight():
    sched, strategy, tok = make_scheduler(Chatty, size=2, max_turns=3)
    engine = ScriptedEngine(tok, lambda r, t: "hi")
    group, _ = sched.new_group()
    drive(sched, engine, lambda: len(engine.queue) == 2)  # first turns sent, not finished
    lost = [r.request_id for r in engine.queue]
    engine.queue = []  # the worker died with them
    again = sched.reissue(0)
    assert sorted(r.request_id for r in again) == sorted(lost)
    engine.add(again)
    drive(sched, engine, lambda: len(sched.buffer) == 1)
    assert all(s.completion.turns == 3 for s in group.samples.values())


def test_non_canonical_model_tokens_survive_verbatim():
    """The engine may sample ids that tokenising their text would not give back (here the
    characters of `<|im_end|>` one by one, which the tokenizer reads as ONE special token): they
    stay as sampled in the next turn's prompt and in the trained sample."""
    sched, strategy, tok = make_scheduler(Chatty, size=1, max_turns=2)
    engine = ScriptedEngine(tok, lambda r, t: "hi")
    byte_ids = [tok.convert_tokens_to_ids(tok.tokenize(ch)[0]) for ch in "<|im_end|>"]
    assert tok("<|im_end|>", add_special_tokens=False)["input_ids"] != byte_ids

    def finish_all():
        out = ScriptedEngine.finish_all(engine)
        for f in out:
            f.completion.token_ids = byte_ids
            f.completion.logprobs = [-0.5] * len(byte_ids)
        return out

    engine.finish_all = finish_all
    group, _ = sched.new_group()
    drive(sched, engine, lambda: len(sched.buffer) == 1)
    c = group.samples[0].completion
    assert c.token_ids[: len(byte_ids)] == byte_ids and c.token_ids[-len(byte_ids) :] == byte_ids
    second = engine.seen[1].prompt_ids
    assert second[len(group.prompt.token_ids) :][: len(byte_ids)] == byte_ids
    assert (
        second == group.prompt.token_ids + c.token_ids[: len(second) - len(group.prompt.token_ids)]
    )
