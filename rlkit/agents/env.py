"""The environment API: what a user writes in one file to train an agent.

An environment is a class built per trajectory as `Env(**rollout.env_kw)`:

    reset(row: dict) -> str | None
        `row` is the dataset row (the prompt's fields, `prompt` the prompt text).  The returned
        observation opens the conversation after the prompt (None: the prompt alone does).
    step(action: str) -> (observation: str | None, reward: float, done: bool, info: dict)
        `action` is the text of the model's turn.  The observation is the environment's next
        turn (None: nothing to say; the trajectory then ends).

Both may be `async def`; plain ones run in a thread pool (rlkit.agents.env_runner), never on
the controller thread.  `role` (class attribute, default "user") is the chat role the
environment's turns take ("tool" for tool results); `tools` (optional) lists the tool schemas
the chat template declares in the prompt.  Register with `@register_env(name)` or name the class
by path in a recipe (`rollout.env: path/to/file.py:Class`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rlkit.algos.registry import Registry

ENVIRONMENTS: Registry = Registry("environment")


def register_env(name: str, *, override: bool = False):
    """Decorator registering an environment class under `name` (recipes: `rollout.env`)."""
    return ENVIRONMENTS.register(name, override=override)


def load_env(spec: str) -> type:
    """The environment class a recipe names (registered name or `path.py:Class`)."""
    return ENVIRONMENTS[spec]


class EnvGarbage(TypeError):
    """An environment returned something that is not the API's shape."""


@dataclass
class StepResult:
    """One checked environment step."""

    observation: str | None
    reward: float
    done: bool
    info: dict[str, Any] = field(default_factory=dict)


def check_observation(obs: Any) -> str | None:
    """`obs` if it is a string or None; EnvGarbage otherwise."""
    if obs is None or isinstance(obs, str):
        return obs
    raise EnvGarbage(f"observation must be a str or None, got {type(obs).__name__}")


def check_step(out: Any) -> StepResult:
    """A `step` return value checked: a 4-tuple (str|None, finite number, bool, dict|None)."""
    if not isinstance(out, tuple | list) or len(out) != 4:
        raise EnvGarbage(f"step must return (observation, reward, done, info), got {out!r:.80}")
    obs, reward, done, info = out
    if isinstance(reward, bool) or not isinstance(reward, int | float) or not math.isfinite(reward):
        raise EnvGarbage(f"reward must be a finite number, got {reward!r:.40}")
    if not isinstance(done, bool):
        raise EnvGarbage(f"done must be a bool, got {type(done).__name__}")
    if info is not None and not isinstance(info, dict):
        raise EnvGarbage(f"info must be a dict or None, got {type(info).__name__}")
    return StepResult(check_observation(obs), float(reward), done, info or {})
