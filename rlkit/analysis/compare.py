"""`rlkit compare`'s numbers: each group's final metric with its 95% interval, the difference
of two groups with Welch's interval, and mean ± interval curves over steps (docs/compare.md).

Pure: series of (step, value) per run in, plain dicts and lists out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rlkit.analysis.intervals import Interval, difference_interval, mean_interval

Series = Sequence[tuple[int, float]]


@dataclass(frozen=True)
class Curve:
    """A group's metric per step: the mean over its runs and the 95% interval around it."""

    steps: list[int]
    mean: list[float]
    lo: list[float]
    hi: list[float]


def final_value(series: Series, last: int) -> float:
    """A run's final value: the mean of the metric over its last `last` logged steps (fewer if
    the run logged fewer); averaging damps the step-to-step noise of a single step."""
    if last < 1:
        raise ValueError(f"--last must be at least 1, got {last}")
    tail = [v for _, v in series[-last:]]
    return math.fsum(tail) / len(tail)


def _as_json(iv: Interval) -> dict:
    return {"mean": iv.mean, "ci95": [iv.lo, iv.hi]}


def summarize(metric: str, groups: dict[str, list[Series]], last: int) -> dict:
    """The content of compare.json for `groups` (name -> one series per run, in the order given).

    `difference` is mean(second) − mean(first) with Welch's interval when there are exactly
    two groups, else None.
    """
    finals = {name: [final_value(s, last) for s in runs] for name, runs in groups.items()}
    out = {
        "metric": metric,
        "groups": [
            {"name": name, "n": len(values), **_as_json(mean_interval(values))}
            for name, values in finals.items()
        ],
        "difference": None,
    }
    if len(finals) == 2:
        first, second = finals.values()
        out["difference"] = _as_json(difference_interval(first, second))
    return out


def curve(runs: list[Series]) -> Curve:
    """Mean and 95% interval across runs at every step any run logged (n may vary by step)."""
    by_step: dict[int, list[float]] = {}
    for series in runs:
        for step, value in series:
            by_step.setdefault(step, []).append(value)
    steps = sorted(by_step)
    intervals = [mean_interval(by_step[s]) for s in steps]
    return Curve(
        steps=steps,
        mean=[iv.mean for iv in intervals],
        lo=[iv.lo for iv in intervals],
        hi=[iv.hi for iv in intervals],
    )
