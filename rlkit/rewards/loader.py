"""Find a reward function from what a recipe wrote: a dotted path, a file path or a short name.

Accepted forms:
    ``"rewards.math:accuracy"``        module (importable from sys.path or the working dir) : attr
    ``"path/to/my_reward.py:brevity"`` a Python file (relative to the working dir) : attr
    ``"math_accuracy"``                a name registered with ``@reward("math_accuracy")``
A short name not registered yet loads the built-ins (``rlkit.plugins.BUILTIN_MODULES``: the
library's own rewards and those of method packages) once, as every registry does on a miss.
Every failure raises :class:`RewardLoadError` with one message naming what was wrong.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from rlkit.plugins import FILE_MODULES as _FILE_MODULES
from rlkit.plugins import import_target, load_attr, load_builtins
from rlkit.rewards.registry import registered, registered_names, reward_meta


class RewardLoadError(ValueError):
    """A reward spec could not be turned into a callable."""


@dataclass
class LoadedReward:
    """A resolved reward function and what the pool needs to know about it.

    ``source`` is a spec string a fresh worker process can load again (None for functions
    defined in ``__main__``, which only thread mode can run).
    """

    fn: Callable[..., Any]
    source: str | None
    name: str
    batch: bool
    is_async: bool
    warmup: Callable[[], Any] | None


def load_reward(path_or_name: str) -> Callable[..., Any]:
    """Return the reward function named by ``path_or_name`` (see module docstring)."""
    return resolve_reward(path_or_name).fn


def resolve_reward(path_or_name: str) -> LoadedReward:
    """Load a reward function and describe it (batch flag, async, source for workers)."""
    spec = str(path_or_name).strip()
    if not spec:
        raise RewardLoadError("empty reward spec; expected 'module:function', 'file.py:function'")
    if ":" in spec:
        target, attr = spec.rsplit(":", 1)
        fn = _load_attr(spec, _import_target(spec, target), attr)
    elif spec.endswith(".py"):
        raise RewardLoadError(f"reward {spec!r}: name the function too, e.g. '{spec}:my_reward'")
    else:
        return _describe(spec, _lookup_name(spec), short_name=spec)
    return _describe(spec, fn)


def _import_target(spec: str, target: str) -> ModuleType:
    return import_target(spec, target, kind="reward", error=RewardLoadError)


def _load_attr(spec: str, module: ModuleType, attr: str) -> Callable[..., Any]:
    return load_attr(spec, module, attr, kind="reward", error=RewardLoadError)


def _lookup_name(spec: str) -> Callable[..., Any]:
    fn = registered(spec)
    if fn is None:
        load_builtins()
        fn = registered(spec)
    if fn is None:
        raise RewardLoadError(
            f"reward {spec!r}: no reward registered under this name "
            f"(registered: {', '.join(registered_names()) or 'none'}); "
            "use 'module:function' or 'path/to/file.py:function'"
        )
    return fn


def _describe(spec: str, fn: Callable[..., Any], short_name: str | None = None) -> LoadedReward:
    """Metadata of ``fn``; its metric name is the short name used, else the attribute name."""
    meta = reward_meta(fn)
    attr_name = short_name or spec.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
    call = getattr(fn, "__call__", None)  # noqa: B004  (callable objects with async __call__)
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)
    return LoadedReward(
        fn=fn,
        source=_source_of(spec, fn),
        name=attr_name,
        batch=meta["batch"],
        is_async=is_async,
        warmup=meta["warmup"],
    )


def _source_of(spec: str, fn: Callable[..., Any]) -> str | None:
    """A spec string that re-loads ``fn`` in a fresh process (files as absolute paths)."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if ":" in spec:
        target, attr = spec.rsplit(":", 1)
        if target.endswith(".py") or "/" in target or os.sep in target:
            return f"{os.path.abspath(os.path.expanduser(target))}:{attr}"
        return spec
    if module is None or qualname is None or module == "__main__" or "<locals>" in qualname:
        return None
    if module in _FILE_MODULES:
        return f"{_FILE_MODULES[module]}:{qualname}"
    return f"{module}:{qualname}"
