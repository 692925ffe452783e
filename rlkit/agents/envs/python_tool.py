"""`python_tool`: maths or code problems with a Python tool that runs in the sandbox.

`python(code)` runs the code with `rlkit.sandbox.run_python` (no network, no host files, rlimits,
a wall-clock timeout; docs/reliability.md) and returns its output, so the model can compute
instead of guessing.  The final answer (a turn without a tool call) scores 1 when its number
(boxed, else the last one) equals the row's `answer`.
"""

from __future__ import annotations

from rlkit.agents.env import register_env
from rlkit.agents.envs.answers import final_number, same_number
from rlkit.agents.tools import Tool, ToolEnv, function_schema

MAX_OUTPUT = 2000  # characters of a tool result the model sees


def make_python_tool(timeout_s: float = 5.0, memory_mb: int = 512) -> Tool:
    """A `python` tool: run code in the sandbox, return stdout (and stderr when it failed)."""

    def python(code: str) -> str:
        """Run Python code in a sandbox and return what it prints."""
        from rlkit.sandbox import run_python

        res = run_python(code, timeout_s=timeout_s, memory_mb=memory_mb)
        out = res.stdout
        if res.timed_out:
            out += f"\n[timed out after {timeout_s}s]"
        elif res.exit_code:
            out += f"\n[exit code {res.exit_code}]\n{res.stderr[-MAX_OUTPUT // 2 :]}"
        return out[-MAX_OUTPUT:] or "[no output]"

    return Tool("python", python, function_schema(python))


@register_env("python_tool")
class PythonToolEnv(ToolEnv):
    """Rows {"prompt", "answer"}; reward 1 for a right final answer."""

    def __init__(self, max_calls: int = 2, timeout_s: float = 5.0, memory_mb: int = 512):
        self.tool_list = (make_python_tool(timeout_s, memory_mb),)
        super().__init__()
        self.max_calls = max_calls

    def score(self, answer: str) -> float:
        return float(same_number(final_number(answer), self.row.get("answer")))
