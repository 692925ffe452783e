"""Rewards for the async benchmark: a verifier whose latency is long-tailed (as code execution or
tool calls are), simulated by sleeping; the score itself is cheap and real."""

from __future__ import annotations

import hashlib
import math
import time
from statistics import NormalDist

MEDIAN_S = 0.15
SIGMA = 1.2
CAP_S = 6.0


def latency_of(completion: str) -> float:
    """Deterministic log-normal latency for a completion (same sample -> same latency)."""
    h = int(hashlib.sha256(completion.encode()).hexdigest()[:12], 16)
    u = (h % 10**9 + 0.5) / 10**9
    return min(CAP_S, MEDIAN_S * math.exp(SIGMA * NormalDist().inv_cdf(u)))


def mean_latency() -> float:
    """E[latency] of the capped log-normal (numerically)."""
    n = 20_000
    return (
        sum(
            min(CAP_S, MEDIAN_S * math.exp(SIGMA * NormalDist().inv_cdf((i + 0.5) / n)))
            for i in range(n)
        )
        / n
    )


def digit_fraction(prompt: str, completion: str, **fields) -> float:
    return sum(c.isdigit() for c in completion) / max(1, len(completion))


def slow_verifier(prompt: str, completion: str, **fields) -> float:
    time.sleep(latency_of(completion))
    return digit_fraction(prompt, completion)
