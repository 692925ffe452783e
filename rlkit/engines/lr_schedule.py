"""Learning-rate schedules of the trainers: constant, linear or cosine decay, with linear warmup.

The schedule counts optimizer updates (`trainer.mini_batches * trainer.ppo_epochs` per training
step), as the `transformers` schedulers users know: warmup over `warmup_steps` training steps
from 0 to `lr`, then `constant`, `linear` decay to `min_lr_ratio * lr` at `total_steps`, or
`cosine` decay to the same floor.  The trainer logs the value as `lr` every step.
"""

from __future__ import annotations

import math


def lr_factor(update: int, *, kind: str, warmup: int, total: int, min_ratio: float) -> float:
    """Multiplier of the base lr at optimizer update `update` (0-based)."""
    if warmup > 0 and update < warmup:
        return (update + 1) / warmup
    if kind == "constant":
        return 1.0
    span = max(1, total - warmup)
    progress = min(1.0, (update - warmup) / span)
    if kind == "linear":
        decay = 1.0 - progress
    elif kind == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        raise ValueError(f"trainer.lr_schedule: unknown schedule {kind!r}")
    return min_ratio + (1.0 - min_ratio) * decay
