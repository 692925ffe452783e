"""Name -> function registries for advantage estimators and policy losses.

Why: the trainer and configs pick algorithms by string name; a registry keeps that mapping in one
place and gives one clear error (naming the unknown key and listing the known ones) on a typo.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class UnknownNameError(KeyError, ValueError):
    """Raised for an unknown registry / mode name; is both a KeyError and a ValueError."""

    def __init__(self, kind: str, name: object, known: Iterable[str]) -> None:
        self.kind, self.name, self.known = kind, name, sorted(known)
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(self.known)}")

    def __str__(self) -> str:  # KeyError would repr() the message; print it plainly
        return str(self.args[0])


def check_choice(kind: str, name: str, known: Iterable[str]) -> str:
    """Return ``name`` if it is in ``known``, else raise :class:`UnknownNameError`."""
    known = list(known)
    if name not in known:
        raise UnknownNameError(kind, name, known)
    return name


class Registry(dict):
    """A dict of name -> callable whose missing-key error names the key and the known names."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def __missing__(self, name: str) -> Any:
        """A `module:function` or `path/to/file.py:function` spec loads user code (cached); a
        plain name not yet registered loads the built-ins first (rlkit.plugins.BUILTIN_MODULES)."""
        from rlkit.plugins import load_builtins, load_callable

        if isinstance(name, str) and ":" in name:
            self[name] = load_callable(name, kind=self.kind)
            return self[name]
        load_builtins()
        if dict.__contains__(self, name):
            return dict.__getitem__(self, name)
        raise UnknownNameError(self.kind, name, self.keys())

    def __contains__(self, name: object) -> bool:
        if not dict.__contains__(self, name):
            from rlkit.plugins import load_builtins

            load_builtins()
        return dict.__contains__(self, name)

    def names(self) -> list[str]:
        """Every registered name, built-ins included (sorted)."""
        from rlkit.plugins import load_builtins

        load_builtins()
        return sorted(self)

    def register(self, name: str, *, override: bool = False) -> Callable[[F], F]:
        """Decorator registering ``fn`` under ``name``; re-registering needs ``override=True``."""

        def deco(fn: F) -> F:
            if dict.__contains__(self, name) and not override:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self[name] = fn
            return fn

        return deco


ADVANTAGES: Registry = Registry("advantage estimator")
POLICY_LOSSES: Registry = Registry("policy loss")
LOSS_TERMS: Registry = Registry("loss term")
TOKEN_HOOKS: Registry = Registry("trainer token hook")


def register_advantage(name: str, *, override: bool = False) -> Callable[[F], F]:
    """Register an advantage estimator ``fn(*, rewards, group_ids, mask, values, **knobs)``."""
    return ADVANTAGES.register(name, override=override)


def register_policy_loss(name: str, *, override: bool = False) -> Callable[[F], F]:
    """Register a policy loss.

    The function takes keyword tensors ``logprobs, old_logprobs, advantages ([B, T]), mask (bool
    [B, T]), behavior_logprobs`` plus its knobs and returns ``(per_token_loss [B, T], loss_mask
    bool [B, T], metrics dict)``; :func:`rlkit.algos.policy_loss` aggregates and adds ``pg/loss``.
    """
    return POLICY_LOSSES.register(name, override=override)


def register_loss_term(name: str, *, override: bool = False) -> Callable[[F], F]:
    """Register a loss term ``fn(ctx: LossContext, **knobs) -> (scalar loss, metrics)``
    (see rlkit.algos.loss_terms); the trainer adds ``weight * loss`` of every configured term."""
    return LOSS_TERMS.register(name, override=override)


def register_token_hook(name: str, *, override: bool = False) -> Callable[[F], F]:
    """Register a trainer-side token-weight hook factory ``fn(**knobs) -> TokenHook`` (see
    rlkit.algos.loss_terms.TokenHook): it reads the training forward and adds detached streams."""
    return TOKEN_HOOKS.register(name, override=override)
