"""The ``@reward`` decorator: marks batch functions and registers short names.

``@reward("name")`` lets a recipe write ``fn: name`` instead of a path. ``@reward(batch=True)``
marks a function taking lists (``fn(prompts, completions, **fields_as_lists) -> list``).
``warmup`` is an optional zero-argument callable a worker process runs once at start-up (e.g.
importing a heavy library) so that its cost is not charged to the first timed call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

ATTR = "__rlkit_reward__"
_REGISTRY: dict[str, Callable[..., Any]] = {}


def reward(
    name: str | Callable[..., Any] | None = None,
    *,
    batch: bool = False,
    warmup: Callable[[], Any] | None = None,
) -> Any:
    """Decorate a reward function; usable bare (``@reward``) or called (``@reward("acc")``)."""
    if callable(name):  # bare @reward
        return _mark(name, None, batch, warmup)

    def deco(fn: F) -> F:
        return _mark(fn, name, batch, warmup)

    return deco


def _mark(fn: F, name: str | None, batch: bool, warmup: Callable[[], Any] | None) -> F:
    setattr(fn, ATTR, {"name": name, "batch": bool(batch), "warmup": warmup})
    if name is not None:
        old = _REGISTRY.get(name)
        if old is not None and _identity(old) != _identity(fn):
            raise ValueError(
                f"reward name {name!r} is already registered by {_identity(old)}; "
                f"cannot register {_identity(fn)} under the same name"
            )
        _REGISTRY[name] = fn
    return fn


def _identity(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"


def reward_meta(fn: Callable[..., Any]) -> dict[str, Any]:
    """Decorator metadata of ``fn`` (defaults for undecorated plain functions)."""
    return getattr(fn, ATTR, None) or {"name": None, "batch": False, "warmup": None}


def registered(name: str) -> Callable[..., Any] | None:
    """The function registered under ``name``, or None."""
    return _REGISTRY.get(name)


def registered_names() -> list[str]:
    """All registered short names, sorted."""
    return sorted(_REGISTRY)
