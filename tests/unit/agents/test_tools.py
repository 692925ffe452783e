"""Tool calls in the Hermes/Qwen format: parsing (malformed calls included), schemas from
Python functions, the tool environment's steps and the shipped calculator / python envs."""

from __future__ import annotations

import pytest

from rlkit.agents.env import ENVIRONMENTS, EnvGarbage, check_step
from rlkit.agents.envs.calculator import CalculatorEnv, calculator, evaluate
from rlkit.agents.tools import function_schema, parse_tool_calls, run_call


def test_parse_well_formed_calls_in_order():
    text = (
        'Let me compute. <tool_call>{"name": "calculator", "arguments": {"expression": "2+3"}}'
        '</tool_call> and <tool_call>\n{"name": "f", "arguments": "{\\"x\\": 1}"}\n</tool_call>'
    )
    calls = parse_tool_calls(text)
    assert [(c.name, c.arguments, c.error) for c in calls] == [
        ("calculator", {"expression": "2+3"}, None),
        ("f", {"x": 1}, None),  # arguments given as a JSON string
    ]
    assert parse_tool_calls("no tools here, the answer is 5") == []


@pytest.mark.parametrize(
    "text,error",
    [
        ("<tool_call>{not json}</tool_call>", "not valid JSON"),
        ('<tool_call>{"arguments": {}}</tool_call>', '"name"'),
        ('<tool_call>["calculator"]</tool_call>', '"name"'),
        ('<tool_call>{"name": "calculator", "arguments": [1]}</tool_call>', "must be an object"),
        ('<tool_call>{"name": "calculator", "arguments": {}}', "unclosed"),
    ],
)
def test_malformed_calls_are_errors_not_exceptions(text, error):
    (call,) = parse_tool_calls(text)
    assert call.error and error in call.error
    result, bad = run_call(call, {"calculator": calculator})
    assert bad and result.startswith("Error:")


def test_unknown_tool_and_bad_arguments_are_model_errors():
    tools = {"calculator": calculator}
    (unknown,) = parse_tool_calls('<tool_call>{"name": "web", "arguments": {}}</tool_call>')
    assert run_call(unknown, tools) == ("Error: unknown tool 'web'; tools: calculator", True)
    (wrong,) = parse_tool_calls(
        '<tool_call>{"name": "calculator", "arguments": {"x": 1}}</tool_call>'
    )
    text, bad = run_call(wrong, tools)
    assert bad and "bad arguments" in text
    (div,) = parse_tool_calls(
        '<tool_call>{"name": "calculator", "arguments": {"expression": "1/0"}}</tool_call>'
    )
    text, bad = run_call(div, tools)
    assert not bad and text.startswith("Error: ValueError")  # the tool failed, not the model


def test_schema_from_a_python_function():
    def lookup(city: str, days: int = 1, metric: bool = True) -> str:
        """Weather forecast for a city.

        More text that is not the description."""
        return ""

    fn = function_schema(lookup)["function"]
    assert fn["name"] == "lookup" and fn["description"] == "Weather forecast for a city."
    assert fn["parameters"]["properties"] == {
        "city": {"type": "string"}, "days": {"type": "integer"}, "metric": {"type": "boolean"},
    }  # fmt: skip
    assert fn["parameters"]["required"] == ["city"]


def test_calculator_evaluates_arithmetic_only():
    assert evaluate("(12 + 3) * 4 - 2 ** 3") == 52
    assert calculator(expression="7/2") == "3.5" and calculator(expression="6*7") == "42"
    for bad in ["__import__('os')", "a + 1", "9 ** 9 ** 9", "1/0", "2 +"]:
        with pytest.raises(ValueError):
            evaluate(bad)


def test_calculator_env_steps_and_scores():
    env = ENVIRONMENTS["calculator"]()
    assert isinstance(env, CalculatorEnv) and env.role == "tool"
    assert env.tools[0]["function"]["name"] == "calculator"
    assert env.reset({"prompt": "17*23=", "answer": "391"}) is None
    obs, reward, done, info = env.step(
        '<tool_call>{"name": "calculator", "arguments": {"expression": "17*23"}}</tool_call>'
        "<tool_call>{oops}</tool_call>"
    )
    assert obs.split("\n")[0] == "391" and obs.split("\n")[1].startswith("Error:")
    assert (reward, done, info) == (0.0, False, {"tool_call_errors": 1})
    assert env.step("So 17*23 = \\boxed{391}") == (None, 1.0, True, {})
    assert env.step("It is 390")[1] == 0.0


def test_python_tool_env_runs_code_in_the_sandbox():
    from rlkit.sandbox import SandboxUnavailable, run_python

    try:
        run_python("print(1)", timeout_s=5)
    except SandboxUnavailable as exc:
        pytest.skip(f"no sandbox here: {exc}")
    env = ENVIRONMENTS["python_tool"]()
    env.reset({"prompt": "2**20?", "answer": "1048576"})
    obs, reward, done, info = env.step(
        '<tool_call>{"name": "python", "arguments": {"code": "print(2**20)"}}</tool_call>'
    )
    assert obs.strip() == "1048576" and not done and info == {"tool_call_errors": 0}
    assert env.step("\\boxed{1048576}")[1:3] == (1.0, True)


@pytest.mark.parametrize(
    "out",
    ["obs", ("obs", 1.0, True), ("obs", float("nan"), True, {}), ("obs", 1.0, "yes", {}),
     (3, 1.0, True, {}), ("obs", 1.0, True, ["info"]), ("obs", True, True, {})],
)  # fmt: skip
def test_garbage_step_results_are_rejected(out):
    with pytest.raises(EnvGarbage):
        check_step(out)
    assert check_step(("o", 1, False, None)).reward == 1.0


def test_calls_past_max_calls_are_refused_and_counted():
    env = CalculatorEnv(max_calls=1)
    env.reset({"answer": "3"})
    call = '<tool_call>{"name": "calculator", "arguments": {"expression": "1+2"}}</tool_call>'
    obs, _, done, info = env.step(call * 3)
    assert obs.split("\n") == ["3", "Error: at most 1 tool calls per turn; the rest did not run"]
    assert not done and info == {"tool_call_errors": 2}
