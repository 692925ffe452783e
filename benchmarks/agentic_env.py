"""A multi-turn environment for the agentic benchmark (benchmarks/agentic_async.py): each step
sleeps a long-tailed time (as tool calls, code runs and web requests do) and each trajectory
lasts a long-tailed number of turns.  Only the latency is simulated; the reward is cheap and real.

Latency per step: log-normal, median `median_s`, shape `sigma`, capped at `cap_s` (all scaled by
`latency_scale`).  Turns per trajectory: floor of a Pareto(`turn_shape`) draw, so
P(turns >= k) = k^-shape, capped at `max_turns`.  Draws are seeded by (seed, prompt, k) where k
counts the trajectories of that prompt so far in this run (`LongTailEnv.restart()` clears the
count), so two runs with the same seed see the same environment for the same trajectories.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter

MEDIAN_S = 0.1
SIGMA = 1.2
CAP_S = 5.0
TURN_SHAPE = 1.2
MAX_TURNS = 8


def sample_latency(
    rng: random.Random, scale: float = 1.0, median_s: float = MEDIAN_S, sigma: float = SIGMA
) -> float:
    """One step's latency: min(cap, median * exp(sigma * N(0, 1))), times `scale`."""
    return scale * min(CAP_S, median_s * math.exp(sigma * rng.gauss(0.0, 1.0)))


def sample_turns(rng: random.Random, shape: float = TURN_SHAPE, cap: int = MAX_TURNS) -> int:
    """Turns a trajectory lasts: floor(Pareto(shape)) in [1, cap] (P(>= k) = k^-shape)."""
    return min(cap, int(rng.paretovariate(shape)))


def digit_fraction(text: str) -> float:
    """The step reward: share of digits in the model's turn (cheap, gives the trainer a signal)."""
    return sum(c.isdigit() for c in text) / max(1, len(text))


class LongTailEnv:
    """Reset draws the trajectory's turn count; each step sleeps a long-tailed latency and ends
    the trajectory once its turns are used up (`rollout.env_kw`: seed, latency_scale)."""

    role = "user"
    _counts: Counter = Counter()  # trajectories per prompt in this run (seeding, see module doc)
    _lock = threading.Lock()  # resets run on the environment pool's threads

    def __init__(self, seed: int = 0, latency_scale: float = 1.0):
        self.seed, self.scale = seed, latency_scale
        self.rng, self.turns_left = random.Random(seed), 1

    @classmethod
    def restart(cls) -> None:
        """A new run: trajectory counts start again (the same seed gives the same draws)."""
        with cls._lock:
            cls._counts.clear()

    def reset(self, row: dict) -> None:
        prompt = row.get("prompt", "")
        with self._lock:
            k = self._counts[prompt]
            self._counts[prompt] += 1
        self.rng = random.Random(f"{self.seed}|{prompt}|{k}")
        self.turns_left = sample_turns(self.rng)
        return None

    def step(self, action: str) -> tuple[str | None, float, bool, dict]:
        time.sleep(sample_latency(self.rng, self.scale))
        self.turns_left -= 1
        done = self.turns_left <= 0
        return (None if done else "Go on."), digit_fraction(action), done, {}
