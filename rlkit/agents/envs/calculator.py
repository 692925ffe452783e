"""`calculator`: arithmetic problems with a calculator tool.

The model may call `calculator(expression)` (+ - * / ** and parentheses over numbers; evaluated
on the syntax tree, never by `eval`) any number of times, then answers; the answer scores 1 when
its number (boxed, else the last one) equals the row's `answer`.  A small model that cannot
multiply two-digit numbers in its head can still get them right through the tool, which is what
this environment is for (recipes/agents_calculator_cpu.yaml).
"""

from __future__ import annotations

import ast
import json
import operator
import re

from rlkit.agents.env import register_env
from rlkit.agents.envs.answers import final_number, same_number
from rlkit.agents.tools import ToolEnv, tool

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow}  # fmt: skip
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_ARITHMETIC = re.compile(r"[\d.()+\-*/ ]+")
MAX_POWER = 64  # 10**64 is plenty; 9**9**9 would hang the pool


def evaluate(expression: str) -> float:
    """Value of an arithmetic expression (ValueError for anything else)."""

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](ev(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > MAX_POWER:
                raise ValueError("exponent too large")
            return _BINARY[type(node.op)](left, right)
        raise ValueError(f"not arithmetic: {ast.unparse(node)[:40]}")

    try:
        return ev(ast.parse(expression, mode="eval").body)
    except (SyntaxError, ZeroDivisionError, OverflowError) as exc:
        raise ValueError(str(exc)) from None


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression (numbers, + - * / ** and parentheses)."""
    value = evaluate(expression)
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


@register_env("calculator")
class CalculatorEnv(ToolEnv):
    """Rows {"prompt", "answer"} (e.g. `data.kind: arithmetic`); reward 1 for a right final
    answer, 0 otherwise."""

    tool_list = (calculator,)

    def __init__(self, max_calls: int = 4):
        super().__init__()
        self.max_calls = max_calls

    def score(self, answer: str) -> float:
        return float(same_number(final_number(answer), self.row.get("answer")))

    def demonstration(self, row: dict) -> list[str]:
        """A worked trajectory for the warm start (rlkit.agents.demos): call the calculator on
        the row's expression (its "expression" field, else the arithmetic in its prompt), then
        box the tool's result."""
        expression = str(row.get("expression") or _expression_in(row["prompt"]))
        call = {"name": "calculator", "arguments": {"expression": expression}}
        result = calculator(expression=expression)
        return [f"<tool_call>{json.dumps(call)}</tool_call>", f"\\boxed{{{result}}}"]


def _expression_in(prompt: str) -> str:
    """The longest run of arithmetic characters in `prompt` ("Compute 12*34=" -> "12*34")."""
    runs = [m.group().strip() for m in _ARITHMETIC.finditer(prompt)]
    best = max((r for r in runs if any(c.isdigit() for c in r)), key=len, default=None)
    if best is None:
        raise ValueError(f"no arithmetic expression in the prompt {prompt[:60]!r}")
    return best
