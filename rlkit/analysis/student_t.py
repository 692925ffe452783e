"""Student-t quantiles without scipy (the CPU stack does not ship it).

The upper tail of Student's t with ν degrees of freedom is

    P(T > t) = ½ · I_{ν/(ν+t²)}(ν/2, ½)        (t ≥ 0)

where I_x(a, b) is the regularised incomplete beta function (Abramowitz & Stegun 26.7.1 with
26.5.27).  I_x is evaluated by its continued fraction (A&S 26.5.8) with the modified Lentz
algorithm, and the quantile is found by bisection on the monotone tail, so ν may be any positive
real (Welch–Satterthwaite degrees of freedom are not integers).
"""

from __future__ import annotations

import math

_EPS = 1e-15
_TINY = 1e-300


def _clamp(v: float) -> float:
    # Lentz's method divides by these; a zero would stop the recurrence
    return v if abs(v) > _TINY else _TINY


def _beta_continued_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of I_x(a, b) (A&S 26.5.8), converging for x < (a+1)/(a+b+2)."""
    c, d = 1.0, 1.0 / _clamp(1.0 - (a + b) * x / (a + 1.0))
    h = d
    for m in range(1, 10_000):
        # even term d_{2m}, then odd term d_{2m+1}
        for coeff in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 / _clamp(1.0 + coeff * d)
            c = _clamp(1.0 + coeff / c)
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            break
    return h


def incomplete_beta(x: float, a: float, b: float) -> float:
    """Regularised incomplete beta I_x(a, b) for 0 ≤ x ≤ 1, a, b > 0."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    # the fraction converges fast below the mean of Beta(a, b); above it use the symmetry
    # I_x(a, b) = 1 − I_{1−x}(b, a)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(x, a, b) / a
    return 1.0 - front * _beta_continued_fraction(1.0 - x, b, a) / b


def t_upper_tail(t: float, dof: float) -> float:
    """P(T > t) for Student's t with `dof` degrees of freedom."""
    if t < 0:
        return 1.0 - t_upper_tail(-t, dof)
    return 0.5 * incomplete_beta(dof / (dof + t * t), dof / 2.0, 0.5)


def t_quantile(p: float, dof: float) -> float:
    """The t with P(T ≤ t) = p, e.g. t_quantile(0.975, 2) = 4.302652729911275."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    if dof <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {dof}")
    if p < 0.5:
        return -t_quantile(1.0 - p, dof)
    tail = 1.0 - p
    lo, hi = 0.0, 1.0
    while t_upper_tail(hi, dof) > tail:  # the tail falls with t: bracket, then bisect
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_upper_tail(mid, dof) > tail:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-14 * hi:
            break
    return 0.5 * (lo + hi)
