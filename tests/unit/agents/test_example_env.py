"""The worked example of docs/agents.md, named by path as a recipe names it, run through the
rollout scheduler on a scripted engine; and the recipe checks of `rollout.env` / `env_kw`."""

from __future__ import annotations

import pytest

from rlkit.agents.env import load_env
from rlkit.config import ConfigError
from rlkit.config.loader import config_from_dict
from rlkit.runtime.prepare import check_plugins
from tests.unit.agents.fakes import ScriptedEngine, drive, make_scheduler

SPEC = "docs/examples/guess_number.py:GuessNumber"


def test_guess_number_by_path_through_the_scheduler():
    env_cls = load_env(SPEC)
    sched, strategy, tok = make_scheduler(env_cls, {"low": 0, "high": 10}, size=1, max_turns=4)
    guesses = iter(["5", "2", "0"])  # the secret of prompt 0 is its answer, 0*7 = 0
    engine = ScriptedEngine(tok, lambda r, t: f"I guess {next(guesses)}")
    group, _ = sched.new_group()
    drive(sched, engine, lambda: len(sched.buffer) == 1)
    s = group.samples[0]
    assert s.completion.turns == 3 and s.completion.finish_reason == "stop" and s.reward == 1.0
    text = tok.decode(s.completion.token_ids)
    assert "5 is wrong: go lower." in text and "2 is wrong: go lower." in text
    env_text = tok.decode(
        [t for t, m in zip(s.completion.token_ids, s.completion.loss_mask) if not m]
    )
    assert "go lower" in env_text and "I guess" not in env_text


def recipe(**rollout):
    return config_from_dict(
        {"model": {"kind": "tiny"}, "rollout": rollout, "reward": {"fns": [{"fn": "env_reward"}]}}
    )


def test_env_and_knobs_are_checked_before_the_run():
    check_plugins(recipe(strategy="multi_turn", env=SPEC, env_kw={"high": 9}))
    bad = [
        ({"strategy": "multi_turn", "env": SPEC, "env_kw": {"hihg": 9}}, "rollout.env_kw", "hihg"),
        ({"strategy": "multi_turn", "env": "no_such_env"}, "rollout.env", "no_such_env"),
        ({"strategy": "multi_turn"}, "rollout.env", "needs an environment"),
        ({"env": "calculator"}, "rollout.env", "runs no environment"),
        ({"strategy": "multi_turn", "env": "calculator", "strategy_kw": {"max_turn": 2}},
         "rollout.strategy_kw", "max_turn"),
    ]  # fmt: skip
    for rollout, key, words in bad:
        with pytest.raises(ConfigError) as exc:
            check_plugins(recipe(**rollout))
        assert key in str(exc.value) and words in str(exc.value), (rollout, str(exc.value))
