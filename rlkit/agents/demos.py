"""Multi-turn demonstrations for the supervised warm start (`sft.demo_rate`, docs/agents.md).

A small model rarely writes a well-formed tool call on its own, so GRPO never sees one to
reinforce (SmolLM2-135M: 0-4% of samples zero-shot).  An environment that can show a worked
trajectory offers `demonstration(row) -> list[str]`: the texts of the model's turns that solve
`row`.  Here they are played against the real environment (`reset`, then `step` on each
turn), and the trajectory is laid out exactly as the `multi_turn` strategy lays it out at
rollout time (rlkit.agents.turns.TurnEncoder): each model turn's tokens and the EOS that ends it,
trained; each environment turn as the chat template (or the plain newline framing) renders it,
not trained.  So the warm start teaches the token sequences RL will sample, and nothing the
environment writes.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import Sequence
from typing import Any

from rlkit.agents.env import check_observation, check_step
from rlkit.agents.turns import TurnEncoder


def _call(fn: Any, *args: Any) -> Any:
    """A plain or async environment method, run to its result."""
    out = fn(*args)
    return asyncio.run(out) if inspect.iscoroutine(out) else out


def demonstration_ids(
    env: Any, row: dict[str, Any], encoder: TurnEncoder, eos_id: int
) -> tuple[list[int], list[int], float]:
    """(token ids after the prompt, 1 on model tokens / 0 on environment tokens, the summed
    step reward) of `env`'s demonstration for `row`."""
    ids: list[int] = []
    mask: list[int] = []
    role = getattr(env, "role", "user")

    def env_turn(obs: str, last: int | None) -> None:
        part = encoder.env_turn(obs, role, last)
        ids.extend(part)
        mask.extend([0] * len(part))

    opening = check_observation(_call(env.reset, row))
    if opening is not None:
        env_turn(opening, None)
    reward = 0.0
    for text in env.demonstration(row):
        turn = encoder.encode(text) + [eos_id]
        ids.extend(turn)
        mask.extend([1] * len(turn))
        step = check_step(_call(env.step, text))
        reward += step.reward
        if step.done or step.observation is None:
            break
        env_turn(step.observation, eos_id)
    return ids, mask, reward


def with_demonstrations(
    rows: Sequence[dict[str, Any]],
    env_cls: type,
    env_kw: dict[str, Any],
    encoder: TurnEncoder,
    eos_id: int,
    *,
    rate: float,
    seed: int,
) -> tuple[list[dict[str, Any]], float]:
    """Copies of `rows` where a `rate` share (seeded) carry a demonstration as "target_ids" /
    "target_mask" (rlkit.data.sft reads them); the others are unchanged.  Also returns the
    demonstrations' mean reward (1.0 when every shown trajectory solves its row)."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"sft.demo_rate must be in [0, 1], got {rate}")
    if not callable(getattr(env_cls, "demonstration", None)):
        raise ValueError(f"sft.demo_rate > 0 needs an environment with demonstration(row); "
                         f"{env_cls.__name__} has none")  # fmt: skip
    rng = random.Random(seed)
    out, rewards = [], []
    for row in rows:
        if rng.random() >= rate:
            out.append(dict(row))
            continue
        ids, mask, reward = demonstration_ids(env_cls(**env_kw), row, encoder, eos_id)
        out.append({**row, "target_ids": ids, "target_mask": mask})
        rewards.append(reward)
    return out, (sum(rewards) / len(rewards) if rewards else 0.0)
