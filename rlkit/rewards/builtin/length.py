"""Length rewards: DAPO's soft overlong punishment.

DAPO (arXiv 2503.14476, eq. 13), with L = response length, L_max the limit, L_cache the buffer:
    R = 0                                   if L <= L_max - L_cache
    R = ((L_max - L_cache) - L) / L_cache   if L_max - L_cache < L <= L_max
    R = -1                                  if L > L_max
Knobs come as keyword arguments (recipe ``kwargs:``) or dataset fields. L is the token count
when a ``num_tokens`` field is given (the controller knows it), else counted in ``unit``.
"""

from __future__ import annotations

from typing import Any

from rlkit.rewards.registry import reward


def soft_overlong(length: float, max_len: float, cache_len: float) -> float:
    """DAPO eq. 13 for a length already measured."""
    if cache_len <= 0 or cache_len > max_len:
        raise ValueError(f"need 0 < cache_len <= max_len, got {cache_len} and {max_len}")
    soft = max_len - cache_len
    if length <= soft:
        return 0.0
    if length <= max_len:
        return (soft - length) / cache_len
    return -1.0


@reward("overlong_penalty")
def overlong_penalty(
    prompt: str,
    completion: str,
    max_len: int = 4096,
    cache_len: int = 512,
    unit: str = "chars",
    num_tokens: int | None = None,
    **_: Any,
) -> float:
    """Soft overlong penalty in [-1, 0]; ``unit`` is "chars" or "words" when no ``num_tokens``."""
    if num_tokens is not None:
        length = float(num_tokens)
    elif unit == "chars":
        length = float(len(completion))
    elif unit == "words":
        length = float(len(completion.split()))
    else:
        raise ValueError(f"unit must be 'chars' or 'words', got {unit!r}")
    return soft_overlong(length, float(max_len), float(cache_len))
