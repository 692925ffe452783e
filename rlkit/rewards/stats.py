"""Reward metrics and log-once error reporting of a :class:`~rlkit.rewards.pool.RewardPool`.

Metric names (a window: counts since the last ``snapshot(reset=True)``):
    reward/mean, reward/std          total score over samples finished in the window
    reward/<component>               mean of each component (see ``RewardResult.components``)
    reward/calls, reward/errors, reward/timeouts    reward-function calls and their failures
    reward/samples, reward/failed    samples finished, and those with any failed function
    reward/call_s_mean, reward/call_s_max           wall time per call (worker side included)
Each (function, error type) pair is logged once, with the offending input truncated, so a reward
that fails on every sample does not flood the log; every failure is still counted.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import defaultdict
from typing import Any

from rlkit.rewards.types import RewardResult

logger = logging.getLogger("rlkit.rewards")


def _clip(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"...[{len(text) - limit} more chars]"


class RewardStats:
    """Thread-safe counters fed by the pool's slot threads."""

    def __init__(self, fallback: float):
        self.fallback = fallback
        self._lock = threading.Lock()
        self._logged: set[tuple[str, str]] = set()
        self._reset()

    def _reset(self) -> None:
        self.counts: dict[str, float] = defaultdict(float)
        self.sums: dict[str, float] = defaultdict(float)
        self.comp_counts: dict[str, int] = defaultdict(int)
        self.scores: list[float] = []
        self.call_max = 0.0

    def record_call(self, name: str, outcome: Any, task: tuple[Any, ...]) -> None:
        """Count one function call; log its failure if this (name, error type) is new."""
        with self._lock:
            self.counts["calls"] += 1
            self.counts["call_s"] += outcome.seconds
            self.call_max = max(self.call_max, outcome.seconds)
            if outcome.ok:
                return
            self.counts["timeouts" if outcome.timed_out else "errors"] += 1
            key = (name, outcome.error_type or "Error")
            first = key not in self._logged
            self._logged.add(key)
        if first:
            _, _, prompts, completions, fields_list = task
            logger.warning(
                "reward %r failed with %s (score -> fallback %g; later %s failures of this "
                "reward are counted in reward/errors|timeouts, not logged)\n  prompt=%s\n  "
                "completion=%s\n  fields=%s\n  %s",
                name, key[1], self.fallback, key[1], _clip(prompts[0]), _clip(completions[0]),
                _clip(fields_list[0]), outcome.error,
            )  # fmt: skip

    def record_result(self, result: RewardResult) -> None:
        """Count one finished sample."""
        with self._lock:
            self.scores.append(result.score)
            self.counts["failed"] += int(result.failed)
            for key, value in result.components.items():
                self.sums[key] += value
                self.comp_counts[key] += 1

    def snapshot(self, reset: bool = True) -> dict[str, float]:
        """The metrics dict described in the module docstring."""
        with self._lock:
            n = len(self.scores)
            mean = sum(self.scores) / n if n else 0.0
            var = sum((s - mean) ** 2 for s in self.scores) / n if n else 0.0
            calls = self.counts["calls"]
            out = {
                "reward/mean": mean,
                "reward/std": math.sqrt(var),
                "reward/samples": float(n),
                "reward/failed": self.counts["failed"],
                "reward/calls": calls,
                "reward/errors": self.counts["errors"],
                "reward/timeouts": self.counts["timeouts"],
                "reward/call_s_mean": self.counts["call_s"] / calls if calls else 0.0,
                "reward/call_s_max": self.call_max,
            }
            for key, total in self.sums.items():
                out[f"reward/{key}"] = total / self.comp_counts[key]
            if reset:
                self._reset()
            return out
