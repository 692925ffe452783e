"""Tools the model calls, in the Hermes / Qwen format, and an environment built on them.

A tool is a Python function; its JSON schema (the OpenAI "function" shape that chat templates
render with `apply_chat_template(tools=...)`) comes from its signature and docstring:

    @tool
    def add(a: float, b: float) -> str:
        "Add two numbers."

The model calls tools by writing, anywhere in its turn,

    <tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>

(Hermes 2 Pro's function-calling format, which Qwen2.5's chat template uses).  A call that is
not JSON, names no known tool or has the wrong arguments is not an exception: the model gets an
error text as the tool's result, and the step's `info["tool_call_errors"]` counts it.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean",
               list: "array", dict: "object"}  # fmt: skip
_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_OPEN = "<tool_call>"


@dataclass(frozen=True)
class Tool:
    """A callable tool and the JSON schema the chat template declares."""

    name: str
    fn: Callable[..., Any]
    schema: dict[str, Any]

    def __call__(self, **arguments: Any) -> Any:
        return self.fn(**arguments)


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None,
         description: str | None = None) -> Any:  # fmt: skip
    """Decorator: a function as a `Tool` (schema from its type hints and docstring)."""

    def make(f: Callable[..., Any]) -> Tool:
        return Tool(name or f.__name__, f, function_schema(f, name, description))

    return make(fn) if fn is not None else make


def function_schema(fn: Callable[..., Any], name: str | None = None,
                    description: str | None = None) -> dict[str, Any]:  # fmt: skip
    """OpenAI function schema of `fn`: parameters typed from its annotations, required when they
    have no default, described by the first paragraph of its docstring."""
    hints = typing.get_type_hints(fn)
    props, required = {}, []
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        hint = typing.get_origin(hints.get(p.name)) or hints.get(p.name)
        props[p.name] = {"type": _JSON_TYPES.get(hint, "string")}
        if p.default is p.empty:
            required.append(p.name)
    doc = description or (inspect.getdoc(fn) or "").split("\n\n")[0].strip()
    return {
        "type": "function",
        "function": {
            "name": name or fn.__name__,
            "description": doc,
            "parameters": {"type": "object", "properties": props, "required": required},
        },
    }


@dataclass
class ToolCall:
    """One parsed call: a tool name and its arguments, or why it could not be parsed."""

    name: str = ""
    arguments: dict[str, Any] | None = None
    error: str | None = None


def parse_tool_calls(text: str) -> list[ToolCall]:
    """Every `<tool_call>...</tool_call>` in `text`, in order; a malformed one (not JSON, no
    name, arguments not an object, an unclosed tag) is a ToolCall with `error` set."""
    calls = []
    for body in _CALL.findall(text):
        try:
            obj = json.loads(body)
        except json.JSONDecodeError as exc:
            calls.append(ToolCall(error=f"tool call is not valid JSON ({exc.msg})"))
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            calls.append(ToolCall(error='tool call needs {"name": ..., "arguments": {...}}'))
            continue
        args = obj.get("arguments", {})
        if isinstance(args, str):  # some models write the arguments as a JSON string
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                pass
        if not isinstance(args, dict):
            calls.append(ToolCall(obj["name"], error="tool call arguments must be an object"))
            continue
        calls.append(ToolCall(obj["name"], args))
    if text.count(_OPEN) > len(calls):
        calls.append(ToolCall(error="unclosed <tool_call> tag"))
    return calls


def run_call(call: ToolCall, tools: dict[str, Tool]) -> tuple[str, bool]:
    """(the tool's result as text, whether the call was an error the model made)."""
    if call.error:
        return f"Error: {call.error}", True
    fn = tools.get(call.name)
    if fn is None:
        return f"Error: unknown tool {call.name!r}; tools: {', '.join(sorted(tools))}", True
    try:
        result = fn(**(call.arguments or {}))
    except TypeError as exc:  # wrong or missing arguments
        return f"Error: bad arguments for {call.name}: {exc}", True
    except Exception as exc:  # noqa: BLE001 (a tool's failure is the model's observation)
        return f"Error: {type(exc).__name__}: {exc}", False
    return result if isinstance(result, str) else json.dumps(result), False


class ToolEnv:
    """An environment whose steps run the tools the model calls.

    A turn with tool calls gets their results (one per call, in order) as the next
    observation, in the "tool" role; a turn without one is the final answer, scored by
    `score(answer)` (subclasses: the task's check).  `max_calls` bounds calls per turn."""

    role = "tool"
    tool_list: tuple[Tool, ...] = ()
    max_calls: int = 4

    def __init__(self) -> None:
        self.row: dict[str, Any] = {}
        self.by_name = {t.name: t for t in self.tool_list}
        self.tools = [t.schema for t in self.tool_list]

    def reset(self, row: dict[str, Any]) -> str | None:
        self.row = row
        return None

    def step(self, action: str) -> tuple[str | None, float, bool, dict[str, Any]]:
        calls = parse_tool_calls(action)
        if not calls:
            return None, float(self.score(action)), True, {}
        results, errors = [], 0
        for call in calls[: self.max_calls]:
            text, bad = run_call(call, self.by_name)
            results.append(text)
            errors += bad
        if len(calls) > self.max_calls:  # the model is told, not silently cut off
            results.append(
                f"Error: at most {self.max_calls} tool calls per turn; the rest did not run"
            )
            errors += len(calls) - self.max_calls
        return "\n".join(results), 0.0, False, {"tool_call_errors": errors}

    def score(self, answer: str) -> float:
        """The final answer's reward (default 0: override)."""
        return 0.0
