"""95% confidence intervals for a group's mean and for the difference of two groups' means.

A group is the final values of its runs (one per seed).  Both intervals assume the finals are
independent draws from a normal distribution; with three to ten seeds that is the usual (and
only practical) assumption, and the t quantile widens the interval for the small sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rlkit.analysis.student_t import t_quantile

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided 95% interval [lo, hi]."""

    mean: float
    lo: float
    hi: float


def _mean_var(values: Sequence[float]) -> tuple[float, float]:
    """Sample mean and unbiased variance (n − 1 denominator; 0 for one value)."""
    n = len(values)
    if n == 0:
        raise ValueError("an interval needs at least one value")
    mean = math.fsum(values) / n
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, var


def mean_interval(values: Sequence[float]) -> Interval:
    """Student-t interval of the mean: m ± t_{0.975, n−1} · s / √n.

    For n = 1 there is no spread to estimate: the interval is [m, m].
    """
    mean, var = _mean_var(values)
    n = len(values)
    if n == 1 or var == 0.0:
        return Interval(mean, mean, mean)
    half = t_quantile(0.5 + LEVEL / 2, n - 1) * math.sqrt(var / n)
    return Interval(mean, mean - half, mean + half)


def welch_dof(var_a: float, n_a: int, var_b: float, n_b: int) -> float:
    """Welch–Satterthwaite degrees of freedom (Welch 1947, Biometrika 34:28):

        ν = (s_a²/n_a + s_b²/n_b)² / ((s_a²/n_a)²/(n_a−1) + (s_b²/n_b)²/(n_b−1))

    A group of one run contributes no variance and no term to the denominator.
    """
    terms = [(v / n, n) for v, n in ((var_a, n_a), (var_b, n_b))]
    num = sum(t for t, _ in terms) ** 2
    den = sum(t * t / (n - 1) for t, n in terms if n > 1)
    return num / den


def difference_interval(a: Sequence[float], b: Sequence[float]) -> Interval:
    """Welch's interval for mean(b) − mean(a): d ± t_{0.975, ν} · √(s_a²/n_a + s_b²/n_b).

    A group with one run has no variance estimate; it is treated as known exactly (variance 0),
    so the interval rests on the other group's spread alone.  With no spread at all (both
    groups of one run, or identical values) the interval is [d, d].
    """
    mean_a, var_a = _mean_var(a)
    mean_b, var_b = _mean_var(b)
    d = mean_b - mean_a
    se2 = var_a / len(a) + var_b / len(b)
    if se2 == 0.0:
        return Interval(d, d, d)
    half = t_quantile(0.5 + LEVEL / 2, welch_dof(var_a, len(a), var_b, len(b))) * math.sqrt(se2)
    return Interval(d, d - half, d + half)
