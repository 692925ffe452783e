"""Call one reward function on a task, the same way in worker processes and in threads.

A task always carries lists (``prompts``, ``completions``, ``fields_list``): a per-sample
function is called once per sample, a batch function once with the lists (fields transposed to
``{column: [values]}``). Only the keyword arguments the function accepts are passed (all of them
if it takes ``**kwargs``), so a reward need not list every dataset column. ``async def`` rewards
run on an event loop owned by the calling thread, kept for the thread's life so that clients
created by the reward (HTTP sessions) can be reused.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import traceback
from collections.abc import Callable
from typing import Any

from rlkit.rewards.types import RewardOutputError, normalize_output

# Columns that would collide with the positional arguments; never passed as keywords.
_RESERVED = frozenset({"prompt", "completion", "prompts", "completions"})
_local = threading.local()


def format_error(exc: BaseException, limit: int = 6) -> str:
    """``Type: message`` plus the innermost traceback frames (where the reward failed)."""
    frames = traceback.format_tb(exc.__traceback__)[-limit:]
    return f"{type(exc).__name__}: {exc}\n" + "".join(frames).rstrip()


def _thread_loop() -> asyncio.AbstractEventLoop:
    loop = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _local.loop = loop
    return loop


def _resolve(value: Any) -> Any:
    if inspect.isawaitable(value):
        return _thread_loop().run_until_complete(value)
    return value


class Invoker:
    """Binds a reward function to its fixed recipe kwargs and its keyword filter.

    ``ctx`` (a :class:`rlkit.rewards.models.RewardContext`: ``ctx.models[name]`` are the
    recipe's reward models) is passed as the keyword ``ctx`` to functions that name a ``ctx``
    parameter, and only to those (a ``**kwargs`` function does not get it unasked); it wins
    over a dataset column called ``ctx``."""

    def __init__(
        self,
        fn: Callable[..., Any],
        batch: bool,
        kwargs: dict[str, Any] | None = None,
        ctx: Any = None,
    ):
        self.fn = fn
        self.batch = batch
        self.kwargs = dict(kwargs or {})
        self._accepts = _accepted_keywords(fn)
        self.ctx = ctx if ctx is not None and _names_ctx(fn) else None

    def _filter(self, fields: dict[str, Any]) -> dict[str, Any]:
        merged = {k: v for k, v in fields.items() if k not in _RESERVED}
        merged.update(self.kwargs)
        if self._accepts is not None:
            merged = {k: v for k, v in merged.items() if k in self._accepts}
        if self.ctx is not None:
            merged["ctx"] = self.ctx
        return merged

    def __call__(
        self, prompts: list[str], completions: list[str], fields_list: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Run the function; return one normalized output per sample (see ``normalize_output``)."""
        if not self.batch:
            return [
                normalize_output(_resolve(self.fn(p, c, **self._filter(f))))
                for p, c, f in zip(prompts, completions, fields_list, strict=True)
            ]
        columns = _transpose(fields_list)
        raw = _resolve(self.fn(list(prompts), list(completions), **self._filter(columns)))
        if isinstance(raw, (str, bytes, dict)) or not hasattr(raw, "__len__"):
            raise RewardOutputError(f"batch reward must return a list, got {type(raw).__name__}")
        if len(raw) != len(prompts):
            raise RewardOutputError(
                f"batch reward returned {len(raw)} values for {len(prompts)} samples"
            )
        return [normalize_output(r) for r in raw]


def _transpose(fields_list: list[dict[str, Any]]) -> dict[str, list[Any]]:
    keys: dict[str, None] = {}
    for row in fields_list:
        keys.update(dict.fromkeys(row))
    return {k: [row.get(k) for row in fields_list] for k in keys}


def _accepted_keywords(fn: Callable[..., Any]) -> frozenset[str] | None:
    """Names ``fn`` accepts as keywords after its two positionals; None means "any"."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    skip = {p.name for p in positional[:2]}
    return frozenset(
        p.name
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in skip
    )


def _names_ctx(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    p = params.get("ctx")
    return p is not None and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
