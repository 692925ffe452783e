"""Warm-start demonstrations (rlkit.agents.demos, `sft.demo_rate`): a demonstration is laid out
token for token as the multi_turn strategy lays out the same turns at rollout time, with the
environment's tokens untrained; the SFT batch trains exactly the model tokens."""

from __future__ import annotations

import pytest

from rlkit.agents.demos import demonstration_ids, with_demonstrations
from rlkit.agents.envs.calculator import CalculatorEnv
from rlkit.agents.turns import TurnEncoder
from rlkit.data import sft as sft_mod
from rlkit.data.tiny_model import build_char_tokenizer
from tests.unit.agents.fakes import ScriptedEngine, drive, make_scheduler


def test_a_demonstration_is_the_trajectory_multi_turn_builds_from_the_same_turns():
    sched, _, tok = make_scheduler(CalculatorEnv, size=1)
    group, reqs = sched.new_group()  # prompt "What is 0*7?", answer "0"
    row = {**group.prompt.fields, "prompt": group.prompt.text}
    demo_turns = CalculatorEnv().demonstration(row)
    engine = ScriptedEngine(tok, lambda req, turn: demo_turns[turn])
    engine.add(reqs)
    drive(sched, engine, lambda: len(sched.buffer) == 1)
    rollout = group.samples[0].completion
    ids, mask, reward = demonstration_ids(CalculatorEnv(), row, TurnEncoder(tok, True), engine.end)
    assert ids == rollout.token_ids and mask == rollout.loss_mask  # token for token
    assert reward == 1.0 == group.samples[0].reward and rollout.turns == 2
    assert "0*7" in demo_turns[0] and demo_turns[1] == "\\boxed{0}"


def test_without_a_chat_template_the_tool_result_sits_between_newlines():
    tok = build_char_tokenizer()
    row = {"prompt": "37*58=", "answer": "2146"}
    ids, mask, reward = demonstration_ids(
        CalculatorEnv(), row, TurnEncoder(tok, False), tok.eos_token_id
    )
    call = '<tool_call>{"name": "calculator", "arguments": {"expression": "37*58"}}</tool_call>'
    eos = tok.eos_token
    assert tok.decode(ids) == f"{call}{eos}\n2146\n\\boxed{{2146}}{eos}" and reward == 1.0
    untrained = tok.decode([i for i, m in zip(ids, mask) if m == 0])
    assert untrained == "\n2146\n"  # the environment's turn only


def test_a_rate_share_of_rows_gets_demonstrations_deterministically():
    tok = build_char_tokenizer()
    rows = [{"prompt": f"{a}*3=", "answer": str(3 * a), "target": "x"} for a in range(400)]
    enc = TurnEncoder(tok, False)
    out, reward = with_demonstrations(rows, CalculatorEnv, {}, enc, 1, rate=0.25, seed=0)
    again, _ = with_demonstrations(rows, CalculatorEnv, {}, enc, 1, rate=0.25, seed=0)
    shown = [r for r in out if "target_ids" in r]
    assert 70 <= len(shown) <= 130 and reward == 1.0 and out == again
    assert all(r["target"] == "x" for r in out)  # the others keep their plain target
    with pytest.raises(ValueError, match="demonstration"):
        with_demonstrations(rows, object, {}, enc, 1, rate=0.5, seed=0)


def test_sft_trains_model_tokens_of_a_demonstration_and_not_the_environments():
    tok = build_char_tokenizer()
    row = {"prompt": "37*58=", "answer": "2146"}
    ids, mask, _ = demonstration_ids(CalculatorEnv(), row, TurnEncoder(tok, False), 1)
    plain = {"prompt": "2*3=", "answer": "6"}
    examples = sft_mod._encode(tok, [{**row, "target_ids": ids, "target_mask": mask}, plain],
                               sft_mod.format_target)  # fmt: skip
    _, attn, labels = sft_mod._collate(examples, tok.pad_token_id)
    n_prompt = len("37*58=")
    trained = (labels[0] != -100).tolist()
    assert trained == [False] * n_prompt + [bool(m) for m in mask] + [False] * (
        labels.shape[1] - n_prompt - len(ids)
    )
    assert tok.decode(labels[1][labels[1] != -100].tolist()) == f"\\boxed{{6}}{tok.eos_token}"
    assert int(attn[1].sum()) == len("2*3=\\boxed{6}") + 1


@pytest.mark.parametrize(
    ("over", "says"),
    [
        ({"sft": {"steps": 10, "demo_rate": 1.5}}, "must be in"),
        ({"sft": {"demo_rate": 0.5}}, "sft.steps"),
        ({"sft": {"steps": 10, "demo_rate": 0.5}, "rollout": {"env": None}}, "rollout.env"),
    ],
)
def test_a_bad_demo_rate_is_one_config_error_before_start(over, says):
    from rlkit.config import ConfigError
    from rlkit.config.loader import config_from_dict
    from rlkit.runtime.recipe_checks import check_demonstrations

    recipe = {
        "name": "x",
        "model": {"kind": "tiny"},
        "rollout": {"strategy": "multi_turn", "env": "calculator"},
    }
    for section, values in over.items():
        recipe[section] = {**recipe.get(section, {}), **values}
    with pytest.raises(ConfigError, match="sft.demo_rate") as err:
        check_demonstrations(config_from_dict(recipe))
    assert says in str(err.value)
