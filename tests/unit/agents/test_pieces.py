"""Small pieces of the agent path: the env_reward reward, turns without a chat template, the
latency percentiles."""

from __future__ import annotations

import pytest

from rlkit.agents.metrics import AgentMetrics, percentile
from rlkit.agents.turns import TurnEncoder
from rlkit.rewards.loader import load_reward
from tests.unit.agents.fakes import chat_tokenizer


def test_env_reward_returns_the_trajectory_sum():
    fn = load_reward("env_reward")
    assert fn("p", "c", env_reward=1.5, turns=3) == 1.5
    with pytest.raises(ValueError, match="multi_turn"):
        fn("p", "c")


def test_without_a_chat_template_the_observation_goes_between_newlines():
    tok = chat_tokenizer()
    plain = TurnEncoder(tok, chat_template=False)
    assert plain.env_turn("42", "tool", last_model_token=7) == plain.encode("\n42\n")
    assert plain.prompt_with_tools("q", [{"type": "function"}]) is None
    chat = TurnEncoder(tok, chat_template=True)
    assert chat.prompt_with_tools("q", None) is None  # no tools: the prompt stays as it is


def test_percentiles_and_metrics_reset_each_step():
    assert percentile([], 50) == 0.0
    xs = [float(i) for i in range(1, 101)]
    assert (
        percentile(xs, 50) == 50.0 and percentile(xs, 95) == 95.0 and percentile([3.0], 95) == 3.0
    )
    m = AgentMetrics(latencies=xs)
    m.ended(turns=3, model_tokens=10, env_tokens=4)
    m.ended(turns=1, model_tokens=5, env_tokens=0)
    out = m.take()
    assert out["env/turns_mean"] == 2.0 and out["env/env_tokens"] == 4
    assert out["env/model_tokens"] == 15 and out["env/step_latency_p95_s"] == 95.0
    assert m.take()["env/trajectories"] == 0


def test_final_answers_match_gsm8k_golds_and_thousands_separators():
    from rlkit.agents.envs.answers import final_number, same_number

    gold = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 1,072"
    assert same_number(final_number("So she sold 1,072 clips."), gold)
    assert same_number(final_number("\\boxed{1072}"), gold)
    assert not same_number(final_number("\\boxed{1071}"), gold)
    assert same_number("7", 7) and not same_number(None, "7") and not same_number("x", "7")
